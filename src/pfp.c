/* pfp.c -- profile pictures: GET /profile-pic/{pubkey} from the cache, or found, fetched, checked, resized, stored. */
#include "pfp.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "hex.h"
#include "keymap.h"
#include "log.h"
#include "nip19.h"

#define MAX_URL 4096
/* Pubkeys waiting to be fetched ahead (new kind 0 events, stale entries); more are dropped. */
#define PREFETCH_QUEUE_MAX 100000
/* A failure is remembered 5 minutes, then twice as long each time again, up to a day. */
#define RETRY_BASE_SECONDS 300
#define RETRY_MAX_SECONDS  86400

/* --- records --------------------------------------------------------------------------------------------------- */

enum { PIC_OK = 1, PIC_NEGATIVE = 2 };

/* The picture record of a pubkey, as stored (followed by url_len bytes of URL). */
struct pic_head {
    uint8_t state;
    uint8_t type;   /* enum image_type of the stored bytes */
    uint8_t reason; /* enum pfp_negative */
    uint8_t unused;
    uint32_t failures;   /* failures in a row, for the back-off */
    uint64_t fetched_at; /* unix time the picture was stored or last confirmed */
    uint64_t retry_at;   /* unix time a failure may be tried again */
    int64_t kind0_at;    /* created_at of the kind 0 the picture came from */
    uint8_t event_id[32];
    uint8_t blob[32];
    uint32_t bytes;
    uint16_t width, height;
    uint16_t url_len;
};

struct pic {
    struct pic_head h;
    char url[MAX_URL + 1];
};

/* What a picture URL gave, so that another pubkey with the same URL needs no download. */
struct url_rec {
    uint8_t blob[32];
    uint8_t type;
    uint8_t unused[3];
    uint32_t bytes;
    uint16_t width, height;
    uint64_t fetched_at;
};

static int pic_decode(const MDB_val *v, struct pic *out)
{
    if (v->mv_size < sizeof(out->h))
        return -EINVAL;
    memcpy(&out->h, v->mv_data, sizeof(out->h));
    if (out->h.url_len > MAX_URL || sizeof(out->h) + out->h.url_len != v->mv_size)
        return -EINVAL;
    memcpy(out->url, (const char *)v->mv_data + sizeof(out->h), out->h.url_len);
    out->url[out->h.url_len] = '\0';
    return 0;
}

static uint8_t *pic_encode(const struct pic *pic, size_t *len)
{
    uint8_t *v;

    *len = sizeof(pic->h) + pic->h.url_len;
    if ((v = malloc(*len)) == NULL)
        abort();
    memcpy(v, &pic->h, sizeof(pic->h));
    memcpy(v + sizeof(pic->h), pic->url, pic->h.url_len);
    return v;
}

/* Reads the record of `pubkey`. Returns 0 or -ENOENT. */
static int read_pic(struct pfp *p, const uint8_t pubkey[32], struct pic *out)
{
    MDB_txn *txn;
    MDB_val k = {32, (void *)pubkey}, v;
    int r;

    if ((r = store_read_begin(p->store, &txn)) != 0)
        return r;
    r = mdb_get(txn, p->pictures, &k, &v) == 0 ? pic_decode(&v, out) : -ENOENT;
    store_read_end(p->store, txn);
    return r;
}

/* --- requests held while their answer is made ---------------------------------------------------------------- */

/*
 * An HTTP request the service answers later. The request's pool holds one
 * reference and drops it when h2o frees the request (answered, or the client
 * gone); the work holds the other.
 */
struct hold {
    h2o_req_t *req; /* NULL once the client has gone */
    unsigned refs;
    struct pfp_pending *pending; /* the pending it waits on, if any */
    struct hold *next, *prev;
};

static void hold_unref(struct hold *h)
{
    if (--h->refs == 0)
        free(h);
}

static void unlink_hold(struct hold *h);

static void on_req_gone(void *ptr)
{
    struct hold *h = *(struct hold **)ptr;

    h->req = NULL;
    unlink_hold(h);
    hold_unref(h);
}

static struct hold *hold_req(h2o_req_t *req)
{
    struct hold *h = calloc(1, sizeof(*h));
    struct hold **slot;

    if (h == NULL)
        abort();
    h->req = req;
    h->refs = 2;
    slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), on_req_gone);
    *slot = h;
    return h;
}

/* --- answers ---------------------------------------------------------------------------------------------------- */

static char *put2(char *o, int v)
{
    o[0] = (char)('0' + v / 10 % 10);
    o[1] = (char)('0' + v % 10);
    return o + 2;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT", 29 characters and a NUL, for Last-Modified. */
static void http_date(uint64_t t, char out[30])
{
    static const char days[] = "SunMonTueWedThuFriSat", months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    time_t tt = (time_t)t;
    struct tm tm;
    char *o = out;

    gmtime_r(&tt, &tm);
    memcpy(o, days + tm.tm_wday * 3, 3);
    memcpy(o + 3, ", ", 2);
    o = put2(o + 5, tm.tm_mday);
    *o++ = ' ';
    memcpy(o, months + tm.tm_mon * 3, 3);
    *(o + 3) = ' ';
    o = put2(put2(o + 4, (tm.tm_year + 1900) / 100), (tm.tm_year + 1900) % 100);
    *o++ = ' ';
    o = put2(o, tm.tm_hour);
    *o++ = ':';
    o = put2(o, tm.tm_min);
    *o++ = ':';
    o = put2(o, tm.tm_sec);
    memcpy(o, " GMT", 5);
}

static void release_blob(void *ptr)
{
    blob_release(*(struct blob_ref **)ptr);
}

/* Whether If-None-Match names `etag` (or is "*"). */
static bool etag_matches(h2o_req_t *req, const char *etag)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, -1);
    h2o_iovec_t v;

    if (i == -1)
        return false;
    v = req->headers.entries[i].value;
    return h2o_strstr(v.base, v.len, etag, strlen(etag)) != SIZE_MAX || h2o_memis(v.base, v.len, H2O_STRLIT("*"));
}

/* Sends the picture (or 304 Not Modified), with the cache headers; the response keeps a reference to the bytes. */
static void send_picture(struct pfp *p, h2o_req_t *req, const struct pic_head *h, struct blob_ref *blob,
                         const char *x_cache)
{
    static h2o_generator_t generator = {NULL, NULL};
    struct blob_ref **slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), release_blob);
    char *date = h2o_mem_alloc_pool(&req->pool, 30);
    bool not_modified = etag_matches(req, blob->etag);
    h2o_iovec_t body = h2o_iovec_init(blob->data, blob->len);

    *slot = blob;
    blob_retain(blob);
    http_date(h->fetched_at, date);
    http_begin_response(req, not_modified ? 304 : 200);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL, blob->etag, 66);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, p->cache_control,
                   strlen(p->cache_control));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LAST_MODIFIED, NULL, date, 29);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-cache"), 0, NULL, x_cache, strlen(x_cache));
    if (not_modified) {
        p->stats.not_modified++;
        h2o_start_response(req, &generator);
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return;
    }
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, image_mime(h->type),
                   strlen(image_mime(h->type)));
    req->res.content_length = blob->len;
    h2o_start_response(req, &generator);
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    else
        h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
}

static bool http_url(const char *url)
{
    return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

/* A failure's answer: a redirect to the picture's own URL when there is one to try, as the seed program did. */
static void send_negative(struct pfp *p, h2o_req_t *req, const struct pic *pic)
{
    (void)p;
    switch (pic->h.reason) {
    case PFP_DOWNLOAD_FAILED:
    case PFP_BAD_IMAGE:
        if (http_url(pic->url)) {
            h2o_iovec_t loc = h2o_strdup(&req->pool, pic->url, pic->h.url_len);
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, loc.base, loc.len);
            http_reply_error(req, 307, "the picture could not be %s; redirecting to its source",
                             pic->h.reason == PFP_BAD_IMAGE ? "decoded" : "downloaded");
            return;
        }
        http_reply_error(req, 404, "the picture could not be %s",
                         pic->h.reason == PFP_BAD_IMAGE ? "decoded" : "downloaded");
        return;
    case PFP_NO_PICTURE: http_reply_error(req, 404, "the profile has no picture"); return;
    case PFP_BAD_URL: http_reply_error(req, 404, "the profile's picture URL is not http, https or data"); return;
    default: http_reply_error(req, 404, "no profile (kind 0) found for this pubkey"); return;
    }
}

/* --- pending fetches, one per pubkey -------------------------------------------------------------------------- */

struct pfp_pending {
    struct pfp *p;
    uint8_t pubkey[32];
    struct hold *waiters;
    bool background;
    bool refresh;   /* a stale entry: ask the upstream relays again */
    struct pic old; /* the record there was, if have_old */
    bool have_old;
    struct lookup_waiter lw;
    bool looking;
    struct pic found; /* the profile's kind 0 and picture URL */
    struct pfp_job *job;
    struct pfp_pending *job_next;
};

/* A download and its processing, one per URL, shared by every pubkey whose profile names it. */
struct pfp_job {
    struct pfp *p;
    char *url;
    uint8_t url_hash[32];
    struct pfp_pending *pendings;
    bool interactive; /* someone waits in a browser: ahead of background work */
    bool queued, running;
    bool counted_background; /* started as background work: holds one of its slots */
    struct fetch *fetch;
    struct work work;
    uint8_t *src;
    size_t src_len;
    struct image_out out;
    uint8_t hash[32];
    int rc;
    int write_err;
    uint64_t process_ns;
    struct pfp_job *qnext, *qprev;
    struct pfp_job *anext, *aprev; /* every job, for shutdown */
};

static void unlink_hold(struct hold *h)
{
    struct pfp_pending *pd = h->pending;

    if (pd == NULL)
        return;
    if (h->prev != NULL)
        h->prev->next = h->next;
    else
        pd->waiters = h->next;
    if (h->next != NULL)
        h->next->prev = h->prev;
    h->pending = NULL;
    h->next = h->prev = NULL;
}

static void add_waiter(struct pfp_pending *pd, struct hold *h)
{
    h->pending = pd;
    h->prev = NULL;
    h->next = pd->waiters;
    if (pd->waiters != NULL)
        pd->waiters->prev = h;
    pd->waiters = h;
}

static void pump_queue(struct pfp *p);
static void on_prefetch_timer(uv_timer_t *t);

/* Ends a pending: every waiter is answered with `answer`, then it is freed. */
static void finish_pending(struct pfp_pending *pd, void (*answer)(struct pfp_pending *pd, h2o_req_t *req, void *ctx),
                           void *ctx)
{
    struct pfp *p = pd->p;
    struct hold *h;

    keymap_del(p->pending, pd->pubkey);
    if (pd->background) {
        p->background_pending--;
        uv_timer_start(&p->prefetch_timer, on_prefetch_timer, 0, 0);
    }
    if (pd->looking)
        lookup_cancel(p->lookup, &pd->lw);
    while ((h = pd->waiters) != NULL) {
        unlink_hold(h);
        if (h->req != NULL)
            answer(pd, h->req, ctx);
        hold_unref(h);
    }
    free(pd);
}

static void answer_unavailable(struct pfp_pending *pd, h2o_req_t *req, void *ctx)
{
    (void)pd;
    (void)ctx;
    http_reply_error(req, 503, "the relay is shutting down");
}

static void serve_cached(struct pfp *p, h2o_req_t *req, const uint8_t pubkey[32], const struct pic *pic,
                         const char *x_cache);

/* The picture found: from the bytes just made when there are some, else from the cache or its file. */
static void answer_picture(struct pfp_pending *pd, h2o_req_t *req, void *ctx)
{
    if (ctx != NULL)
        send_picture(pd->p, req, &pd->found.h, ctx, "MISS");
    else
        serve_cached(pd->p, req, pd->pubkey, &pd->found, "MISS");
}

static void answer_negative(struct pfp_pending *pd, h2o_req_t *req, void *ctx)
{
    (void)ctx;
    send_negative(pd->p, req, &pd->found);
}

/* --- index writes ------------------------------------------------------------------------------------------------ */

/* A picture record (and perhaps the URL's) to store; the pending is answered once it is committed. */
struct pic_write {
    struct store_write w;
    struct pfp *p;
    uint8_t pubkey[32];
    uint8_t *value; /* NULL deletes the record */
    size_t len;
    bool put_url;
    uint8_t url_key[32];
    struct url_rec url;
    struct pfp_pending *pd;
    struct blob_ref *blob;
};

static int apply_pic_write(struct store *st, MDB_txn *txn, struct store_write *w)
{
    struct pic_write *pw = (struct pic_write *)w;
    MDB_val k = {32, pw->pubkey}, v = {pw->len, pw->value};
    int rc;

    (void)st;
    if (pw->value != NULL)
        rc = mdb_put(txn, pw->p->pictures, &k, &v, 0);
    else if ((rc = mdb_del(txn, pw->p->pictures, &k, NULL)) == MDB_NOTFOUND)
        rc = 0;
    if (rc == 0 && pw->put_url) {
        MDB_val uk = {32, pw->url_key}, uv = {sizeof(pw->url), &pw->url};
        rc = mdb_put(txn, pw->p->urls, &uk, &uv, 0);
    }
    return rc == 0 ? 0 : (rc == MDB_MAP_FULL ? -ENOSPC : -EIO);
}

static void on_pic_written(struct store_write *w)
{
    struct pic_write *pw = (struct pic_write *)w;

    if (w->status != 0)
        log_error("pictures: cannot store a picture record: %s", strerror(-w->status));
    if (pw->pd != NULL) {
        if (pw->pd->found.h.state == PIC_OK)
            finish_pending(pw->pd, answer_picture, pw->blob);
        else
            finish_pending(pw->pd, answer_negative, NULL);
    }
    if (pw->blob != NULL)
        blob_release(pw->blob);
    free(pw->value);
    free(pw);
}

/* Stores `pic` for `pubkey` (or deletes the record when `pic` is NULL); answers `pd` once committed, if given. */
static void write_pic(struct pfp *p, const uint8_t pubkey[32], const struct pic *pic, struct pfp_pending *pd,
                      struct blob_ref *blob, const struct url_rec *url, const uint8_t url_key[32])
{
    struct pic_write *pw = calloc(1, sizeof(*pw));

    if (pw == NULL)
        abort();
    pw->p = p;
    memcpy(pw->pubkey, pubkey, 32);
    if (pic != NULL)
        pw->value = pic_encode(pic, &pw->len);
    if (url != NULL) {
        pw->put_url = true;
        pw->url = *url;
        memcpy(pw->url_key, url_key, 32);
    }
    pw->pd = pd;
    pw->blob = blob;
    if (blob != NULL)
        blob_retain(blob);
    pw->w.apply = apply_pic_write;
    pw->w.done = on_pic_written;
    store_submit(p->store, &pw->w);
}

/* --- outcomes ------------------------------------------------------------------------------------------------------
 */

static uint64_t now_s(void)
{
    return (uint64_t)time(NULL);
}

/* Remembers a failure with a back-off, and answers. A stale picture's failed refresh keeps the picture. */
static void fail(struct pfp_pending *pd, enum pfp_negative reason, const char *detail)
{
    struct pfp *p = pd->p;
    struct pic *pic = &pd->found;
    unsigned failures;
    uint64_t delay;

    if (p->closing) {
        finish_pending(pd, answer_unavailable, NULL);
        return;
    }
    {
        char hex[17];
        hex_encode(pd->pubkey, 8, hex);
        hex[16] = '\0';
        log_info("pictures: %s...: %s", hex, detail);
    }
    if (pd->have_old && pd->old.h.state == PIC_OK) {
        /* The old picture stays; it is confirmed for another period rather than retried at once. */
        pd->old.h.fetched_at = now_s();
        pd->found = pd->old;
        write_pic(p, pd->pubkey, &pd->old, pd, NULL, NULL, NULL);
        return;
    }
    failures = pd->have_old && pd->old.h.state == PIC_NEGATIVE ? pd->old.h.failures + 1 : 1;
    delay = RETRY_BASE_SECONDS << (failures - 1 < 9 ? failures - 1 : 9);
    if (delay > RETRY_MAX_SECONDS)
        delay = RETRY_MAX_SECONDS;
    pic->h.state = PIC_NEGATIVE;
    pic->h.reason = (uint8_t)reason;
    pic->h.failures = failures;
    pic->h.fetched_at = now_s();
    pic->h.retry_at = pic->h.fetched_at + delay;
    write_pic(p, pd->pubkey, pic, pd, NULL, NULL, NULL);
}

/* The picture is stored: the record points at it, and the waiters get it. */
static void succeed(struct pfp_pending *pd, const uint8_t blob_hash[32], const struct url_rec *u, struct blob_ref *blob,
                    bool put_url, const uint8_t url_key[32])
{
    struct pic *pic = &pd->found;

    pic->h.state = PIC_OK;
    pic->h.reason = 0;
    pic->h.failures = 0;
    pic->h.type = u->type;
    memcpy(pic->h.blob, blob_hash, 32);
    pic->h.bytes = u->bytes;
    pic->h.width = u->width;
    pic->h.height = u->height;
    pic->h.fetched_at = now_s();
    pic->h.retry_at = 0;
    write_pic(pd->p, pd->pubkey, pic, pd, blob, put_url ? u : NULL, url_key);
}

/* --- jobs: one download and processing per URL ---------------------------------------------------------------------
 */

static void queue_unlink(struct pfp *p, struct pfp_job *j)
{
    struct pfp_job **head = j->interactive ? &p->queue_interactive : &p->queue_background;

    if (j->qprev != NULL)
        j->qprev->qnext = j->qnext;
    else
        *head = j->qnext;
    if (j->qnext != NULL)
        j->qnext->qprev = j->qprev;
    j->qnext = j->qprev = NULL;
    j->queued = false;
}

/* Appends to the end of its queue, so that each queue is first come, first served. */
static void queue_push(struct pfp *p, struct pfp_job *j)
{
    struct pfp_job **head = j->interactive ? &p->queue_interactive : &p->queue_background, *last = *head;

    j->qnext = NULL;
    j->qprev = NULL;
    if (last == NULL) {
        *head = j;
    } else {
        while (last->qnext != NULL)
            last = last->qnext;
        last->qnext = j;
        j->qprev = last;
    }
    j->queued = true;
}

static void job_free(struct pfp_job *j)
{
    struct pfp *p = j->p;

    if (j->aprev != NULL)
        j->aprev->anext = j->anext;
    else
        p->all_jobs = j->anext;
    if (j->anext != NULL)
        j->anext->aprev = j->aprev;
    keymap_del(p->jobs, j->url_hash);
    free(j->url);
    free(j->src);
    image_out_free(&j->out);
    free(j);
}

/* Every pubkey waiting on the job hears the same outcome. */
static void job_fail(struct pfp_job *j, enum pfp_negative reason, const char *detail)
{
    struct pfp_pending *pd = j->pendings;

    j->pendings = NULL;
    while (pd != NULL) {
        struct pfp_pending *next = pd->job_next;
        pd->job = NULL;
        fail(pd, reason, detail);
        pd = next;
    }
}

static void job_end(struct pfp_job *j)
{
    struct pfp *p = j->p;

    if (j->running) {
        p->slots_used--;
        p->background_running -= j->counted_background;
    }
    job_free(j);
    pump_queue(p);
}

static void image_run(struct work *w)
{
    struct pfp_job *j = (struct pfp_job *)((char *)w - offsetof(struct pfp_job, work));
    struct pfp *p = j->p;
    uint64_t t0 = uv_hrtime();

    j->rc = image_process(j->src, j->src_len, &p->image_opts, &j->out);
    if (j->rc == 0) {
        blob_hash(j->out.data, j->out.len, j->hash);
        j->write_err = blob_write(&p->blobs, j->hash, j->out.data, j->out.len);
    }
    j->process_ns = uv_hrtime() - t0;
}

static void image_done(struct work *w)
{
    struct pfp_job *j = (struct pfp_job *)((char *)w - offsetof(struct pfp_job, work));
    struct pfp *p = j->p;
    struct pfp_pending *pd = j->pendings;
    struct url_rec u = {0};
    struct blob_ref *blob;

    p->stats.process_ns += j->process_ns;
    free(j->src);
    j->src = NULL;
    if (j->rc != 0) {
        p->stats.bad_images++;
        log_info("pictures: refused %s: %s", j->url, j->out.error);
        job_fail(j, PFP_BAD_IMAGE, j->out.error);
        job_end(j);
        return;
    }
    if (j->write_err != 0) {
        log_error("pictures: cannot write to media_cache_path: %s", strerror(-j->write_err));
        job_fail(j, PFP_DOWNLOAD_FAILED, "cannot store the picture");
        job_end(j);
        return;
    }
    p->stats.processed++;
    memcpy(u.blob, j->hash, 32);
    u.type = (uint8_t)j->out.type;
    u.bytes = (uint32_t)j->out.len;
    u.width = (uint16_t)j->out.width;
    u.height = (uint16_t)j->out.height;
    u.fetched_at = now_s();
    blob = blobcache_put(&p->cache, j->hash, j->out.data, j->out.len);
    j->pendings = NULL;
    for (bool first = true; pd != NULL; first = false) {
        struct pfp_pending *next = pd->job_next;
        pd->job = NULL;
        succeed(pd, j->hash, &u, blob, first, j->url_hash);
        pd = next;
    }
    blob_release(blob);
    job_end(j);
}

static void on_fetched(void *data, struct fetch_result *res)
{
    struct pfp_job *j = data;
    struct pfp *p = j->p;

    j->fetch = NULL;
    if (res->error != FETCH_OK) {
        p->stats.download_failures[res->error]++;
        log_info("pictures: cannot download %s: %s (%s)", j->url, fetch_error_name(res->error), res->detail);
        job_fail(j, PFP_DOWNLOAD_FAILED, res->detail);
        job_end(j);
        return;
    }
    j->src = res->body;
    j->src_len = res->len;
    res->body = NULL;
    j->work.run = image_run;
    j->work.done = image_done;
    workpool_submit(&p->images, &j->work);
}

/* Download slots background work may hold: the rest are kept for pictures someone is waiting for. */
static size_t background_slots(const struct pfp *p)
{
    size_t half = (size_t)p->cfg->max_concurrent / 2;
    return half > 0 ? half : 1;
}

/* Starts queued jobs while slots are free: interactive first, background within its share. */
static void pump_queue(struct pfp *p)
{
    while (!p->closing && p->slots_used < (size_t)p->cfg->max_concurrent) {
        struct pfp_job *j = p->queue_interactive;
        if (j == NULL && p->background_running < background_slots(p))
            j = p->queue_background;
        if (j == NULL)
            return;
        queue_unlink(p, j);
        j->running = true;
        j->counted_background = !j->interactive;
        p->background_running += j->counted_background;
        p->slots_used++;
        p->stats.downloads++;
        j->fetch = fetch_start(&p->fetcher, j->url, on_fetched, j);
    }
}

static void attach_job(struct pfp_pending *pd)
{
    struct pfp *p = pd->p;
    uint8_t key[32];
    struct pfp_job *j;

    blob_hash((const uint8_t *)pd->found.url, pd->found.h.url_len, key);
    if ((j = keymap_get(p->jobs, key)) == NULL) {
        if ((j = calloc(1, sizeof(*j))) == NULL || (j->url = strdup(pd->found.url)) == NULL)
            abort();
        j->p = p;
        memcpy(j->url_hash, key, 32);
        j->interactive = !pd->background;
        keymap_put(p->jobs, key, j);
        j->anext = p->all_jobs;
        if (p->all_jobs != NULL)
            p->all_jobs->aprev = j;
        p->all_jobs = j;
        queue_push(p, j);
    } else if (!pd->background && !j->interactive && j->queued) {
        /* Someone now waits in a browser: the job moves to the interactive queue. */
        queue_unlink(p, j);
        j->interactive = true;
        queue_push(p, j);
    }
    pd->job = j;
    pd->job_next = j->pendings;
    j->pendings = pd;
    pump_queue(p);
}

/* --- resolving a pubkey to a picture URL ------------------------------------------------------------------------- */

/* Takes the picture URL from a kind 0's content, as the seed program did: "picture", else "image". */
static const char *picture_of(json_t *content)
{
    json_t *v = json_object_get(content, "picture");
    if (!json_is_string(v) || json_string_length(v) == 0)
        v = json_object_get(content, "image");
    return json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

/* A URL is kept and later sent in a Location header: no spaces, no control characters. */
static bool url_usable(const char *url)
{
    size_t n = strlen(url);

    if (n > MAX_URL || (!http_url(url) && strncasecmp(url, "data:", 5) != 0))
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)url[i] <= ' ' || url[i] == 0x7f)
            return false;
    }
    return true;
}

/* Reuses what an earlier download of the same URL gave, when it is fresh and its file is still there. */
static bool reuse_url(struct pfp_pending *pd)
{
    struct pfp *p = pd->p;
    uint8_t key[32];
    MDB_txn *txn;
    MDB_val k = {32, key}, v;
    struct url_rec u;
    bool have = false;

    blob_hash((const uint8_t *)pd->found.url, pd->found.h.url_len, key);
    if (store_read_begin(p->store, &txn) != 0)
        return false;
    if (mdb_get(txn, p->urls, &k, &v) == 0 && v.mv_size == sizeof(u)) {
        memcpy(&u, v.mv_data, sizeof(u));
        have = u.fetched_at + p->max_age > now_s();
    }
    store_read_end(p->store, txn);
    if (!have || !blob_exists(&p->blobs, u.blob))
        return false;
    p->stats.url_reuses++;
    succeed(pd, u.blob, &u, NULL, false, NULL);
    return true;
}

static void use_profile(struct pfp_pending *pd, const struct event_view *ev)
{
    struct pic *pic = &pd->found;
    json_t *obj = json_loadb(ev->json, ev->json_len, 0, NULL), *content;
    const char *url;

    memcpy(pic->h.event_id, ev->id, 32);
    pic->h.kind0_at = ev->created_at;
    content = json_loads(json_string_value(json_object_get(obj, "content")), 0, NULL);
    url = json_is_object(content) ? picture_of(content) : NULL;
    if (url == NULL) {
        json_decref(content);
        json_decref(obj);
        fail(pd, PFP_NO_PICTURE, "the kind 0 has no picture");
        return;
    }
    snprintf(pic->url, sizeof(pic->url), "%s", url);
    pic->h.url_len = (uint16_t)strnlen(pic->url, MAX_URL);
    json_decref(content);
    json_decref(obj);

    if (!url_usable(pic->url)) {
        fail(pd, PFP_BAD_URL, "the picture URL is not usable");
        return;
    }
    if (pd->have_old && pd->old.h.state == PIC_OK && strcmp(pd->old.url, pic->url) == 0) {
        /* The same picture as before: confirmed, nothing to download. */
        pd->old.h.fetched_at = now_s();
        memcpy(pd->old.h.event_id, ev->id, 32);
        pd->old.h.kind0_at = ev->created_at;
        pd->found = pd->old;
        write_pic(pd->p, pd->pubkey, &pd->found, pd, NULL, NULL, NULL);
        return;
    }
    if (reuse_url(pd))
        return;
    attach_job(pd);
}

static void on_looked_up(struct lookup_waiter *w, const struct event_view *ev)
{
    struct pfp_pending *pd = (struct pfp_pending *)((char *)w - offsetof(struct pfp_pending, lw));
    struct pfp *p = pd->p;
    struct event_view local;
    MDB_txn *txn;

    pd->looking = false;
    if (ev != NULL) {
        use_profile(pd, ev);
        return;
    }
    if (p->lookup->closing) {
        finish_pending(pd, answer_unavailable, NULL);
        return;
    }
    /* A refresh that found nothing newer upstream goes on with the kind 0 stored here. */
    if (store_read_begin(p->store, &txn) == 0) {
        if (store_get_latest(p->store, txn, pd->pubkey, 0, &local) == 0) {
            void *copy = event_view_dup(&local, &local);
            store_read_end(p->store, txn);
            use_profile(pd, &local);
            free(copy);
            return;
        }
        store_read_end(p->store, txn);
    }
    fail(pd, PFP_NO_PROFILE, "no kind 0 here or on the upstream relays");
}

/*
 * Starts finding the picture of `pubkey`, or joins the search under way (an
 * interactive start promotes a background one). It may end at once, when
 * nothing needs waiting for; the caller looks the pending up to wait on it.
 */
static void start_pending(struct pfp *p, const uint8_t pubkey[32], bool background, bool refresh, const struct pic *old)
{
    struct pfp_pending *pd = keymap_get(p->pending, pubkey);
    struct event_view ev;
    MDB_txn *txn;
    bool local = false;

    if (pd != NULL) {
        if (!background && pd->background) {
            pd->background = false;
            p->background_pending--;
            if (pd->job != NULL && !pd->job->interactive && pd->job->queued) {
                queue_unlink(p, pd->job);
                pd->job->interactive = true;
                queue_push(p, pd->job);
            }
        }
        return;
    }
    if ((pd = calloc(1, sizeof(*pd))) == NULL)
        abort();
    pd->p = p;
    memcpy(pd->pubkey, pubkey, 32);
    pd->background = background;
    pd->refresh = refresh;
    if (old != NULL) {
        pd->old = *old;
        pd->have_old = true;
    }
    if (background)
        p->background_pending++;
    keymap_put(p->pending, pubkey, pd);

    if (!refresh && store_read_begin(p->store, &txn) == 0) {
        if (store_get_latest(p->store, txn, pubkey, 0, &ev) == 0) {
            void *copy = event_view_dup(&ev, &ev);
            local = true;
            store_read_end(p->store, txn);
            use_profile(pd, &ev);
            free(copy);
        } else {
            store_read_end(p->store, txn);
        }
    }
    if (!local) {
        pd->looking = true;
        pd->lw.cb = on_looked_up;
        lookup_get(p->lookup, pubkey, 0, &pd->lw);
    }
}

/* --- work ahead of requests ----------------------------------------------------------------------------------- */

/*
 * Pictures fetched ahead -- of new profiles, or to refresh stale ones -- wait
 * in a queue of pubkeys, so that storing a profile costs only an append; at
 * most max_concurrent of them are worked on at a time, behind interactive work.
 */
struct prefetch_item {
    uint8_t pubkey[32];
    bool refresh;
};

/* Queues `pubkey` unless it is queued already or the queue is full. Returns whether it was queued. */
static bool prefetch(struct pfp *p, const uint8_t pubkey[32], bool refresh)
{
    struct prefetch_item *it;

    if (keymap_get(p->prefetch_set, pubkey) != NULL)
        return false;
    if (p->prefetch_len == PREFETCH_QUEUE_MAX) {
        p->stats.prefetch_dropped++;
        return false;
    }
    it = &p->prefetch_queue[(p->prefetch_head + p->prefetch_len++) % PREFETCH_QUEUE_MAX];
    memcpy(it->pubkey, pubkey, 32);
    it->refresh = refresh;
    keymap_put(p->prefetch_set, pubkey, it);
    uv_timer_start(&p->prefetch_timer, on_prefetch_timer, 0, 0);
    return true;
}

static void on_prefetch_timer(uv_timer_t *t)
{
    struct pfp *p = t->data;

    while (!p->closing && p->prefetch_len > 0 && p->background_pending < (size_t)p->cfg->max_concurrent) {
        struct prefetch_item it = p->prefetch_queue[p->prefetch_head];
        struct pic pic;
        bool have;

        p->prefetch_head = (p->prefetch_head + 1) % PREFETCH_QUEUE_MAX;
        p->prefetch_len--;
        keymap_del(p->prefetch_set, it.pubkey);
        have = read_pic(p, it.pubkey, &pic) == 0;
        start_pending(p, it.pubkey, true, it.refresh, have ? &pic : NULL);
    }
}

/* --- the hit path ---------------------------------------------------------------------------------------------- */

/* A file read off the loop, for a picture not in the memory cache. */
struct blob_read {
    uv_work_t work;
    struct pfp *p;
    struct hold *hold;
    uint8_t pubkey[32];
    struct pic pic;
    const char *x_cache;
    uint8_t *data;
    size_t len;
    int err;
};

static void read_blob_run(uv_work_t *w)
{
    struct blob_read *br = (struct blob_read *)w;
    char path[4096];
    struct stat st;
    int fd;

    blob_path(&br->p->blobs, br->pic.h.blob, path, sizeof(path));
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        br->err = -errno;
        return;
    }
    if (fstat(fd, &st) != 0 || (br->data = malloc((size_t)st.st_size + 1)) == NULL) {
        br->err = -EIO;
        close(fd);
        return;
    }
    br->len = 0;
    while (br->len < (size_t)st.st_size) {
        ssize_t n = read(fd, br->data + br->len, (size_t)st.st_size - br->len);
        if (n <= 0) {
            br->err = n < 0 ? -errno : -EIO;
            break;
        }
        br->len += (size_t)n;
    }
    close(fd);
}

static void read_blob_done(uv_work_t *w, int status)
{
    struct blob_read *br = (struct blob_read *)w;
    struct pfp *p = br->p;
    h2o_req_t *req = br->hold->req;

    if (status == 0 && br->err == 0) {
        struct blob_ref *blob = blobcache_put(&p->cache, br->pic.h.blob, br->data, br->len);
        if (req != NULL)
            send_picture(p, req, &br->pic.h, blob, br->x_cache);
        blob_release(blob);
    } else if (req != NULL) {
        /* The file has gone: the record goes too, and this request becomes a miss. */
        log_warn("pictures: the file of a cached picture is missing (%s); fetching it again", strerror(-br->err));
        write_pic(p, br->pubkey, NULL, NULL, NULL, NULL, NULL);
        if (!p->closing) {
            struct pfp_pending *pd;
            start_pending(p, br->pubkey, false, false, NULL);
            if ((pd = keymap_get(p->pending, br->pubkey)) != NULL) {
                add_waiter(pd, br->hold);
                br->hold = NULL;
            }
        }
        if (br->hold != NULL && br->hold->req != NULL)
            http_reply_error(br->hold->req, 503, "the relay is shutting down");
    }
    if (br->hold != NULL)
        hold_unref(br->hold);
    free(br->data);
    free(br);
}

static void serve_cached(struct pfp *p, h2o_req_t *req, const uint8_t pubkey[32], const struct pic *pic,
                         const char *x_cache)
{
    struct blob_ref *blob = blobcache_get(&p->cache, pic->h.blob);
    struct blob_read *br;

    if (blob != NULL) {
        send_picture(p, req, &pic->h, blob, x_cache);
        blob_release(blob);
        return;
    }
    if ((br = calloc(1, sizeof(*br))) == NULL)
        abort();
    br->p = p;
    br->pic = *pic;
    memcpy(br->pubkey, pubkey, 32);
    br->x_cache = x_cache;
    br->hold = hold_req(req);
    uv_queue_work(p->loop, &br->work, read_blob_run, read_blob_done);
}

static void on_profile_pic(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    struct pfp *p = data;
    uint8_t pubkey[32];
    const char *why;
    struct pic pic;
    uint64_t now;
    struct pfp_pending *pd;

    if (nip19_decode_pubkey(param.base, param.len, pubkey, &why) != 0) {
        /* Not echoed: what was pasted might be a secret key. */
        http_reply_error(req, 400, "not a public key: %s", why);
        return;
    }
    now = now_s();
    if (read_pic(p, pubkey, &pic) == 0) {
        if (pic.h.state == PIC_OK) {
            bool stale = pic.h.fetched_at + p->max_age <= now;
            if (stale) {
                p->stats.stale++;
                if (!p->closing && keymap_get(p->pending, pubkey) == NULL && prefetch(p, pubkey, true))
                    p->stats.refreshes++;
            } else {
                p->stats.hits++;
            }
            serve_cached(p, req, pubkey, &pic, stale ? "STALE" : "HIT");
            return;
        }
        if (now < pic.h.retry_at) {
            p->stats.negative_hits++;
            send_negative(p, req, &pic);
            return;
        }
    }
    if (p->closing) {
        http_reply_error(req, 503, "the relay is shutting down");
        return;
    }
    p->stats.misses++;
    /* A stale failure record tells the new attempt how many came before it. */
    start_pending(p, pubkey, false, false, read_pic(p, pubkey, &pic) == 0 ? &pic : NULL);
    if ((pd = keymap_get(p->pending, pubkey)) != NULL)
        add_waiter(pd, hold_req(req));
    else
        http_reply_error(req, 503, "the picture could not be looked up now; try again");
}

/* --- profiles arriving ------------------------------------------------------------------------------------------ */

/* A kind 0 stored from any source: its picture is fetched ahead, as the seed program did. */
static void on_event_stored(void *data, const struct event_view *ev)
{
    struct pfp *p = data;
    struct pic pic;
    bool have;

    if (ev->kind != 0 || p->closing)
        return;
    have = read_pic(p, ev->pubkey, &pic) == 0;
    if (have && pic.h.kind0_at >= ev->created_at)
        return;
    if (!p->cfg->precache_on_metadata) {
        /* A failure remembered for an older profile says nothing about this one. */
        if (have && pic.h.state == PIC_NEGATIVE)
            write_pic(p, ev->pubkey, NULL, NULL, NULL, NULL, NULL);
        return;
    }
    if (prefetch(p, ev->pubkey, false))
        p->stats.prefetches++;
}

/* --- life cycle ------------------------------------------------------------------------------------------------- */

int pfp_init(struct pfp *p, uv_loop_t *loop, const struct config *cfg, struct store *store, struct lookup *lookup,
             struct inbox *inbox, char *err, size_t errlen)
{
    int r;

    memset(p, 0, sizeof(*p));
    p->loop = loop;
    p->cfg = cfg;
    p->store = store;
    p->lookup = lookup;
    if ((r = store_open_db(store, "pictures", 0, &p->pictures)) != 0 ||
        (r = store_open_db(store, "picture_urls", 0, &p->urls)) != 0) {
        snprintf(err, errlen, "cannot open the picture index: %s", strerror(-r));
        return r;
    }
    if ((r = blobs_init(&p->blobs, cfg->media_cache_path, err, errlen)) != 0)
        return r;
    if ((r = image_init()) != 0) {
        snprintf(err, errlen, "cannot start libvips");
        return r;
    }
    if ((r = fetcher_init(&p->fetcher, loop, cfg)) != 0) {
        snprintf(err, errlen, "cannot start libcurl");
        return r;
    }
    if ((r = workpool_init(&p->images, (size_t)cfg->image_threads, inbox)) != 0) {
        snprintf(err, errlen, "cannot start the image threads: %s", strerror(-r));
        return r;
    }
    blobcache_init(&p->cache, (size_t)cfg->memory_cache_mb << 20);
    p->pending = keymap_new(32);
    p->jobs = keymap_new(32);
    p->prefetch_set = keymap_new(32);
    if ((p->prefetch_queue = calloc(PREFETCH_QUEUE_MAX, sizeof(*p->prefetch_queue))) == NULL)
        abort();
    uv_timer_init(loop, &p->prefetch_timer);
    p->prefetch_timer.data = p;
    p->image_opts = (struct image_opts){cfg->resize_images, (int)cfg->max_image_size, (int)cfg->image_quality,
                                        cfg->max_source_pixels};
    p->max_age = (uint64_t)(cfg->cache_expiration_days * 86400);
    if (p->max_age == 0)
        p->max_age = 1;
    snprintf(p->cache_control, sizeof(p->cache_control), "public, max-age=%llu", (unsigned long long)p->max_age);
    store_add_listener(store, on_event_stored, p);
    return 0;
}

void pfp_start(struct pfp *p)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    size_t kept = 0, dropped = 0;

    if (store_read_begin(p->store, &txn) != 0)
        return;
    if (mdb_cursor_open(txn, p->pictures, &cur) == 0) {
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            struct pic pic;
            if (k.mv_size != 32 || pic_decode(&v, &pic) != 0 || pic.h.state != PIC_OK)
                continue;
            if (blob_exists(&p->blobs, pic.h.blob)) {
                kept++;
                continue;
            }
            /* Written by the writer after this read ends; the key is copied by then. */
            write_pic(p, k.mv_data, NULL, NULL, NULL, NULL, NULL);
            dropped++;
        }
        mdb_cursor_close(cur);
    }
    store_read_end(p->store, txn);
    log_info("pictures: %zu cached, %zu dropped because their file was missing", kept, dropped);
}

int pfp_route(struct pfp *p, struct http_server *http)
{
    return http_route(http, HTTP_GET, "/profile-pic/*", on_profile_pic, p);
}

void pfp_shutdown(struct pfp *p)
{
    p->closing = true;
    /* Jobs not started, and downloads under way, end now; their waiters hear 503 and nothing is remembered. */
    for (struct pfp_job *j = p->all_jobs, *next; j != NULL; j = next) {
        next = j->anext;
        if (j->queued) {
            queue_unlink(p, j);
        } else if (j->fetch != NULL) {
            fetch_cancel(j->fetch);
            j->fetch = NULL;
        } else {
            continue; /* being processed: it ends when its image work comes back */
        }
        job_fail(j, PFP_DOWNLOAD_FAILED, "shutting down");
        job_end(j);
    }
}

void pfp_free(struct pfp *p)
{
    fetcher_close(&p->fetcher);
    if (p->pending != NULL)
        keymap_free(p->pending, free);
    if (p->jobs != NULL)
        keymap_free(p->jobs, NULL);
    if (p->prefetch_set != NULL)
        keymap_free(p->prefetch_set, NULL);
    p->pending = p->jobs = p->prefetch_set = NULL;
    free(p->prefetch_queue);
    p->prefetch_queue = NULL;
    if (p->prefetch_timer.loop != NULL)
        uv_close((uv_handle_t *)&p->prefetch_timer, NULL);
    blobcache_free(&p->cache);
    blobs_free(&p->blobs);
}
