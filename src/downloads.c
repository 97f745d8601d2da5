/*
 * downloads.c -- the picture download scheduler: one download and processing
 * per URL however many wait for it, pictures someone waits for in a browser
 * before background work (in the slots and in the image threads' queue), a
 * bounded number of slots of which background work holds at most half, and a
 * bounded number of downloads from one origin host.
 */
#include "downloads.h"

#include <assert.h>
#include <ctype.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <h2o/memory.h>
#include <uv.h>

#include "blob.h"
#include "blobcache.h"
#include "clock.h"
#include "keymap.h"
#include "log.h"
#include "metrics.h"
#include "pictures.h"
#include "workpool.h"

/* Upper bounds of the image processing histogram, in seconds. */
static const double PROCESSING_BOUNDS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

/* An origin host with downloads queued or under way, and those that wait for one of its slots. */
struct host {
    uint8_t key[32];                  /* SHA-256 of the host name in lowercase */
    size_t running;                   /* its downloads under way (their processing aside) */
    size_t refs;                      /* its downloads, wherever they are */
    h2o_linklist_t interactive_waits; /* download.queue_link, first come first served */
    h2o_linklist_t background_waits;
    h2o_linklist_t link; /* in downloads.hosts */
};

/* A download and its processing, shared by every wait for its URL. */
struct download {
    struct downloads *d;
    char *url;
    uint8_t url_key[32];
    struct host *host;    /* NULL for bytes at hand */
    h2o_linklist_t waits; /* download_wait._link */
    bool interactive;     /* someone waits in a browser: ahead of background work */
    bool running;         /* holds a slot: being downloaded or processed */
    bool background_slot; /* started as background work: holds one of its share */
    bool host_wait;       /* queued in its host's waits rather than the scheduler's queues */
    bool host_slot;       /* being downloaded: counted in its host's running */
    bool processing;      /* handed to the image threads */
    bool want_first;      /* a waiter wants the first variants made with the master */
    int master_size;      /* the largest a waiter asked for */
    struct fetch *fetch;  /* while downloading */
    struct work work;     /* while processing */
    uint8_t *src;         /* what was downloaded, or the bytes at hand */
    size_t src_len;
    struct image_out out;
    uint8_t hash[32];
    struct image_out first[DOWNLOADS_MAX_FIRST]; /* made with the master; empty when that failed */
    uint8_t first_hash[DOWNLOADS_MAX_FIRST][32];
    struct download_wait *early_wait; /* the wait an early variant is made for, while processing */
    struct image_master *master;      /* between the early variant and the master's encoding */
    struct image_variant_spec early_spec;
    int early_width, early_height; /* the master's */
    struct image_out early_out;
    uint8_t early_hash[32];
    int rc;
    uint64_t process_ns;
    h2o_linklist_t queue_link; /* in its queue while waiting for a slot */
    h2o_linklist_t all_link;   /* every download, for shutdown */
};

struct downloads {
    struct fetcher *fetcher;
    struct workpool *images;
    struct blobcache *cache;
    struct downloads_options o;
    struct keymap *by_url;                       /* URL hash -> its download */
    struct keymap *by_host;                      /* host name hash -> its host */
    h2o_linklist_t hosts;                        /* host.link */
    h2o_linklist_t interactive, background, all; /* waiting for a slot, first come first served; and all */
    size_t running, background_running;
    size_t queued[2]; /* [0] interactive, [1] background; host waits included */
    bool closing;
    struct downloads_stats stats;
    struct histogram processing;
};

static void pump(struct downloads *d);

static h2o_linklist_t *queue_of(struct downloads *d, const struct download *j)
{
    if (j->host_wait)
        return j->interactive ? &j->host->interactive_waits : &j->host->background_waits;
    return j->interactive ? &d->interactive : &d->background;
}

static void enqueue(struct downloads *d, struct download *j)
{
    h2o_linklist_insert(queue_of(d, j), &j->queue_link);
    d->queued[!j->interactive]++;
}

static void dequeue(struct downloads *d, struct download *j)
{
    h2o_linklist_unlink(&j->queue_link);
    d->queued[!j->interactive]--;
}

/* --- hosts ------------------------------------------------------------------------------------------------------ */

/* The host of `url`, as the host name curl_url() reads (IPv4 numbers in their usual form) in lowercase. */
static struct host *host_of(struct downloads *d, const char *url)
{
    CURLU *u = curl_url();
    char *name = NULL;
    uint8_t key[32];
    struct host *h = NULL;

    if (u == NULL)
        abort();
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK && curl_url_get(u, CURLUPART_HOST, &name, 0) == CURLUE_OK) {
        for (char *c = name; *c != '\0'; c++)
            *c = (char)tolower((unsigned char)*c);
        blob_hash((const uint8_t *)name, strlen(name), key);
        if ((h = keymap_get(d->by_host, key)) == NULL) {
            if ((h = calloc(1, sizeof(*h))) == NULL)
                abort();
            memcpy(h->key, key, 32);
            h2o_linklist_init_anchor(&h->interactive_waits);
            h2o_linklist_init_anchor(&h->background_waits);
            keymap_put(d->by_host, key, h);
            h2o_linklist_insert(&d->hosts, &h->link);
        }
        h->refs++;
    }
    curl_free(name);
    curl_url_cleanup(u);
    return h;
}

static void host_release(struct downloads *d, struct host *h)
{
    if (--h->refs > 0)
        return;
    keymap_del(d->by_host, h->key);
    h2o_linklist_unlink(&h->link);
    free(h);
}

/* A slot of `h` is free: the download that waited longest for one goes back ahead of the scheduler's queue. */
static void host_slot_freed(struct downloads *d, struct host *h)
{
    h2o_linklist_t *q = !h2o_linklist_is_empty(&h->interactive_waits) ? &h->interactive_waits : &h->background_waits;
    struct download *j;

    if (h2o_linklist_is_empty(q))
        return;
    j = H2O_STRUCT_FROM_MEMBER(struct download, queue_link, q->next);
    dequeue(d, j);
    j->host_wait = false;
    /* It was at the head of the queue when it started waiting: nothing queued since came before it. */
    h2o_linklist_insert(queue_of(d, j)->next, &j->queue_link);
    d->queued[!j->interactive]++;
}

/* The download has its bytes, or has failed: its host may start another. */
static void leave_host(struct downloads *d, struct download *j)
{
    if (!j->host_slot)
        return;
    j->host_slot = false;
    j->host->running--;
    host_slot_freed(d, j->host);
}

/* --- one download --------------------------------------------------------------------------------------------- */

/* Frees the download and gives its slot to the next one. */
static void end(struct download *j)
{
    struct downloads *d = j->d;

    if (h2o_linklist_is_linked(&j->queue_link))
        dequeue(d, j);
    leave_host(d, j);
    if (j->running) {
        d->running--;
        d->background_running -= j->background_slot;
    }
    if (j->host != NULL)
        host_release(d, j->host);
    h2o_linklist_unlink(&j->all_link);
    keymap_del(d->by_url, j->url_key);
    free(j->url);
    free(j->src);
    image_out_free(&j->out);
    for (size_t i = 0; i < DOWNLOADS_MAX_FIRST; i++)
        image_out_free(&j->first[i]);
    image_master_free(j->master);
    image_out_free(&j->early_out);
    free(j);
    pump(d);
}

/* Tells every wait how the download ended; each is unlinked before its callback runs. */
static void tell(struct download *j, struct download_result *r)
{
    r->url_key = j->url_key;
    r->first = true;
    while (!h2o_linklist_is_empty(&j->waits)) {
        struct download_wait *w = H2O_STRUCT_FROM_MEMBER(struct download_wait, _link, j->waits.next);
        h2o_linklist_unlink(&w->_link);
        w->_download = NULL;
        w->cb(w, r);
        r->first = false;
    }
}

static void fail(struct download *j, struct download_result *r)
{
    tell(j, r);
    end(j);
}

static struct image_opts job_options(const struct download *j)
{
    struct image_opts o = j->d->o.image;

    if (j->master_size > o.max_size)
        o.max_size = j->master_size;
    return o;
}

/* The master made: hashed, and the options' first variants made from it. */
static void master_made(struct download *j)
{
    if (j->rc == 0)
        blob_hash(j->out.data, j->out.len, j->hash);
    for (size_t i = 0; j->rc == 0 && j->want_first && j->d->o.image.resize && i < j->d->o.nfirst; i++) {
        if (image_variant(j->out.data, j->out.len, &j->d->o.first[i], &j->first[i]) == 0)
            blob_hash(j->first[i].data, j->first[i].len, j->first_hash[i]);
        else
            image_out_free(&j->first[i]);
    }
}

/*
 * Checks, resizes and hashes the picture; no disk work here. Its file is
 * written by the picture index, in batches, before the first record naming it.
 * With an early variant made, the master's encoding is left to encode_run().
 */
static void image_run(struct work *w)
{
    struct download *j = H2O_STRUCT_FROM_MEMBER(struct download, work, w);
    struct image_opts o = job_options(j);
    uint64_t t0 = clock_mono_ns();
    struct image_master *m;
    int width, height, frames;

    if (j->early_wait == NULL) {
        j->rc = image_process(j->src, j->src_len, &o, &j->out);
    } else if ((j->rc = image_master_begin(j->src, j->src_len, &o, true, &m, &j->out)) == 0) {
        image_master_size(m, &width, &height, &frames);
        if (frames == 1 && j->early_wait->early->shape(j->early_wait, width, height, &j->early_spec) &&
            image_master_variant(m, &j->early_spec, &j->early_out) == 0) {
            blob_hash(j->early_out.data, j->early_out.len, j->early_hash);
            j->early_width = width;
            j->early_height = height;
            j->master = m;
            j->process_ns = clock_mono_ns() - t0;
            return;
        }
        image_out_free(&j->early_out);
        j->rc = image_master_finish(m, &o, &j->out);
    }
    master_made(j);
    j->process_ns = clock_mono_ns() - t0;
}

static void encode_run(struct work *w)
{
    struct download *j = H2O_STRUCT_FROM_MEMBER(struct download, work, w);
    struct image_opts o = job_options(j);
    uint64_t t0 = clock_mono_ns();

    j->rc = image_master_finish(j->master, &o, &j->out);
    j->master = NULL;
    master_made(j);
    j->process_ns += clock_mono_ns() - t0;
}

/* The early variant is made: its wait has it now, and the master is encoded in the download's turn. */
static void early_done(struct download *j)
{
    struct download_variant v = {&j->early_spec, NULL, j->early_out.width, j->early_out.height, j->early_out.frames};
    struct download_wait *w = j->early_wait;

    v.blob = blobcache_put(j->d->cache, j->early_hash, j->early_out.data, j->early_out.len);
    image_out_free(&j->early_out);
    j->early_wait = NULL;
    w->early->cb(w, &v, j->early_width, j->early_height);
    blob_release(v.blob);
    if (j->d->closing) {
        fail(j, &(struct download_result){.error = DOWNLOAD_FAILED, .detail = "shutting down"});
        return;
    }
    /* Others may wait for the master (other sizes of it): it keeps the download's turn, behind what came first. */
    j->work.run = encode_run;
    if (j->interactive)
        workpool_submit_urgent(j->d->images, &j->work);
    else
        workpool_submit(j->d->images, &j->work);
}

static void image_done(struct work *w)
{
    struct download *j = H2O_STRUCT_FROM_MEMBER(struct download, work, w);
    struct downloads *d = j->d;
    struct url_rec u = {0};
    struct download_result r = {.error = DOWNLOAD_OK, .url = &u};
    struct download_variant variants[DOWNLOADS_MAX_FIRST];

    if (j->master != NULL) {
        early_done(j);
        return;
    }
    j->processing = false;
    d->stats.process_ns += j->process_ns;
    histogram_observe(&d->processing, (double)j->process_ns / 1e9);
    free(j->src);
    j->src = NULL;
    if (j->rc != 0) {
        d->stats.bad_images++;
        log_info("pictures: refused %s: %s", j->url, j->out.error);
        fail(j,
             &(struct download_result){.error = DOWNLOAD_BAD_IMAGE, .detail = j->out.error, .refusal = j->out.refusal});
        return;
    }
    d->stats.processed++;
    memcpy(u.blob, j->hash, 32);
    u.type = (uint8_t)j->out.type;
    u.bytes = (uint32_t)j->out.len;
    u.width = (uint16_t)j->out.width;
    u.height = (uint16_t)j->out.height;
    u.flags = d->o.image.resize ? PIC_MASTER | (j->out.frames > 1 ? PIC_ANIMATED : 0) : 0;
    u.fetched_at = (uint64_t)clock_now_s();
    r.blob = blobcache_put(d->cache, j->hash, j->out.data, j->out.len);
    for (size_t i = 0; i < d->o.nfirst; i++) {
        struct download_variant *v = &variants[r.nvariants];
        if (j->first[i].data == NULL)
            continue;
        *v = (struct download_variant){&d->o.first[i], NULL, j->first[i].width, j->first[i].height, j->first[i].frames};
        v->blob = blobcache_put(d->cache, j->first_hash[i], j->first[i].data, j->first[i].len);
        r.nvariants++;
    }
    r.variants = variants;
    tell(j, &r);
    blob_release(r.blob);
    for (size_t i = 0; i < r.nvariants; i++)
        blob_release(variants[i].blob);
    end(j);
}

/* Hands the bytes to the image threads, ahead of background work when someone waits for them. */
static void process(struct download *j)
{
    for (h2o_linklist_t *l = j->waits.next; j->d->o.image.resize && l != &j->waits; l = l->next) {
        struct download_wait *w = H2O_STRUCT_FROM_MEMBER(struct download_wait, _link, l);
        if (w->early != NULL) {
            j->early_wait = w;
            break;
        }
    }
    j->work.run = image_run;
    j->work.done = image_done;
    j->processing = true;
    if (j->interactive)
        workpool_submit_urgent(j->d->images, &j->work);
    else
        workpool_submit(j->d->images, &j->work);
}

static void on_fetched(void *data, struct fetch_result *res)
{
    struct download *j = data;
    struct downloads *d = j->d;

    j->fetch = NULL;
    if (res->error != FETCH_OK) {
        d->stats.failures[res->error]++;
        log_info("pictures: cannot download %s: %s (%s)", j->url, fetch_error_name(res->error), res->detail);
        fail(j, &(struct download_result){.error = DOWNLOAD_FAILED,
                                          .detail = res->detail,
                                          .fetch = res->error,
                                          .http_status = res->http_status});
        return;
    }
    j->src = res->body;
    j->src_len = res->len;
    res->body = NULL;
    process(j);
    /* Its processing keeps the slot, not its host's share: the host's next download may begin. */
    leave_host(d, j);
    pump(d);
}

/* --- the queues ------------------------------------------------------------------------------------------------- */

/* Slots background work may hold: the rest are kept for pictures someone is waiting for. */
static size_t background_slots(const struct downloads *d)
{
    size_t half = d->o.max_concurrent / 2;
    return half > 0 ? half : 1;
}

/*
 * Starts queued downloads while slots are free: interactive first, background
 * within its share. One whose host has max_per_host downloads under way waits
 * for that host, and those behind it go ahead.
 */
static void pump(struct downloads *d)
{
    while (!d->closing && d->running < d->o.max_concurrent) {
        h2o_linklist_t *q = &d->interactive;
        struct download *j;

        if (h2o_linklist_is_empty(q) && d->background_running < background_slots(d))
            q = &d->background;
        if (h2o_linklist_is_empty(q))
            return;
        j = H2O_STRUCT_FROM_MEMBER(struct download, queue_link, q->next);
        dequeue(d, j);
        if (j->host != NULL && d->o.max_per_host > 0 && j->host->running >= d->o.max_per_host) {
            j->host_wait = true;
            enqueue(d, j);
            d->stats.host_waits++;
            continue;
        }
        j->running = true;
        j->background_slot = !j->interactive;
        d->background_running += j->background_slot;
        d->running++;
        if (j->host != NULL) {
            j->host_slot = true;
            j->host->running++;
        }
        d->stats.started++;
        if (j->src != NULL)
            process(j);
        else
            j->fetch = fetch_start(d->fetcher, j->url, on_fetched, j);
    }
}

/* Joins the download of `url`, or makes it (with `bytes`, copied, when they are at hand). */
static void get(struct downloads *d, const char *url, size_t len, const uint8_t *bytes, size_t nbytes, bool interactive,
                struct download_wait *w)
{
    uint8_t key[32];
    struct download *j;

    assert(!d->closing);
    blob_hash((const uint8_t *)url, len, key);
    if ((j = keymap_get(d->by_url, key)) == NULL) {
        if ((j = calloc(1, sizeof(*j))) == NULL || (j->url = strndup(url, len)) == NULL)
            abort();
        j->d = d;
        memcpy(j->url_key, key, 32);
        h2o_linklist_init_anchor(&j->waits);
        j->interactive = interactive;
        if (bytes != NULL) {
            if ((j->src = malloc(nbytes)) == NULL)
                abort();
            memcpy(j->src, bytes, nbytes);
            j->src_len = nbytes;
        } else {
            j->host = host_of(d, j->url);
        }
        keymap_put(d->by_url, key, j);
        h2o_linklist_insert(&d->all, &j->all_link);
        enqueue(d, j);
    }
    if (!j->processing) {
        j->want_first |= w->first;
        j->master_size = w->master_size > j->master_size ? w->master_size : j->master_size;
    }
    w->_download = j;
    w->_link = (h2o_linklist_t){NULL, NULL};
    h2o_linklist_insert(&j->waits, &w->_link);
    if (interactive)
        downloads_promote(d, w);
    pump(d);
}

void downloads_get(struct downloads *d, const char *url, size_t len, bool interactive, struct download_wait *w)
{
    get(d, url, len, NULL, 0, interactive, w);
}

void downloads_get_data(struct downloads *d, const char *name, size_t len, const uint8_t *bytes, size_t nbytes,
                        bool interactive, struct download_wait *w)
{
    get(d, name, len, bytes, nbytes, interactive, w);
}

void downloads_promote(struct downloads *d, struct download_wait *w)
{
    struct download *j = w->_download;

    if (j == NULL || j->interactive)
        return;
    if (h2o_linklist_is_linked(&j->queue_link)) {
        dequeue(d, j);
        j->interactive = true;
        enqueue(d, j);
        pump(d);
        return;
    }
    /* Under way: its slot stays what it was, but its turn for an image thread comes sooner. */
    j->interactive = true;
    if (j->processing)
        workpool_promote(d->images, &j->work);
}

/* --- life cycle ------------------------------------------------------------------------------------------------- */

int downloads_init(struct downloads **out, struct fetcher *fetcher, struct workpool *images, struct blobcache *cache,
                   const struct downloads_options *o)
{
    struct downloads *d = calloc(1, sizeof(*d));

    if (d == NULL)
        abort();
    d->fetcher = fetcher;
    d->images = images;
    d->cache = cache;
    d->o = *o;
    if (d->o.max_concurrent == 0)
        d->o.max_concurrent = 1;
    d->by_url = keymap_new(32);
    d->by_host = keymap_new(32);
    h2o_linklist_init_anchor(&d->hosts);
    h2o_linklist_init_anchor(&d->interactive);
    h2o_linklist_init_anchor(&d->background);
    h2o_linklist_init_anchor(&d->all);
    histogram_init(&d->processing, PROCESSING_BOUNDS, sizeof(PROCESSING_BOUNDS) / sizeof(PROCESSING_BOUNDS[0]));
    *out = d;
    return 0;
}

void downloads_shutdown(struct downloads *d)
{
    h2o_linklist_t *l, *next;

    d->closing = true;
    for (l = d->all.next; l != &d->all; l = next) {
        struct download *j = H2O_STRUCT_FROM_MEMBER(struct download, all_link, l);
        next = l->next;
        if (j->fetch != NULL) {
            fetch_cancel(j->fetch);
            j->fetch = NULL;
        } else if (j->running) {
            continue; /* being processed: it ends when its image work comes back */
        }
        /* The callbacks may end other downloads' waits but never free another download. */
        fail(j, &(struct download_result){.error = DOWNLOAD_FAILED, .detail = "shutting down"});
    }
}

void downloads_free(struct downloads *d)
{
    if (d == NULL)
        return;
    keymap_free(d->by_url, NULL);
    keymap_free(d->by_host, NULL);
    free(d);
}

void downloads_stats(const struct downloads *d, struct downloads_stats *out)
{
    *out = d->stats;
    out->running = d->running;
    out->running_background = d->background_running;
    out->queued = d->queued[0] + d->queued[1];
    out->queued_background = d->queued[1];
    out->busiest_host = 0;
    for (const h2o_linklist_t *l = d->hosts.next; l != &d->hosts; l = l->next) {
        const struct host *h = H2O_STRUCT_FROM_MEMBER(struct host, link, l);
        if (h->running > out->busiest_host)
            out->busiest_host = h->running;
    }
    out->slots = d->o.max_concurrent;
    out->background_slots = background_slots(d);
    out->max_per_host = d->o.max_per_host;
    out->processing = &d->processing;
}
