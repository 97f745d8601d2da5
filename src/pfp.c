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

/* Pubkeys waiting to be fetched ahead (new kind 0 events, stale entries); more are dropped. */
#define PREFETCH_QUEUE_MAX 100000
/* A failure is remembered 5 minutes, then twice as long each time again, up to a day. */
#define RETRY_BASE_SECONDS 300
#define RETRY_MAX_SECONDS  86400
/* Upper bounds of the image processing histogram, in seconds. */
static const double PROCESSING_BOUNDS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

/* --- requests waiting for a pending ---------------------------------------------------------------------------- */

/* A request waiting for its picture; answered when the pending ends, unless the client has gone by then. */
struct waiter {
    struct http_hold *hold;
    struct waiter *next;
};

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
    bool not_modified = etag_matches(req, blob->etag), head;
    h2o_iovec_t body = h2o_iovec_init(blob->data, blob->len);

    *slot = blob;
    blob_retain(blob);
    pictures_touch(&p->index, blob->hash);
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
    head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    if (!head)
        p->stats.bytes_served += blob->len;
    h2o_start_response(req, &generator);
    h2o_send(req, head ? NULL : &body, head ? 0 : 1, H2O_SEND_STATE_FINAL);
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

/* Who started a pending: someone waiting in a browser, a new or stale profile, or a job. */
enum pending_kind { PENDING_INTERACTIVE, PENDING_PREFETCH, PENDING_JOB };

struct pfp_pending {
    struct pfp *p;
    uint8_t pubkey[32];
    struct waiter *waiters;
    struct pfp_watch *watches;
    enum pending_kind kind;
    bool background; /* nobody waits in a browser */
    bool refresh;    /* a stale entry: ask the upstream relays again */
    bool confirmed;  /* the picture there was is still the profile's: nothing new was cached */
    bool refetched;  /* its file went while the record was written, and it was downloaded again */
    struct pic old;  /* the record there was, if have_old */
    bool have_old;
    struct lookup_waiter lw;
    bool looking;
    struct pic found; /* the profile's kind 0 and picture URL */
    struct pfp_download *download;
    struct pfp_pending *download_next;
    struct blob_ref *blob; /* the picture's bytes while its record is written, when just made */
};

/* A download and its processing, one per URL, shared by every pubkey whose profile names it. */
struct pfp_download {
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
    struct pfp_download *qnext, *qprev;
    struct pfp_download *anext, *aprev; /* every download, for shutdown */
};

static void add_waiter(struct pfp_pending *pd, struct http_hold *hold)
{
    struct waiter *w = malloc(sizeof(*w));

    if (w == NULL)
        abort();
    w->hold = hold;
    w->next = pd->waiters;
    pd->waiters = w;
}

static void pump_queue(struct pfp *p);
static void on_prefetch_timer(uv_timer_t *t);

/* What a pending's record says, for the jobs watching it. */
static enum pfp_outcome outcome_of(const struct pfp_pending *pd)
{
    if (pd->found.h.state == PIC_OK)
        return pd->confirmed ? PFP_ALREADY_CACHED : PFP_CACHED;
    switch (pd->found.h.reason) {
    case PFP_DOWNLOAD_FAILED:
    case PFP_BAD_IMAGE: return PFP_FAILED;
    default: return PFP_NOT_FOUND;
    }
}

/* Ends a pending: every waiter is answered with `answer`, every watch told `outcome`, then it is freed. */
static void finish_pending(struct pfp_pending *pd, void (*answer)(struct pfp_pending *pd, h2o_req_t *req, void *ctx),
                           void *ctx, enum pfp_outcome outcome)
{
    struct pfp *p = pd->p;
    struct waiter *wt;
    struct pfp_watch *w;

    keymap_del(p->pending, pd->pubkey);
    if (pd->kind == PENDING_PREFETCH) {
        p->prefetch_pending--;
        uv_timer_start(&p->prefetch_timer, on_prefetch_timer, 0, 0);
    }
    if (pd->looking)
        lookup_cancel(p->lookup, &pd->lw);
    while ((wt = pd->waiters) != NULL) {
        h2o_req_t *req = http_held(wt->hold);
        pd->waiters = wt->next;
        if (req != NULL)
            answer(pd, req, ctx);
        http_unhold(wt->hold);
        free(wt);
    }
    while ((w = pd->watches) != NULL) {
        pd->watches = w->next;
        w->cb(w, outcome);
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

static void attach_download(struct pfp_pending *pd);

/* The pending's record is committed: its waiters and watches hear the outcome. */
static void on_pic_written(void *ctx, int status)
{
    struct pfp_pending *pd = ctx;
    struct blob_ref *blob = pd->blob;

    pd->blob = NULL;
    if (status == -ENOENT && pd->found.h.state == PIC_OK && !pd->refetched && !pd->p->closing) {
        /* Its file was evicted or purged meanwhile: downloaded again, and written with its bytes this time. */
        pd->refetched = true;
        pd->confirmed = false;
        pd->p->stats.refetched++;
        attach_download(pd);
    } else if (pd->found.h.state == PIC_OK) {
        finish_pending(pd, answer_picture, blob, status == 0 ? outcome_of(pd) : PFP_FAILED);
    } else {
        finish_pending(pd, answer_negative, NULL, outcome_of(pd));
    }
    if (blob != NULL)
        blob_release(blob);
}

/* Stores the pending's record; it is answered once that is committed. `blob`: the bytes, when just made. */
static void write_found(struct pfp_pending *pd, struct blob_ref *blob, const struct url_rec *url,
                        const uint8_t url_key[32])
{
    if ((pd->blob = blob) != NULL)
        blob_retain(blob);
    pictures_put(&pd->p->index, pd->pubkey, &pd->found, url, url_key, blob, on_pic_written, pd);
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
        finish_pending(pd, answer_unavailable, NULL, PFP_ABANDONED);
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
        pd->confirmed = true;
        write_found(pd, NULL, NULL, NULL);
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
    write_found(pd, NULL, NULL, NULL);
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
    write_found(pd, blob, put_url ? u : NULL, url_key);
}

/* --- downloads: one download and processing per URL ----------------------------------------------------------- */

static void queue_unlink(struct pfp *p, struct pfp_download *j)
{
    struct pfp_download **head = j->interactive ? &p->queue_interactive : &p->queue_background;

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
static void queue_push(struct pfp *p, struct pfp_download *j)
{
    struct pfp_download **head = j->interactive ? &p->queue_interactive : &p->queue_background, *last = *head;

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

static void download_free(struct pfp_download *j)
{
    struct pfp *p = j->p;

    if (j->aprev != NULL)
        j->aprev->anext = j->anext;
    else
        p->all_downloads = j->anext;
    if (j->anext != NULL)
        j->anext->aprev = j->aprev;
    keymap_del(p->downloads, j->url_hash);
    free(j->url);
    free(j->src);
    image_out_free(&j->out);
    free(j);
}

/* Every pubkey waiting on the download hears the same outcome. */
static void download_fail(struct pfp_download *j, enum pfp_negative reason, const char *detail)
{
    struct pfp_pending *pd = j->pendings;

    j->pendings = NULL;
    while (pd != NULL) {
        struct pfp_pending *next = pd->download_next;
        pd->download = NULL;
        fail(pd, reason, detail);
        pd = next;
    }
}

static void download_end(struct pfp_download *j)
{
    struct pfp *p = j->p;

    if (j->running) {
        p->slots_used--;
        p->background_running -= j->counted_background;
    }
    download_free(j);
    pump_queue(p);
}

static void image_run(struct work *w)
{
    struct pfp_download *j = (struct pfp_download *)((char *)w - offsetof(struct pfp_download, work));
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
    struct pfp_download *j = (struct pfp_download *)((char *)w - offsetof(struct pfp_download, work));
    struct pfp *p = j->p;
    struct pfp_pending *pd = j->pendings;
    struct url_rec u = {0};
    struct blob_ref *blob;

    p->stats.process_ns += j->process_ns;
    histogram_observe(&p->processing, (double)j->process_ns / 1e9);
    free(j->src);
    j->src = NULL;
    if (j->rc != 0) {
        p->stats.bad_images++;
        log_info("pictures: refused %s: %s", j->url, j->out.error);
        download_fail(j, PFP_BAD_IMAGE, j->out.error);
        download_end(j);
        return;
    }
    if (j->write_err != 0) {
        log_error("pictures: cannot write to media_cache_path: %s", strerror(-j->write_err));
        download_fail(j, PFP_DOWNLOAD_FAILED, "cannot store the picture");
        download_end(j);
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
        struct pfp_pending *next = pd->download_next;
        pd->download = NULL;
        succeed(pd, j->hash, &u, blob, first, j->url_hash);
        pd = next;
    }
    blob_release(blob);
    download_end(j);
}

static void on_fetched(void *data, struct fetch_result *res)
{
    struct pfp_download *j = data;
    struct pfp *p = j->p;

    j->fetch = NULL;
    if (res->error != FETCH_OK) {
        p->stats.download_failures[res->error]++;
        log_info("pictures: cannot download %s: %s (%s)", j->url, fetch_error_name(res->error), res->detail);
        download_fail(j, PFP_DOWNLOAD_FAILED, res->detail);
        download_end(j);
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

/* Starts queued downloads while slots are free: interactive first, background within its share. */
static void pump_queue(struct pfp *p)
{
    while (!p->closing && p->slots_used < (size_t)p->cfg->max_concurrent) {
        struct pfp_download *j = p->queue_interactive;
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

static void attach_download(struct pfp_pending *pd)
{
    struct pfp *p = pd->p;
    uint8_t key[32];
    struct pfp_download *j;

    blob_hash((const uint8_t *)pd->found.url, pd->found.h.url_len, key);
    if ((j = keymap_get(p->downloads, key)) == NULL) {
        if ((j = calloc(1, sizeof(*j))) == NULL || (j->url = strdup(pd->found.url)) == NULL)
            abort();
        j->p = p;
        memcpy(j->url_hash, key, 32);
        j->interactive = !pd->background;
        keymap_put(p->downloads, key, j);
        j->anext = p->all_downloads;
        if (p->all_downloads != NULL)
            p->all_downloads->aprev = j;
        p->all_downloads = j;
        queue_push(p, j);
    } else if (!pd->background && !j->interactive && j->queued) {
        /* Someone now waits in a browser: the download moves to the interactive queue. */
        queue_unlink(p, j);
        j->interactive = true;
        queue_push(p, j);
    }
    pd->download = j;
    pd->download_next = j->pendings;
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

    if (n > PICTURES_MAX_URL || (!http_url(url) && strncasecmp(url, "data:", 5) != 0))
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)url[i] <= ' ' || url[i] == 0x7f)
            return false;
    }
    return true;
}

/* Reuses what an earlier download of the same URL gave, when it is fresh and its file is still cached. */
static bool reuse_url(struct pfp_pending *pd)
{
    struct pfp *p = pd->p;
    uint8_t key[32];
    struct url_rec u;

    blob_hash((const uint8_t *)pd->found.url, pd->found.h.url_len, key);
    if (pictures_get_url(&p->index, key, &u) != 0 || u.fetched_at + p->max_age <= now_s())
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
    pic->h.url_len = (uint16_t)strnlen(pic->url, PICTURES_MAX_URL);
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
        pd->confirmed = true;
        write_found(pd, NULL, NULL, NULL);
        return;
    }
    if (reuse_url(pd))
        return;
    attach_download(pd);
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
    if (lookup_closing(p->lookup)) {
        finish_pending(pd, answer_unavailable, NULL, PFP_ABANDONED);
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
static void start_pending(struct pfp *p, const uint8_t pubkey[32], enum pending_kind kind, bool refresh,
                          const struct pic *old)
{
    struct pfp_pending *pd = keymap_get(p->pending, pubkey);
    struct event_view ev;
    MDB_txn *txn;
    bool local = false;

    if (pd != NULL) {
        if (kind == PENDING_INTERACTIVE && pd->background) {
            pd->background = false;
            if (pd->download != NULL && !pd->download->interactive && pd->download->queued) {
                queue_unlink(p, pd->download);
                pd->download->interactive = true;
                queue_push(p, pd->download);
            }
        }
        return;
    }
    if ((pd = calloc(1, sizeof(*pd))) == NULL)
        abort();
    pd->p = p;
    memcpy(pd->pubkey, pubkey, 32);
    pd->kind = kind;
    pd->background = kind != PENDING_INTERACTIVE;
    pd->refresh = refresh;
    if (old != NULL) {
        pd->old = *old;
        pd->have_old = true;
    }
    if (kind == PENDING_PREFETCH)
        p->prefetch_pending++;
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
    int64_t kind0_at; /* the new profile's created_at: nothing to do once a record is that recent */
};

/* Queues `pubkey` unless it is queued already or the queue is full. Returns whether it was queued. */
static bool prefetch(struct pfp *p, const uint8_t pubkey[32], bool refresh, int64_t kind0_at)
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
    it->kind0_at = kind0_at;
    keymap_put(p->prefetch_set, pubkey, it);
    uv_timer_start(&p->prefetch_timer, on_prefetch_timer, 0, 0);
    return true;
}

static void on_prefetch_timer(uv_timer_t *t)
{
    struct pfp *p = t->data;

    while (!p->closing && p->prefetch_len > 0 && p->prefetch_pending < (size_t)p->cfg->max_concurrent) {
        struct prefetch_item it = p->prefetch_queue[p->prefetch_head];
        struct pic pic;
        bool have;

        p->prefetch_head = (p->prefetch_head + 1) % PREFETCH_QUEUE_MAX;
        p->prefetch_len--;
        keymap_del(p->prefetch_set, it.pubkey);
        have = pictures_get(&p->index, it.pubkey, &pic) == 0;
        /* The lookup that brought the profile may have cached its picture already. */
        if (!it.refresh && have && pic.h.kind0_at >= it.kind0_at)
            continue;
        start_pending(p, it.pubkey, PENDING_PREFETCH, it.refresh, have ? &pic : NULL);
    }
}

/* --- the hit path ---------------------------------------------------------------------------------------------- */

/* A file read off the loop, for a picture not in the memory cache. */
struct blob_read {
    uv_work_t work;
    struct pfp *p;
    struct http_hold *hold;
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
    h2o_req_t *req = http_held(br->hold);

    if (status == 0 && br->err == 0) {
        struct blob_ref *blob = blobcache_put(&p->cache, br->pic.h.blob, br->data, br->len);
        if (req != NULL)
            send_picture(p, req, &br->pic.h, blob, br->x_cache);
        blob_release(blob);
    } else if (req != NULL) {
        /* The file has gone: its entries go too, and this request becomes a miss. */
        log_warn("pictures: the file of a cached picture is missing (%s); fetching it again", strerror(-br->err));
        pictures_forget_file(&p->index, br->pic.h.blob);
        if (!p->closing) {
            struct pfp_pending *pd;
            start_pending(p, br->pubkey, PENDING_INTERACTIVE, false, NULL);
            if ((pd = keymap_get(p->pending, br->pubkey)) != NULL) {
                add_waiter(pd, br->hold);
                br->hold = NULL;
            }
        }
        if (br->hold != NULL)
            http_reply_error(req, 503, "the relay is shutting down");
    }
    if (br->hold != NULL)
        http_unhold(br->hold);
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
    br->hold = http_hold(req);
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
    if (pictures_get(&p->index, pubkey, &pic) == 0) {
        if (pic.h.state == PIC_OK) {
            bool stale = pic.h.fetched_at + p->max_age <= now;
            if (stale) {
                p->stats.stale++;
                if (!p->closing && keymap_get(p->pending, pubkey) == NULL && prefetch(p, pubkey, true, 0))
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
    start_pending(p, pubkey, PENDING_INTERACTIVE, false, pictures_get(&p->index, pubkey, &pic) == 0 ? &pic : NULL);
    if ((pd = keymap_get(p->pending, pubkey)) != NULL)
        add_waiter(pd, http_hold(req));
    else
        http_reply_error(req, 503, "the picture could not be looked up now; try again");
}

/* --- profiles arriving ------------------------------------------------------------------------------------------ */

/* A kind 0 stored from any source: its picture is fetched ahead, as the seed program did. */
static void on_event_stored(void *data, const struct event_view *ev, uint64_t commit)
{
    (void)commit;
    struct pfp *p = data;
    struct pic pic;
    bool have;

    if (ev->kind != 0 || p->closing)
        return;
    have = pictures_get(&p->index, ev->pubkey, &pic) == 0;
    if (have && pic.h.kind0_at >= ev->created_at)
        return;
    if (!p->cfg->precache_on_metadata) {
        /* A failure remembered for an older profile says nothing about this one. */
        if (have && pic.h.state == PIC_NEGATIVE)
            pictures_put(&p->index, ev->pubkey, NULL, NULL, NULL, NULL, NULL, NULL);
        return;
    }
    if (prefetch(p, ev->pubkey, false, ev->created_at))
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
    if ((r = blobs_init(&p->blobs, cfg->media_cache_path, err, errlen)) != 0)
        return r;
    blobcache_init(&p->cache, (size_t)cfg->memory_cache_mb << 20);
    if ((r = pictures_init(&p->index, loop,
                           &(struct pictures_options){(uint64_t)cfg->max_cache_size_mb << 20,
                                                      (unsigned)cfg->lru_low_water_percent,
                                                      (uint64_t)cfg->lru_check_interval * 60000},
                           store_db(store), &p->blobs, &p->cache, inbox)) != 0) {
        snprintf(err, errlen, "cannot open the picture index: %s", strerror(-r));
        return r;
    }
    if ((r = image_init()) != 0) {
        snprintf(err, errlen, "cannot start libvips");
        return r;
    }
    struct fetch_options fo = {
        .max_bytes = (size_t)cfg->max_source_bytes,
        .max_bytes_name = "max_source_bytes",
        .connect_timeout_ms = (long)cfg->download_connect_timeout_seconds * 1000,
        .timeout_ms = (long)cfg->download_timeout_seconds * 1000,
        .guard = {cfg->allow_private_sources, cfg->allowed_source_addresses.items, cfg->allowed_source_addresses.count},
    };
    if ((r = fetcher_init(&p->fetcher, loop, &fo, err, errlen)) != 0)
        return r;
    if ((r = workpool_init(&p->images, (size_t)cfg->image_threads, inbox)) != 0) {
        snprintf(err, errlen, "cannot start the image threads: %s", strerror(-r));
        return r;
    }
    p->pending = keymap_new(32);
    p->downloads = keymap_new(32);
    histogram_init(&p->processing, PROCESSING_BOUNDS, sizeof(PROCESSING_BOUNDS) / sizeof(double));
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
    pictures_start(&p->index);
}

int pfp_route(struct pfp *p, struct http_server *http)
{
    return http_route(http, HTTP_GET, "/profile-pic/*", on_profile_pic, p);
}

static enum pfp_outcome outcome_of_record(const struct pic *pic)
{
    if (pic->h.state == PIC_OK)
        return PFP_ALREADY_CACHED;
    return pic->h.reason == PFP_DOWNLOAD_FAILED || pic->h.reason == PFP_BAD_IMAGE ? PFP_FAILED : PFP_NOT_FOUND;
}

void pfp_precache(struct pfp *p, const uint8_t pubkey[32], struct pfp_watch *w)
{
    struct pfp_pending *pd;
    struct pic pic;
    bool have = pictures_get(&p->index, pubkey, &pic) == 0;
    uint64_t now = now_s();

    if (p->closing) {
        w->cb(w, PFP_ABANDONED);
        return;
    }
    /* A fresh picture, or a failure not yet due for another try, is the answer already. */
    if (have && (pic.h.state == PIC_OK ? pic.h.fetched_at + p->max_age > now : now < pic.h.retry_at)) {
        w->cb(w, outcome_of_record(&pic));
        return;
    }
    start_pending(p, pubkey, PENDING_JOB, have && pic.h.state == PIC_OK, have ? &pic : NULL);
    if ((pd = keymap_get(p->pending, pubkey)) == NULL) {
        w->cb(w, PFP_ABANDONED);
        return;
    }
    w->next = pd->watches;
    pd->watches = w;
}

void pfp_shutdown(struct pfp *p)
{
    p->closing = true;
    pictures_shutdown(&p->index);
    /* Jobs not started, and downloads under way, end now; their waiters hear 503 and nothing is remembered. */
    for (struct pfp_download *j = p->all_downloads, *next; j != NULL; j = next) {
        next = j->anext;
        if (j->queued) {
            queue_unlink(p, j);
        } else if (j->fetch != NULL) {
            fetch_cancel(j->fetch);
            j->fetch = NULL;
        } else {
            continue; /* being processed: it ends when its image work comes back */
        }
        download_fail(j, PFP_DOWNLOAD_FAILED, "shutting down");
        download_end(j);
    }
}

void pfp_free(struct pfp *p)
{
    fetcher_close(&p->fetcher);
    if (p->pending != NULL)
        keymap_free(p->pending, free);
    if (p->downloads != NULL)
        keymap_free(p->downloads, NULL);
    if (p->prefetch_set != NULL)
        keymap_free(p->prefetch_set, NULL);
    p->pending = p->downloads = p->prefetch_set = NULL;
    free(p->prefetch_queue);
    p->prefetch_queue = NULL;
    if (p->prefetch_timer.loop != NULL)
        uv_close((uv_handle_t *)&p->prefetch_timer, NULL);
    pictures_free(&p->index);
    blobcache_free(&p->cache);
    blobs_free(&p->blobs);
}
