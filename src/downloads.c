/*
 * downloads.c -- the picture download scheduler: one download and processing
 * per URL however many wait for it, pictures someone waits for in a browser
 * before background work, a bounded number of slots of which background work
 * holds at most half.
 */
#include "downloads.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <h2o/memory.h>
#include <uv.h>

#include "blob.h"
#include "blobcache.h"
#include "clock.h"
#include "fetch.h"
#include "keymap.h"
#include "log.h"
#include "metrics.h"
#include "pictures.h"
#include "workpool.h"

/* Upper bounds of the image processing histogram, in seconds. */
static const double PROCESSING_BOUNDS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

/* A download and its processing, shared by every wait for its URL. */
struct download {
    struct downloads *d;
    char *url;
    uint8_t url_key[32];
    h2o_linklist_t waits; /* download_wait._link */
    bool interactive;     /* someone waits in a browser: ahead of background work */
    bool running;         /* holds a slot: being downloaded or processed */
    bool background_slot; /* started as background work: holds one of its share */
    struct fetch *fetch;  /* while downloading */
    struct work work;     /* while processing */
    uint8_t *src;
    size_t src_len;
    struct image_out out;
    uint8_t hash[32];
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
    h2o_linklist_t interactive, background, all; /* waiting for a slot, first come first served; and all */
    size_t running, background_running, queued;
    bool closing;
    struct downloads_stats stats;
    struct histogram processing;
};

static void pump(struct downloads *d);

static h2o_linklist_t *queue_of(struct downloads *d, const struct download *j)
{
    return j->interactive ? &d->interactive : &d->background;
}

static void enqueue(struct downloads *d, struct download *j)
{
    h2o_linklist_insert(queue_of(d, j), &j->queue_link);
    d->queued++;
}

static void dequeue(struct downloads *d, struct download *j)
{
    h2o_linklist_unlink(&j->queue_link);
    d->queued--;
}

/* Frees the download and gives its slot to the next one. */
static void end(struct download *j)
{
    struct downloads *d = j->d;

    if (j->running) {
        d->running--;
        d->background_running -= j->background_slot;
    }
    if (h2o_linklist_is_linked(&j->queue_link))
        dequeue(d, j);
    h2o_linklist_unlink(&j->all_link);
    keymap_del(d->by_url, j->url_key);
    free(j->url);
    free(j->src);
    image_out_free(&j->out);
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

static void fail(struct download *j, enum download_error e, const char *detail)
{
    struct download_result r = {.error = e, .detail = detail};

    tell(j, &r);
    end(j);
}

/*
 * Checks, resizes and hashes the picture; no disk work here. Its file is
 * written by the picture index, in batches, before the first record naming it.
 */
static void image_run(struct work *w)
{
    struct download *j = H2O_STRUCT_FROM_MEMBER(struct download, work, w);
    uint64_t t0 = clock_mono_ns();

    j->rc = image_process(j->src, j->src_len, &j->d->o.image, &j->out);
    if (j->rc == 0)
        blob_hash(j->out.data, j->out.len, j->hash);
    j->process_ns = clock_mono_ns() - t0;
}

static void image_done(struct work *w)
{
    struct download *j = H2O_STRUCT_FROM_MEMBER(struct download, work, w);
    struct downloads *d = j->d;
    struct url_rec u = {0};
    struct download_result r = {.error = DOWNLOAD_OK, .url = &u};

    d->stats.process_ns += j->process_ns;
    histogram_observe(&d->processing, (double)j->process_ns / 1e9);
    free(j->src);
    j->src = NULL;
    if (j->rc != 0) {
        d->stats.bad_images++;
        log_info("pictures: refused %s: %s", j->url, j->out.error);
        fail(j, DOWNLOAD_BAD_IMAGE, j->out.error);
        return;
    }
    d->stats.processed++;
    memcpy(u.blob, j->hash, 32);
    u.type = (uint8_t)j->out.type;
    u.bytes = (uint32_t)j->out.len;
    u.width = (uint16_t)j->out.width;
    u.height = (uint16_t)j->out.height;
    u.fetched_at = (uint64_t)clock_now_s();
    r.blob = blobcache_put(d->cache, j->hash, j->out.data, j->out.len);
    tell(j, &r);
    blob_release(r.blob);
    end(j);
}

static void on_fetched(void *data, struct fetch_result *res)
{
    struct download *j = data;
    struct downloads *d = j->d;

    j->fetch = NULL;
    if (res->error != FETCH_OK) {
        d->stats.failures[res->error]++;
        log_info("pictures: cannot download %s: %s (%s)", j->url, fetch_error_name(res->error), res->detail);
        fail(j, DOWNLOAD_FAILED, res->detail);
        return;
    }
    j->src = res->body;
    j->src_len = res->len;
    res->body = NULL;
    j->work.run = image_run;
    j->work.done = image_done;
    workpool_submit(d->images, &j->work);
}

/* Slots background work may hold: the rest are kept for pictures someone is waiting for. */
static size_t background_slots(const struct downloads *d)
{
    size_t half = d->o.max_concurrent / 2;
    return half > 0 ? half : 1;
}

/* Starts queued downloads while slots are free: interactive first, background within its share. */
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
        j->running = true;
        j->background_slot = !j->interactive;
        d->background_running += j->background_slot;
        d->running++;
        d->stats.started++;
        j->fetch = fetch_start(d->fetcher, j->url, on_fetched, j);
    }
}

void downloads_get(struct downloads *d, const char *url, size_t len, bool interactive, struct download_wait *w)
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
        keymap_put(d->by_url, key, j);
        h2o_linklist_insert(&d->all, &j->all_link);
        enqueue(d, j);
    }
    w->_download = j;
    w->_link = (h2o_linklist_t){NULL, NULL};
    h2o_linklist_insert(&j->waits, &w->_link);
    if (interactive)
        downloads_promote(d, w);
    pump(d);
}

void downloads_promote(struct downloads *d, struct download_wait *w)
{
    struct download *j = w->_download;

    if (j == NULL || j->interactive || !h2o_linklist_is_linked(&j->queue_link))
        return;
    dequeue(d, j);
    j->interactive = true;
    enqueue(d, j);
    pump(d);
}

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
        fail(j, DOWNLOAD_FAILED, "shutting down");
    }
}

void downloads_free(struct downloads *d)
{
    if (d == NULL)
        return;
    keymap_free(d->by_url, NULL);
    free(d);
}

void downloads_stats(const struct downloads *d, struct downloads_stats *out)
{
    *out = d->stats;
    out->running = d->running;
    out->queued = d->queued;
    out->processing = &d->processing;
}
