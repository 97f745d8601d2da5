/* proxy.c -- pictures by their URL in imgproxy's language: parsed, fetched once, made into variants, bounded. */
#include "proxy.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "answer.h"
#include "blob.h"
#include "blobcache.h"
#include "clock.h"
#include "datauri.h"
#include "downloads.h"
#include "http.h"
#include "keymap.h"
#include "pictures.h"

/* What a request asks for, once parsed: enough to serve it again after a wait. */
struct ask {
    struct imgproxy_request ir; /* ir.source is its holder's */
    uint8_t url_key[32];        /* SHA-256 of the source URL */
    enum variant_format format; /* named, or negotiated from Accept */
    bool accepts_webp;          /* an animation is kept as WebP, else as GIF, when no format is named */
};

/* A request waiting: for a slot, or for its source. */
struct waiter {
    h2o_linklist_t link;
    struct http_hold *hold;
    struct ask ask; /* ask.ir.source malloc()ed */
};

/* The source of a master: its file and what it is. */
struct master {
    uint8_t blob[32];
    uint32_t bytes;
    int width, height;
    bool animated;
    uint64_t fetched_at;
};

/* A source being fetched, with the requests waiting for it. */
struct fetching {
    struct download_wait w; /* first: the download's callback finds the rest */
    struct proxy *px;
    uint8_t url_key[32];
    char *url;
    struct url_rec got;
    h2o_linklist_t waiters; /* struct waiter */
    bool background;        /* a stale source refreshed: nobody waits */
    struct ask first;       /* what the request that started it asks (first.ir.source is `url`), for the early answer */
    struct pictures_variant early; /* the early answer, stored with the source (early.bytes NULL: none) */
    struct master early_master;    /* ... the size of the master it was made for */
};

/* What a request whose answer went off the loop keeps, copied by answer_send(). */
struct answer_ctx {
    struct proxy *px;
    bool slot; /* it holds one of the route's slots */
    struct ask ask;
    size_t url_len;
    char url[]; /* ask.ir.source points nowhere: the URL is here */
};

struct proxy {
    struct proxy_options o;
    struct imgproxy_key *keys;
    struct proxy_services sv;
    char *pattern;           /* the prefix, then a slash and two stars: the rest of the path */
    struct keymap *fetching; /* url_key -> struct fetching */
    h2o_linklist_t queue;    /* struct waiter, for a slot */
    size_t nqueued, running;
    bool pumping, closing;
    struct answer_counts counts;
    struct proxy_stats stats;
};

static void serve(struct proxy *px, h2o_req_t *req, struct http_hold *hold, const struct ask *ask, bool slot,
                  bool cached);

/* --- slots -------------------------------------------------------------------------------------------------------- */

static bool take_slot(struct proxy *px)
{
    if (px->running >= px->o.max_concurrent || px->closing)
        return false;
    px->running++;
    return true;
}

static void waiter_free(struct waiter *w)
{
    if (w->hold != NULL)
        http_unhold(w->hold);
    imgproxy_request_free(&w->ask.ir);
    free(w);
}

/* A slot is free again: the oldest request waiting whose client is still there takes it. */
static void give_back(struct proxy *px)
{
    px->running--;
    if (px->pumping)
        return;
    px->pumping = true;
    while (px->running < px->o.max_concurrent && !h2o_linklist_is_empty(&px->queue)) {
        struct waiter *w = H2O_STRUCT_FROM_MEMBER(struct waiter, link, px->queue.next);
        h2o_req_t *req = http_held(w->hold);

        h2o_linklist_unlink(&w->link);
        px->nqueued--;
        if (req != NULL) {
            px->running++;
            serve(px, req, w->hold, &w->ask, true, true);
            w->hold = NULL;
        }
        waiter_free(w);
    }
    px->pumping = false;
}

/* A waiter for `ask`, owning a copy of its source and the request's hold (`hold`, or a new one). */
static struct waiter *waiter_new(h2o_req_t *req, struct http_hold *hold, const struct ask *ask)
{
    struct waiter *w = calloc(1, sizeof(*w));

    if (w == NULL || (w->ask = *ask, w->ask.ir.source = strdup(ask->ir.source)) == NULL)
        abort();
    w->hold = hold != NULL ? hold : http_hold(req);
    return w;
}

static void reply_busy(struct proxy *px, h2o_req_t *req)
{
    px->stats.rejected++;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    http_reply_error(req, 429, "too many pictures are being fetched or made through this endpoint; try again shortly");
}

/* No slot now: the request waits for one, or is refused when too many wait already. */
static void wait_for_slot(struct proxy *px, h2o_req_t *req, struct http_hold *hold, const struct ask *ask)
{
    if (px->closing) {
        http_reply_error(req, 503, "the relay is shutting down");
    } else if (px->nqueued >= px->o.max_queue) {
        reply_busy(px, req);
    } else {
        struct waiter *w = waiter_new(req, hold, ask);
        h2o_linklist_insert(&px->queue, &w->link);
        px->nqueued++;
        return;
    }
    if (hold != NULL)
        http_unhold(hold);
}

/* --- answers ------------------------------------------------------------------------------------------------------ */

/* An answer that went off the loop has ended: its slot goes back, and a master gone makes it a miss. */
static void on_answered(void *ctx, struct http_hold *hold, int status)
{
    struct answer_ctx *c = ctx;
    struct proxy *px = c->px;
    h2o_req_t *req;

    if (status != 0 && (req = http_held(hold)) != NULL) {
        c->ask.ir.source = c->url;
        /* The slot goes with it: fetching the source again is the same work. Its record is being dropped,
         * so it is not looked at again. */
        serve(px, req, hold, &c->ask, c->slot, false);
        return;
    }
    if (hold != NULL)
        http_unhold(hold);
    if (c->slot)
        give_back(px);
}

/* The format and frames of the answer to `ask` from `m`. */
static void choose_format(const struct ask *ask, const struct master *m, enum image_type *type, bool *moves)
{
    enum variant_format f = ask->format;

    /* As imgproxy does, an animation stays one unless a format that cannot move is named. */
    if (m->animated && !ask->ir.format_named)
        f = ask->accepts_webp ? VARIANT_WEBP : VARIANT_GIF;
    *type = (enum image_type)variant_image_type(f);
    *moves = m->animated && (f == VARIANT_WEBP || f == VARIANT_GIF);
}

/* The variant that answers `ask` from the master `m`, into `a`. Reads only `o` and its arguments: any thread. */
static void shape(const struct proxy_options *o, const struct ask *ask, const struct master *m, struct answer *a)
{
    bool moves;

    *a = (struct answer){.variant = true, .fetched_at = m->fetched_at, .master_bytes = m->bytes};
    memcpy(a->master, m->blob, 32);
    choose_format(ask, m, &a->type, &moves);
    a->vary = !ask->ir.format_named;
    imgproxy_geometry(&ask->ir, m->width, m->height, o->max_size, &a->spec.box);
    a->spec.type = a->type;
    a->spec.animated = moves;
    a->spec.quality = ask->ir.quality > 0 ? ask->ir.quality : o->quality;
    a->spec.timeout_ms = o->timeout_ms;
    a->size = a->spec.box.canvas_w > a->spec.box.canvas_h ? a->spec.box.canvas_w : a->spec.box.canvas_h;
    pictures_box_key(&a->key, &a->spec.box, a->type, a->spec.quality, moves);
}

/* Answers `req` from the master `m`: a variant stored, or one made now, which takes a slot. */
static void serve_master(struct proxy *px, h2o_req_t *req, struct http_hold *hold, const struct ask *ask,
                         const struct master *m, const char *x_cache, bool slot)
{
    struct answer a;
    struct variant_rec rec;
    union {
        struct answer_ctx c;
        char bytes[sizeof(struct answer_ctx) + PICTURES_MAX_URL + 1];
    } buf;
    struct answer_ctx *c = &buf.c;
    size_t url_len = strlen(ask->ir.source);

    shape(&px->o, ask, m, &a);
    if (pictures_get_variant(px->sv.pictures, a.master, &a.key, &rec) == 0) {
        /* Nothing to make: the slot, if any, is for others. */
        memcpy(a.file, rec.blob, 32);
        a.bytes = rec.bytes;
        if (slot)
            give_back(px);
        slot = false;
    } else if (!slot && !(slot = take_slot(px))) {
        wait_for_slot(px, req, hold, ask);
        return;
    }
    c->px = px;
    c->slot = slot;
    c->ask = *ask;
    c->ask.ir.source = NULL;
    c->url_len = url_len;
    memcpy(c->url, ask->ir.source, url_len + 1);
    if (answer_send(px->sv.answers, req, &a, &px->counts, x_cache, on_answered, c, sizeof(*c) + url_len + 1) && slot)
        give_back(px);
    if (hold != NULL)
        http_unhold(hold);
}

/* --- fetching ----------------------------------------------------------------------------------------------------- */

/* The answer to a source that could not be had. */
static void reply_failure(h2o_req_t *req, const struct download_result *r)
{
    if (r->error == DOWNLOAD_BAD_IMAGE) {
        if (r->refusal == IMAGE_REFUSED_PIXELS || r->refusal == IMAGE_REFUSED_MEMORY)
            http_reply_error(req, 413, "the source is too large a picture: %s", r->detail);
        else
            http_reply_error(req, 415, "the source is not an accepted picture: %s", r->detail);
        return;
    }
    switch (r->fetch) {
    case FETCH_OK: http_reply_error(req, 503, "the relay is shutting down"); break;
    case FETCH_BAD_URL: http_reply_error(req, 400, "source: %s", r->detail); break;
    case FETCH_REFUSED_ADDRESS: http_reply_error(req, 404, "the source is refused: %s", r->detail); break;
    case FETCH_TOO_BIG: http_reply_error(req, 413, "the source is too big: %s", r->detail); break;
    case FETCH_TIMEOUT:
    case FETCH_TOO_SLOW: http_reply_error(req, 504, "the source's server took too long: %s", r->detail); break;
    case FETCH_HTTP_STATUS:
        if (r->http_status == 404 || r->http_status == 410)
            http_reply_error(req, 404, "the source is missing: its server answered %ld", r->http_status);
        else
            http_reply_error(req, 502, "the source's server answered %ld", r->http_status);
        break;
    default: http_reply_error(req, 502, "the source could not be downloaded: %s", r->detail); break;
    }
}

static void master_of_url(const struct url_rec *u, struct master *m)
{
    memcpy(m->blob, u->blob, 32);
    m->bytes = u->bytes;
    m->width = u->width;
    m->height = u->height;
    m->animated = (u->flags & PIC_ANIMATED) != 0;
    m->fetched_at = u->fetched_at;
}

/* The record of a source: what its URL gave, under a key of its own, so that it is evicted and purged as any. */
static void put_record(struct proxy *px, const uint8_t url_key[32], const char *url, const struct url_rec *u,
                       const struct url_rec *put_url, struct blob_ref *bytes, const struct pictures_variant *variant,
                       pictures_done_fn done, void *ctx)
{
    struct pic pic = {.h = {.state = PIC_OK,
                            .type = u->type,
                            .flags = u->flags,
                            .fetched_at = u->fetched_at,
                            .bytes = u->bytes,
                            .width = u->width,
                            .height = u->height}};
    uint8_t key[32];
    size_t len = strlen(url);

    memcpy(pic.h.blob, u->blob, 32);
    pic.h.url_len = (uint16_t)len;
    memcpy(pic.url, url, len + 1);
    pictures_record_key(url_key, PICTURES_SOURCE, key);
    pictures_put(px->sv.pictures, key, &pic, put_url, url_key, bytes, variant, variant != NULL, done, ctx);
}

static void fetching_free(struct fetching *f)
{
    if (f->early.bytes != NULL)
        blob_release(f->early.bytes);
    keymap_del(f->px->fetching, f->url_key);
    free(f->url);
    free(f);
}

/* The source's record is committed: every request waiting for it is answered from its master. */
static void on_source_stored(void *ctx, int status)
{
    struct fetching *f = ctx;
    struct proxy *px = f->px;
    struct master m;
    bool slot = true; /* the fetch's, handed to the first request that needs one */

    master_of_url(&f->got, &m);
    while (!h2o_linklist_is_empty(&f->waiters)) {
        struct waiter *w = H2O_STRUCT_FROM_MEMBER(struct waiter, link, f->waiters.next);
        h2o_req_t *req = http_held(w->hold);

        h2o_linklist_unlink(&w->link);
        if (req == NULL) {
            ;
        } else if (status != 0) {
            http_reply_error(req, 503, "the source could not be stored: %s", strerror(-status));
        } else {
            serve_master(px, req, w->hold, &w->ask, &m, "MISS", slot);
            w->hold = NULL;
            slot = false;
        }
        waiter_free(w);
    }
    fetching_free(f);
    if (slot)
        give_back(px);
}

static void on_fetched(struct download_wait *dw, const struct download_result *r)
{
    struct fetching *f = H2O_STRUCT_FROM_MEMBER(struct fetching, w, dw);
    struct proxy *px = f->px;

    if (r->error == DOWNLOAD_OK) {
        f->got = *r->url;
        put_record(px, f->url_key, f->url, r->url, r->first ? r->url : NULL, r->blob,
                   f->early.bytes != NULL ? &f->early : NULL, on_source_stored, f);
        if (!f->background)
            pictures_flush(px->sv.pictures);
        return;
    }
    px->stats.source_failures++;
    while (!h2o_linklist_is_empty(&f->waiters)) {
        struct waiter *w = H2O_STRUCT_FROM_MEMBER(struct waiter, link, f->waiters.next);
        h2o_req_t *req = http_held(w->hold);

        h2o_linklist_unlink(&w->link);
        if (req != NULL) {
            px->stats.failed++;
            reply_failure(req, r);
        }
        waiter_free(w);
    }
    fetching_free(f);
    give_back(px);
}

/* On an image thread: the answer to the request that started the fetch, from a master of that size. */
static bool early_shape(const struct download_wait *dw, int width, int height, struct image_variant_spec *out)
{
    const struct fetching *f = H2O_STRUCT_FROM_MEMBER(struct fetching, w, dw);
    struct master m = {.width = width, .height = height};
    struct answer a;

    shape(&f->px->o, &f->first, &m, &a);
    *out = a.spec;
    return true;
}

/* Answers `req` with the early answer of `f` when that is what `ask` wants from its master. */
static bool send_early(struct proxy *px, struct fetching *f, h2o_req_t *req, const struct ask *ask, const char *x_cache)
{
    struct answer a;

    if (f->early.bytes == NULL)
        return false;
    shape(&px->o, ask, &f->early_master, &a);
    if (a.key.len != f->early.key.len || memcmp(a.key.b, f->early.key.b, a.key.len) != 0)
        return false;
    answer_send_made(px->sv.answers, req, &a, f->early.bytes, &px->counts, x_cache);
    px->stats.early_answers++;
    return true;
}

/* Made before the master: every request waiting that asks for this very variant has it now. */
static void on_early(struct download_wait *dw, const struct download_variant *v, int width, int height)
{
    struct fetching *f = H2O_STRUCT_FROM_MEMBER(struct fetching, w, dw);
    struct proxy *px = f->px;
    h2o_linklist_t *l, *next;
    struct answer mine;

    f->early_master = (struct master){.width = width, .height = height, .fetched_at = (uint64_t)clock_now_s()};
    shape(&px->o, &f->first, &f->early_master, &mine);
    px->counts.variants_made++;
    blob_retain(v->blob);
    f->early = (struct pictures_variant){.key = mine.key,
                                         .rec = {.bytes = (uint32_t)v->blob->len,
                                                 .width = (uint16_t)v->width,
                                                 .height = (uint16_t)v->height,
                                                 .type = (uint8_t)mine.type,
                                                 .frames = 1},
                                         .bytes = v->blob};
    memcpy(f->early.rec.blob, v->blob->hash, 32);
    for (l = f->waiters.next; l != &f->waiters; l = next) {
        struct waiter *w = H2O_STRUCT_FROM_MEMBER(struct waiter, link, l);
        h2o_req_t *req = http_held(w->hold);

        next = l->next;
        if (req != NULL && send_early(px, f, req, &w->ask, "MISS")) {
            h2o_linklist_unlink(&w->link);
            waiter_free(w);
        }
    }
}

static const struct download_early EARLY = {early_shape, on_early};

/*
 * Fetches the source of `ask`, holding a slot, with `w` (NULL for a refresh nobody waits for) its first waiter.
 * A data: source is decoded here, under max_source_bytes.
 */
static void fetch(struct proxy *px, const struct ask *ask, struct waiter *w)
{
    struct fetching *f = calloc(1, sizeof(*f));
    const char *url = ask->ir.source;
    size_t len = strlen(url);

    if (f == NULL || (f->url = strdup(url)) == NULL)
        abort();
    f->px = px;
    memcpy(f->url_key, ask->url_key, 32);
    f->background = w == NULL;
    f->w.cb = on_fetched;
    if (w != NULL) {
        f->first = *ask;
        f->first.ir.source = f->url;
        f->w.early = &EARLY;
    }
    h2o_linklist_init_anchor(&f->waiters);
    if (w != NULL)
        h2o_linklist_insert(&f->waiters, &w->link);
    keymap_put(px->fetching, f->url_key, f);
    px->stats.sources_fetched++;
    if (strncasecmp(url, "data:", 5) == 0) {
        uint8_t *bytes;
        size_t n;
        /* Checked by the request before it came here: it decodes. */
        if (datauri_decode(url, len, px->o.max_data_bytes, &bytes, &n) != 0)
            abort();
        downloads_get_data(px->sv.downloads, url, len, bytes, n, !f->background, &f->w);
        free(bytes);
        return;
    }
    downloads_get(px->sv.downloads, url, len, !f->background, &f->w);
}

/* --- requests ----------------------------------------------------------------------------------------------------- */

static void refresh(struct proxy *px, const struct ask *ask)
{
    /* Behind everything else: only with a slot to spare, never queued. */
    if (keymap_get(px->fetching, ask->url_key) == NULL && take_slot(px))
        fetch(px, ask, NULL);
}

/*
 * Answers `req` (held by `hold` when it has waited, released here) for `ask`; `slot`: it holds one, passed on.
 * `cached`: the cache may answer; else the source is fetched.
 */
static void serve(struct proxy *px, h2o_req_t *req, struct http_hold *hold, const struct ask *ask, bool slot,
                  bool cached)
{
    uint64_t now = (uint64_t)clock_now_s();
    uint8_t key[32];
    struct fetching *f;
    struct url_rec u;
    struct pic pic;
    struct master m;

    pictures_record_key(ask->url_key, PICTURES_SOURCE, key);
    if (cached && pictures_get(px->sv.pictures, key, &pic) == 0 && pic.h.state == PIC_OK) {
        bool stale = pic.h.fetched_at + px->o.max_age <= now;
        struct url_rec r = {.bytes = pic.h.bytes,
                            .width = pic.h.width,
                            .height = pic.h.height,
                            .flags = pic.h.flags,
                            .fetched_at = pic.h.fetched_at};
        memcpy(r.blob, pic.h.blob, 32);
        master_of_url(&r, &m);
        if (stale) {
            px->stats.stale++;
            refresh(px, ask);
        } else if (hold == NULL) {
            px->stats.hits++;
        }
        serve_master(px, req, hold, ask, &m, stale ? "STALE" : "HIT", slot);
        return;
    }
    /* A profile picture (or another request's source) of that URL brought it already. */
    if (cached && pictures_get_url(px->sv.pictures, ask->url_key, &u) == 0 && u.fetched_at + px->o.max_age > now) {
        if (hold == NULL)
            px->stats.hits++;
        put_record(px, ask->url_key, ask->ir.source, &u, NULL, NULL, NULL, NULL, NULL);
        master_of_url(&u, &m);
        serve_master(px, req, hold, ask, &m, "HIT", slot);
        return;
    }
    /* Its source is still being stored, but this answer is made. */
    if ((f = keymap_get(px->fetching, ask->url_key)) != NULL && send_early(px, f, req, ask, "HIT")) {
        if (hold == NULL)
            px->stats.hits++;
        else
            http_unhold(hold);
        if (slot)
            give_back(px);
        return;
    }
    if (hold == NULL)
        px->stats.misses++;
    if (f != NULL) {
        h2o_linklist_insert(&f->waiters, &waiter_new(req, hold, ask)->link);
        if (slot)
            give_back(px);
        return;
    }
    if (!slot && !take_slot(px)) {
        wait_for_slot(px, req, hold, ask);
        return;
    }
    fetch(px, ask, waiter_new(req, hold, ask));
}

static void reply_parse_error(struct proxy *px, h2o_req_t *req, int r, const char *err)
{
    if (r == -ENOENT) {
        http_reply_error(req, 404, "%s: set imgproxy_key and imgproxy_salt, or imgproxy_allow_unsigned", err);
    } else if (r == -EACCES) {
        px->stats.forbidden++;
        http_reply_error(req, 403, "%s", err);
    } else {
        px->stats.bad_requests++;
        http_reply_error(req, 400, "%s", err);
    }
}

/* A data: source decodes within max_source_bytes: 0, -EFBIG or -EINVAL (0 for any other source). */
static int data_source_check(struct proxy *px, const char *url)
{
    uint8_t *bytes;
    size_t n;
    int r;

    if (strncasecmp(url, "data:", 5) != 0)
        return 0;
    if ((r = datauri_decode(url, strlen(url), px->o.max_data_bytes, &bytes, &n)) == 0)
        free(bytes);
    return r;
}

static void on_request(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    struct proxy *px = data;
    size_t plen = strlen(px->o.prefix), len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    char err[256];
    struct ask ask = {0};
    ssize_t ai;
    h2o_iovec_t accept = h2o_iovec_init("", 0);
    int r;

    (void)param;
    px->stats.requests++;
    /* As for profile pictures: the bytes come from anyone's server. */
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0, NULL,
                          H2O_STRLIT("nosniff"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("content-security-policy"), 0, NULL,
                          H2O_STRLIT("default-src 'none'"));
    /* What is signed is the path as sent, before any decoding or normalising. */
    if (len < plen || memcmp(req->path.base, px->o.prefix, plen) != 0) {
        px->stats.bad_requests++;
        http_reply_error(req, 400, "the path must start with %s, as sent", px->o.prefix);
        return;
    }
    if ((r = imgproxy_parse(&px->o.parse, req->path.base + plen, len - plen, &ask.ir, err, sizeof(err))) != 0) {
        reply_parse_error(px, req, r, err);
        return;
    }
    if (strlen(ask.ir.source) > PICTURES_MAX_URL) {
        px->stats.bad_requests++;
        http_reply_error(req, 400, "source: longer than %d bytes", PICTURES_MAX_URL);
    } else if ((r = data_source_check(px, ask.ir.source)) != 0) {
        if (r == -EFBIG) {
            px->stats.failed++;
            http_reply_error(req, 413, "the source is larger than max_source_bytes");
        } else {
            px->stats.bad_requests++;
            http_reply_error(req, 400, "source: a data: URI must be base64 (data:image/...;base64,...)");
        }
    } else {
        if ((ai = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT, -1)) != -1)
            accept = req->headers.entries[ai].value;
        ask.format = ask.ir.format_named ? ask.ir.format : variant_negotiate(px->o.negotiate, px->o.nnegotiate, accept);
        ask.accepts_webp = variant_accepts(accept, "image/webp");
        blob_hash((const uint8_t *)ask.ir.source, strlen(ask.ir.source), ask.url_key);
        serve(px, req, NULL, &ask, false, true);
    }
    imgproxy_request_free(&ask.ir);
}

/* --- life cycle --------------------------------------------------------------------------------------------------- */

int proxy_init(struct proxy **out, const struct proxy_options *o, const struct proxy_services *sv)
{
    struct proxy *px = calloc(1, sizeof(*px));
    size_t plen = strlen(o->prefix);

    if (px == NULL || (px->pattern = malloc(plen + 4)) == NULL)
        abort();
    px->o = *o;
    px->sv = *sv;
    if (px->o.max_concurrent == 0)
        px->o.max_concurrent = 1;
    if (o->parse.nkeys > 0) {
        if ((px->keys = calloc(o->parse.nkeys, sizeof(*px->keys))) == NULL)
            abort();
        memcpy(px->keys, o->parse.keys, o->parse.nkeys * sizeof(*px->keys));
    }
    px->o.parse.keys = px->keys;
    snprintf(px->pattern, plen + 4, "%s/**", o->prefix);
    px->fetching = keymap_new(32);
    h2o_linklist_init_anchor(&px->queue);
    *out = px;
    return 0;
}

int proxy_route(struct proxy *px, struct http_server *http)
{
    return http_route(http, HTTP_GET, px->pattern, on_request, px);
}

void proxy_shutdown(struct proxy *px)
{
    if (px->closing)
        return;
    px->closing = true;
    while (!h2o_linklist_is_empty(&px->queue)) {
        struct waiter *w = H2O_STRUCT_FROM_MEMBER(struct waiter, link, px->queue.next);
        h2o_req_t *req = http_held(w->hold);

        h2o_linklist_unlink(&w->link);
        px->nqueued--;
        if (req != NULL)
            http_reply_error(req, 503, "the relay is shutting down");
        waiter_free(w);
    }
}

void proxy_free(struct proxy *px)
{
    if (px == NULL)
        return;
    keymap_free(px->fetching, NULL);
    if (px->keys != NULL)
        OPENSSL_cleanse(px->keys, px->o.parse.nkeys * sizeof(*px->keys));
    free(px->keys);
    free(px->pattern);
    free(px);
}

void proxy_stats(const struct proxy *px, struct proxy_stats *out)
{
    *out = px->stats;
    out->not_modified = px->counts.not_modified;
    out->variants_made = px->counts.variants_made;
    out->bytes_served = px->counts.bytes_served;
    out->running = px->running;
    out->queued = px->nqueued;
    out->max_concurrent = px->o.max_concurrent;
    out->max_queue = px->o.max_queue;
}
