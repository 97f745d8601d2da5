/*
 * pfp.c -- profile pictures: GET /profile-pic/{pubkey} answered from the cache,
 * or found, fetched, checked, resized and stored; and pictures cached ahead of
 * requests, for new profiles and for jobs.
 */
#include "pfp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "answer.h"
#include "blob.h"
#include "blobcache.h"
#include "clock.h"
#include "downloads.h"
#include "fallback.h"
#include "http.h"
#include "keymap.h"
#include "log.h"
#include "lookup.h"
#include "metrics.h"
#include "names.h"
#include "cdn.h"
#include "cluster.h"
#include "hex.h"
#include "nip19.h"
#include "pictures.h"
#include "prefetch.h"
#include "profile.h"
#include "store.h"
#include "workpool.h"

/* Pubkeys waiting to be fetched ahead (new kind 0 events, stale entries); more are dropped. */
#define PREFETCH_QUEUE_MAX 100000

/* Generated pictures kept in memory: a few thousand avatars' worth. */
#define GENERATED_CACHE_BYTES (8u << 20)

struct pfp {
    uv_loop_t *loop;
    struct pfp_services sv;
    struct pfp_options o;
    struct workpool images;  /* checking and resizing */
    struct workpool readers; /* picture files not in memory, read off the loop */
    bool images_started, readers_started;
    struct downloads *downloads;
    struct pending *pending;
    struct prefetch *prefetch;
    char cache_control[128];
    struct variant_options variants, banner_variants;
    struct fallback *fallback; /* generated pictures */
    struct answers *answers;
    struct answer_counts counts; /* of the answers here */
    bool closing;
    struct pfp_stats stats;
};

/* Which of the pubkey's pictures a request is for: banners' sizes are widths. */
static enum pictures_slot slot_of(const struct variant *v)
{
    return v->width_only ? PICTURES_BANNER : PICTURES_AVATAR;
}

/* The record of `pubkey`'s picture for `v`. Returns what pictures_get() does. */
static int record_get(struct pfp *p, const uint8_t pubkey[32], const struct variant *v, struct pic *out)
{
    uint8_t key[32];

    pictures_record_key(pubkey, slot_of(v), key);
    return pictures_get(p->sv.pictures, key, out);
}

/* --- answers ---------------------------------------------------------------------------------------------------- */

/* A failure's answer: a redirect to the picture's own URL when there is one to try, as the seed program did. */
static void send_negative(h2o_req_t *req, const struct pic *pic, bool banner)
{
    switch (pic->h.reason) {
    case PENDING_DOWNLOAD_FAILED:
    case PENDING_BAD_IMAGE:
        if (profile_url_is_http(pic->url)) {
            h2o_iovec_t loc = h2o_strdup(&req->pool, pic->url, pic->h.url_len);
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, loc.base, loc.len);
            http_reply_error(req, 307, "the picture could not be %s; redirecting to its source",
                             pic->h.reason == PENDING_BAD_IMAGE ? "decoded" : "downloaded");
            return;
        }
        http_reply_error(req, 404, "the picture could not be %s",
                         pic->h.reason == PENDING_BAD_IMAGE ? "decoded" : "downloaded");
        return;
    case PENDING_NO_PICTURE:
        http_reply_error(req, 404, banner ? "the profile has no banner" : "the profile has no picture");
        return;
    case PENDING_BAD_URL: http_reply_error(req, 404, "the profile's picture URL is not http, https or data"); return;
    case PENDING_URL_TOO_LONG:
        http_reply_error(req, 404, "the profile's picture URL is longer than %d bytes", PROFILE_MAX_URL);
        return;
    case PENDING_DATA_TOO_BIG:
        http_reply_error(req, 404, "the profile's data: picture is larger than max_source_bytes");
        return;
    default: http_reply_error(req, 404, "no profile (kind 0) found for this pubkey"); return;
    }
}

static void reply_unavailable(h2o_req_t *req)
{
    http_reply_error(req, 503, "the relay is shutting down");
}

/* --- fallbacks ---------------------------------------------------------------------------------------------------- */

/*
 * Answers a pubkey without a usable picture (`neg` says why): the JSON 404 of today, or the seed's redirect, when
 * `v` asks for 404; otherwise a generated picture.
 */
static void send_fallback(struct pfp *p, h2o_req_t *req, const uint8_t pubkey[32], const struct variant *v,
                          const struct pic *neg)
{
    if (v->fallback == VARIANT_FALLBACK_404)
        send_negative(req, neg, v->width_only);
    else
        fallback_send(p->fallback, req, pubkey, v);
}

/* --- requests waiting for a search ------------------------------------------------------------------------------ */

/* A request waiting for its picture; answered when the search ends, unless the client has gone by then. */
struct request_wait {
    struct pending_wait wait;
    struct pfp *p;
    struct http_hold *hold;
    uint8_t pubkey[32];
    struct variant v;
};

static void serve_cached(struct pfp *p, h2o_req_t *req, const uint8_t pubkey[32], const struct variant *v,
                         const struct pic *pic, const char *x_cache);

static void on_request_answered(struct pending_wait *w, const struct pending_result *r)
{
    struct request_wait *rw = H2O_STRUCT_FROM_MEMBER(struct request_wait, wait, w);
    h2o_req_t *req = http_held(rw->hold);

    if (req == NULL)
        ;
    else if (r->abandoned)
        reply_unavailable(req);
    else if (r->pic->h.state != PIC_OK)
        send_fallback(rw->p, req, rw->pubkey, &rw->v, r->pic);
    else
        serve_cached(rw->p, req, rw->pubkey, &rw->v, r->pic, "MISS");
    http_unhold(rw->hold);
    free(rw);
}

/* Makes `hold` wait for the picture of `pubkey`. Returns 0, or -ECANCELED when shutting down (the hold stays the
 * caller's). */
static int wait_for_picture(struct pfp *p, const uint8_t pubkey[32], const struct variant *v, const struct pic *old,
                            struct http_hold *hold)
{
    struct request_wait *rw = malloc(sizeof(*rw));
    int r;

    if (rw == NULL)
        abort();
    rw->wait.cb = on_request_answered;
    rw->p = p;
    rw->hold = hold;
    memcpy(rw->pubkey, pubkey, 32);
    rw->v = *v;
    if ((r = pending_start(p->pending, pubkey, slot_of(v), false, false, old, &rw->wait)) != 0)
        free(rw);
    return r;
}

/* --- the hit path ---------------------------------------------------------------------------------------------- */

/*
 * What answers `v` for `pic`. A picture stored as downloaded (resize_images off) or before masters is served as it
 * is unless the request names a size or format; everything else is a variant of the master. An animation is kept
 * only for a request that asks for it; a picture that does not move gets the format it would have without asking.
 */
static void choose(const struct pfp *p, const struct pic *pic, const struct variant *v, struct answer *a)
{
    bool moves = (pic->h.flags & PIC_ANIMATED) != 0 && v->animated;
    enum variant_format f = v->animated && !moves ? v->still_format : v->format;

    memset(a, 0, sizeof(*a));
    memcpy(a->master, pic->h.blob, 32);
    a->master_bytes = pic->h.bytes;
    a->fetched_at = pic->h.fetched_at;
    a->size = p->o.image.max_size;
    if (!(pic->h.flags & PIC_MASTER) && !v->sized && v->negotiated) {
        memcpy(a->file, pic->h.blob, 32);
        a->bytes = pic->h.bytes;
        a->type = (enum image_type)pic->h.type;
        return;
    }
    a->variant = true;
    a->size = v->size;
    a->vary = v->negotiated;
    a->type = (enum image_type)variant_image_type(f);
    a->spec = (struct image_variant_spec){.size = v->size,
                                          .width_only = v->width_only,
                                          .type = a->type,
                                          .animated = moves,
                                          .quality = p->o.image.quality,
                                          .timeout_ms = p->o.image.timeout_ms};
    pictures_variant_key(&a->key, v->size, a->type, moves, v->width_only, pic->h.width, pic->h.height);
}

/* What a request that went off the loop needs should the picture's file have gone. */
struct answer_ctx {
    struct pfp *p;
    uint8_t pubkey[32];
    struct variant v;
};

/* The picture's file has gone or is damaged: the request becomes a miss, as if it had come a moment later. */
static void on_answered(void *ctx, struct http_hold *hold, int status)
{
    struct answer_ctx *c = ctx;
    h2o_req_t *req;

    if (status == 0)
        return;
    if ((req = http_held(hold)) != NULL && !c->p->closing && wait_for_picture(c->p, c->pubkey, &c->v, NULL, hold) == 0)
        return;
    if (req != NULL)
        reply_unavailable(req);
    http_unhold(hold);
}

/* Serves `pic` from memory, from its file, or as a variant made now; the picture is fetched again if the file
 * has gone. */
static void serve_cached(struct pfp *p, h2o_req_t *req, const uint8_t pubkey[32], const struct variant *v,
                         const struct pic *pic, const char *x_cache)
{
    struct answer a;
    struct answer_ctx c = {.p = p, .v = *v};

    choose(p, pic, v, &a);
    memcpy(c.pubkey, pubkey, 32);
    answer_send(p->answers, req, &a, &p->counts, x_cache, on_answered, &c, sizeof(c));
}

/* A banner's stale record is refreshed in the background; nobody waits for it. */
static void on_banner_refreshed(struct pending_wait *w, const struct pending_result *r)
{
    (void)r;
    free(w);
}

static void refresh_banner(struct pfp *p, const uint8_t pubkey[32], const struct pic *old)
{
    struct pending_wait *w = malloc(sizeof(*w));
    uint8_t key[32];

    if (w == NULL)
        abort();
    w->cb = on_banner_refreshed;
    pictures_record_key(pubkey, PICTURES_BANNER, key);
    if (pending_active(p->pending, key) || pending_start(p->pending, pubkey, PICTURES_BANNER, true, true, old, w) != 0)
        free(w);
    else
        p->stats.refreshes++;
}

/* What a request asked for, should its key's owner not answer it. */
struct asked {
    struct pfp *p;
    struct variant v;
    uint8_t pubkey[32];
};

static void serve_here(struct pfp *p, h2o_req_t *req, const uint8_t pubkey[32], const struct variant *v,
                       struct pic *pic, bool have);

static void serve_asked(const void *ctx, h2o_req_t *req)
{
    const struct asked *a = ctx;
    struct pic pic;
    bool have = record_get(a->p, a->pubkey, &a->v, &pic) == 0;

    serve_here(a->p, req, a->pubkey, &a->v, &pic, have);
}

/* Answers `req` with the picture of `pubkey` that `v` asks for: from the cache, its owner, or found and fetched. */
static void serve_pubkey(struct pfp *p, h2o_req_t *req, const uint8_t pubkey[32], const struct variant *v)
{
    struct pic pic;
    struct asked a = {.p = p, .v = *v};
    bool have;
    char *hex;

    if (cluster_route(p->sv.cluster, req, pubkey))
        return;
    /* A CDN in front purges every answer tagged with the pubkey when its picture changes. */
    hex = h2o_mem_alloc_pool(&req->pool, 64);
    hex_encode(pubkey, 32, hex);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("surrogate-key"), 0, NULL, hex, 64);
    have = record_get(p, pubkey, v, &pic) == 0;
    /* Another node's key is answered here only when the picture is here: it is downloaded once, by its owner. */
    memcpy(a.pubkey, pubkey, 32);
    if (!(have && pic.h.state == PIC_OK) && cluster_forward(p->sv.cluster, req, pubkey, serve_asked, &a, sizeof(a)))
        return;
    serve_here(p, req, pubkey, v, &pic, have);
}

static void serve_here(struct pfp *p, h2o_req_t *req, const uint8_t pubkey[32], const struct variant *v,
                       struct pic *pic, bool have)
{
    uint64_t now = (uint64_t)clock_now_s();
    struct http_hold *hold;

    if (have && pic->h.state == PIC_OK) {
        bool stale = pic->h.fetched_at + p->o.max_age <= now;
        if (stale) {
            p->stats.stale++;
            if (p->closing)
                ;
            else if (v->width_only)
                refresh_banner(p, pubkey, pic);
            else if (!pending_active(p->pending, pubkey) && prefetch_add(p->prefetch, pubkey, true, 0))
                p->stats.refreshes++;
        } else {
            p->stats.hits++;
        }
        serve_cached(p, req, pubkey, v, pic, stale ? "STALE" : "HIT");
        return;
    }
    if (have && now < pic->h.retry_at) {
        p->stats.negative_hits++;
        send_fallback(p, req, pubkey, v, pic);
        return;
    }
    if (p->closing) {
        reply_unavailable(req);
        return;
    }
    p->stats.misses++;
    /* A stale failure record tells the new attempt how many came before it. */
    hold = http_hold(req);
    if (wait_for_picture(p, pubkey, v, have ? pic : NULL, hold) != 0) {
        reply_unavailable(req);
        http_unhold(hold);
    }
}

/* A request named by a NIP-05 name goes on with what it asked. */
struct named {
    struct pfp *p;
    struct variant v;
};

static void serve_named(const void *ctx, h2o_req_t *req, const uint8_t pubkey[32])
{
    const struct named *nm = ctx;

    serve_pubkey(nm->p, req, pubkey, &nm->v);
}

/* GET and HEAD /profile-pic/{id} and /profile-banner/{id}: `vo` says which. */
static void on_picture_request(struct pfp *p, const struct variant_options *vo, h2o_req_t *req, h2o_iovec_t param)
{
    uint8_t pubkey[32];
    char why[NIP19_ERR_LEN], verr[128];
    struct variant v;
    h2o_iovec_t query = h2o_iovec_init("", 0), accept = h2o_iovec_init("", 0);
    ssize_t ai;
    struct nip05_id name;
    struct nip19_relays hints;
    bool is_key;

    /* Every answer here, whenever it is sent: the bytes come from anyone's server, so a browser must not take
     * them for anything but the picture type they are served as, nor let them run or load anything. */
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0, NULL,
                          H2O_STRLIT("nosniff"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("content-security-policy"), 0, NULL,
                          H2O_STRLIT("default-src 'none'"));
    is_key = nip19_decode_profile(param.base, param.len, pubkey, &hints, why, sizeof(why)) == 0;
    if (!is_key && (p->sv.names == NULL || nip05_parse_id(param.base, param.len, &name) != 0)) {
        /* Not echoed: what was pasted might be a secret key. */
        http_reply_error(req, 400, "not a public key or a NIP-05 name: %s", why);
        return;
    }
    if (req->query_at != SIZE_MAX)
        query = h2o_iovec_init(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1);
    if ((ai = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT, -1)) != -1)
        accept = req->headers.entries[ai].value;
    if (variant_parse(vo, query, accept, &v, verr, sizeof(verr)) != 0) {
        http_reply_error(req, 400, "%s", verr);
        return;
    }
    if (v.width_only && v.fallback == VARIANT_FALLBACK_IDENTICON) {
        http_reply_error(req, 400, "default: a banner takes 404 or blank");
        return;
    }
    /* default_avatar is for avatars: a pubkey without a banner gets 404 unless the request asks otherwise. */
    if (v.fallback == VARIANT_FALLBACK_CONFIGURED)
        v.fallback = v.width_only ? VARIANT_FALLBACK_404 : p->o.default_avatar;
    /* An nprofile's relays are where the lookup asks too, should the upstream relays not have the profile. */
    for (size_t i = 0; is_key && i < hints.n; i++)
        lookup_hint(p->sv.lookup, pubkey, hints.urls[i]);
    if (is_key)
        serve_pubkey(p, req, pubkey, &v);
    else
        names_serve(p->sv.names, req, &name, serve_named, &(struct named){p, v}, sizeof(struct named));
}

static void on_profile_pic(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    struct pfp *p = data;

    on_picture_request(p, &p->variants, req, param);
}

static void on_profile_banner(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    struct pfp *p = data;

    on_picture_request(p, &p->banner_variants, req, param);
}

/* --- work ahead of requests ------------------------------------------------------------------------------------ */

/* A picture fetched ahead; its end lets the queue start another. */
struct ahead {
    struct pending_wait wait;
    struct pfp *p;
};

static void on_ahead_done(struct pending_wait *w, const struct pending_result *r)
{
    struct ahead *a = H2O_STRUCT_FROM_MEMBER(struct ahead, wait, w);

    (void)r;
    prefetch_done(a->p->prefetch);
    free(a);
}

static bool start_ahead(void *ctx, const uint8_t pubkey[32], bool refresh, int64_t kind0_at)
{
    struct pfp *p = ctx;
    struct pic pic;
    bool have = pictures_get(p->sv.pictures, pubkey, &pic) == 0;
    struct ahead *a;

    /* In a cluster, the key's owner alone fetches it ahead; the others leave the picture to it. */
    if (p->sv.cluster != NULL && cluster_owner(p->sv.cluster, pubkey) != cluster_self(p->sv.cluster))
        return false;
    /* The lookup that brought the profile may have cached its picture already. */
    if (!refresh && have && pic.h.kind0_at >= kind0_at)
        return false;
    if ((a = malloc(sizeof(*a))) == NULL)
        abort();
    a->wait.cb = on_ahead_done;
    a->p = p;
    if (pending_start(p->pending, pubkey, PICTURES_AVATAR, true, refresh, have ? &pic : NULL, &a->wait) != 0) {
        free(a);
        return false;
    }
    return true;
}

/* A kind 0 stored from any source: its picture is fetched ahead, as the seed program did. */
static void on_event_stored(void *data, const struct event_view *ev, uint64_t commit)
{
    (void)commit;
    struct pfp *p = data;
    struct pic pic;
    uint8_t key[32];
    bool have;

    if (ev->kind != 0 || p->closing)
        return;
    /* A banner is fetched when asked for; a failure remembered for an older profile says nothing about this one. */
    pictures_record_key(ev->pubkey, PICTURES_BANNER, key);
    if (pictures_get(p->sv.pictures, key, &pic) == 0 && pic.h.state == PIC_NEGATIVE && pic.h.kind0_at < ev->created_at)
        pictures_put(p->sv.pictures, key, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL);
    have = pictures_get(p->sv.pictures, ev->pubkey, &pic) == 0;
    if (have && pic.h.kind0_at >= ev->created_at)
        return;
    if (!p->o.precache_on_metadata) {
        /* A failure remembered for an older profile says nothing about this one. */
        if (have && pic.h.state == PIC_NEGATIVE)
            pictures_put(p->sv.pictures, ev->pubkey, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL);
        return;
    }
    if (prefetch_add(p->prefetch, ev->pubkey, false, ev->created_at))
        p->stats.prefetches++;
}

/* --- jobs ------------------------------------------------------------------------------------------------------- */

static enum pfp_outcome outcome_of_record(const struct pic *pic)
{
    if (pic->h.state == PIC_OK)
        return PFP_ALREADY_CACHED;
    return pic->h.reason == PENDING_DOWNLOAD_FAILED || pic->h.reason == PENDING_BAD_IMAGE ? PFP_FAILED : PFP_NOT_FOUND;
}

static void on_watch_done(struct pending_wait *pw, const struct pending_result *r)
{
    struct pfp_watch *w = H2O_STRUCT_FROM_MEMBER(struct pfp_watch, _wait, pw);
    enum pfp_outcome outcome;

    if (r->abandoned)
        outcome = PFP_ABANDONED;
    else if (r->pic->h.state == PIC_OK)
        outcome = r->status != 0 ? PFP_FAILED : r->confirmed ? PFP_ALREADY_CACHED : PFP_CACHED;
    else
        outcome = outcome_of_record(r->pic);
    w->cb(w, outcome);
}

void pfp_precache(struct pfp *p, const uint8_t pubkey[32], enum pictures_slot slot, struct pfp_watch *w)
{
    struct pic pic;
    uint8_t key[32];
    bool have;

    pictures_record_key(pubkey, slot, key);
    have = pictures_get(p->sv.pictures, key, &pic) == 0;
    uint64_t now = (uint64_t)clock_now_s();

    if (p->closing) {
        w->cb(w, PFP_ABANDONED);
        return;
    }
    /* A fresh picture, or a failure not yet due for another try, is the answer already. */
    if (have && (pic.h.state == PIC_OK ? pic.h.fetched_at + p->o.max_age > now : now < pic.h.retry_at)) {
        w->cb(w, outcome_of_record(&pic));
        return;
    }
    w->_wait.cb = on_watch_done;
    if (pending_start(p->pending, pubkey, slot, true, have && pic.h.state == PIC_OK, have ? &pic : NULL, &w->_wait) !=
        0)
        w->cb(w, PFP_ABANDONED);
}

/* --- life cycle ------------------------------------------------------------------------------------------------- */

/* A picture replaced: what a CDN in front holds of the pubkey goes. */
static void on_picture_changed(void *ctx, const uint8_t pubkey[32], enum pictures_slot slot)
{
    struct pfp *p = ctx;

    (void)slot;
    cdn_purge(p->sv.cdn, pubkey);
}

int pfp_init(struct pfp **out, uv_loop_t *loop, const struct pfp_options *o, const struct pfp_services *sv, char *err,
             size_t errlen)
{
    struct pfp *p = calloc(1, sizeof(*p));
    struct downloads_options dopt;
    struct pending_options popt;
    struct prefetch_options qopt;
    int r, n;

    if (p == NULL)
        abort();
    *out = p;
    p->loop = loop;
    p->sv = *sv;
    p->o = *o;
    if (p->o.max_age == 0)
        p->o.max_age = 1;
    if (p->o.max_concurrent == 0)
        p->o.max_concurrent = 1;
    if ((r = image_init()) != 0) {
        snprintf(err, errlen, "cannot start libvips");
        return r;
    }
    if ((r = workpool_init(&p->images, o->image_threads, sv->inbox)) != 0) {
        snprintf(err, errlen, "cannot start the image threads: %s", strerror(-r));
        return r;
    }
    p->images_started = true;
    if ((r = workpool_init(&p->readers, o->read_threads > 0 ? o->read_threads : 1, sv->inbox)) != 0) {
        snprintf(err, errlen, "cannot start the picture read threads: %s", strerror(-r));
        return r;
    }
    p->readers_started = true;
    dopt = (struct downloads_options){
        .max_concurrent = p->o.max_concurrent, .max_per_host = o->max_per_host, .image = o->image};
    dopt.image.max_size = o->master_max_size > 0 ? o->master_max_size : 1024;
    /* The answers to the seed's URL, made with the master so that they are hits at once: JPEG (curl, and clients
     * that accept nothing newer) and the first format negotiated. */
    dopt.first[dopt.nfirst++] = (struct image_variant_spec){
        .size = o->image.max_size, .type = IMAGE_JPEG, .quality = o->image.quality, .timeout_ms = o->image.timeout_ms};
    if (o->nnegotiate > 0 && o->negotiate[0] != VARIANT_JPEG) {
        dopt.first[dopt.nfirst] = dopt.first[0];
        dopt.first[dopt.nfirst++].type = (enum image_type)variant_image_type(o->negotiate[0]);
    }
    downloads_init(&p->downloads, sv->fetcher, &p->images, sv->cache, &dopt);
    popt = (struct pending_options){.max_age = p->o.max_age,
                                    .max_data_bytes = o->max_data_bytes,
                                    .banner_master_size = VARIANT_BANNER_MAX,
                                    .changed = on_picture_changed,
                                    .changed_ctx = p};
    pending_init(&p->pending, sv->store, sv->pictures, sv->lookup, p->downloads, &popt);
    qopt = (struct prefetch_options){.max_queued = PREFETCH_QUEUE_MAX, .max_running = p->o.max_concurrent};
    prefetch_init(&p->prefetch, loop, &qopt, start_ahead, p);
    /* A CDN in front may serve a stale picture while it asks again, or while this node cannot answer. */
    n = snprintf(p->cache_control, sizeof(p->cache_control), "public, max-age=%llu", (unsigned long long)p->o.max_age);
    if (p->o.stale_while_revalidate > 0)
        n += snprintf(p->cache_control + n, sizeof(p->cache_control) - (size_t)n, ", stale-while-revalidate=%llu",
                      (unsigned long long)p->o.stale_while_revalidate);
    if (p->o.stale_if_error > 0)
        snprintf(p->cache_control + n, sizeof(p->cache_control) - (size_t)n, ", stale-if-error=%llu",
                 (unsigned long long)p->o.stale_if_error);
    p->variants = (struct variant_options){.ladder = &VARIANT_AVATAR_LADDER,
                                           .default_size = o->image.max_size,
                                           .max_size = o->master_max_size > 0 ? o->master_max_size : 1024,
                                           .negotiate = o->negotiate,
                                           .nnegotiate = o->nnegotiate};
    p->banner_variants = p->variants;
    p->banner_variants.ladder = &VARIANT_BANNER_LADDER;
    p->banner_variants.default_size = o->max_banner_size > 0 ? o->max_banner_size : 1000;
    p->banner_variants.max_size = VARIANT_BANNER_MAX;
    p->banner_variants.width_only = true;
    p->fallback = fallback_new(&(struct fallback_options){&p->images, o->image.quality, GENERATED_CACHE_BYTES});
    p->answers = answers_new(&(struct answers_options){.pictures = sv->pictures,
                                                       .blobs = sv->blobs,
                                                       .cache = sv->cache,
                                                       .images = &p->images,
                                                       .readers = &p->readers,
                                                       .cache_control = p->cache_control});
    if (p->o.default_avatar == VARIANT_FALLBACK_CONFIGURED)
        p->o.default_avatar = VARIANT_FALLBACK_404;
    store_add_listener(sv->store, on_event_stored, p);
    return 0;
}

int pfp_route(struct pfp *p, struct http_server *http)
{
    int r = http_route(http, HTTP_GET, "/profile-pic/*", on_profile_pic, p);

    return r != 0 ? r : http_route(http, HTTP_GET, "/profile-banner/*", on_profile_banner, p);
}

void pfp_shutdown(struct pfp *p)
{
    if (p->closing)
        return;
    p->closing = true;
    if (p->fallback != NULL)
        fallback_shutdown(p->fallback);
    if (p->prefetch != NULL)
        prefetch_shutdown(p->prefetch);
    /* Searches first, so that the downloads ended now leave nothing remembered and their waiters hear 503. */
    if (p->pending != NULL)
        pending_shutdown(p->pending);
    if (p->downloads != NULL)
        downloads_shutdown(p->downloads);
    if (p->answers != NULL)
        answers_shutdown(p->answers);
    if (p->images_started)
        workpool_shutdown(&p->images);
    if (p->readers_started)
        workpool_shutdown(&p->readers);
}

void pfp_free(struct pfp *p)
{
    if (p == NULL)
        return;
    prefetch_free(p->prefetch);
    pending_free(p->pending);
    downloads_free(p->downloads);
    workpool_free(&p->images);
    workpool_free(&p->readers);
    fallback_free(p->fallback);
    answers_free(p->answers);
    free(p);
}

struct workpool *pfp_image_threads(struct pfp *p)
{
    return &p->images;
}

struct downloads *pfp_downloads(const struct pfp *p)
{
    return p->downloads;
}

struct answers *pfp_answers(const struct pfp *p)
{
    return p->answers;
}

void pfp_stats(const struct pfp *p, struct pfp_stats *out)
{
    struct downloads_stats ds;
    struct pending_stats ps;
    struct prefetch_stats qs;
    struct fallback_stats fs;

    *out = p->stats;
    downloads_stats(p->downloads, &ds);
    pending_stats(p->pending, &ps);
    prefetch_stats(p->prefetch, &qs);
    out->downloads = ds.started;
    memcpy(out->download_failures, ds.failures, sizeof(out->download_failures));
    out->bad_images = ds.bad_images;
    out->processed = ds.processed;
    out->process_ns = ds.process_ns;
    fallback_stats(p->fallback, &fs);
    out->identicons = fs.identicons;
    out->blanks = fs.blanks;
    out->drawn = fs.drawn;
    out->not_modified += p->counts.not_modified + fs.not_modified;
    out->bytes_served += p->counts.bytes_served + fs.bytes_served;
    out->damaged_files += p->counts.damaged_files;
    out->variants_made = p->counts.variants_made;
    out->variant_failures = p->counts.variant_failures;
    memcpy(out->served_format, p->counts.served_format, sizeof(out->served_format));
    memcpy(out->served_size, p->counts.served_size, sizeof(out->served_size));
    out->processing = ds.processing;
    out->url_reuses = ps.url_reuses;
    out->refetched = ps.refetched;
    out->prefetch_dropped = qs.dropped;
    for (size_t i = 0; i <= VARIANT_GIF; i++)
        out->making[i] = answers_making(p->answers, (enum variant_format)i);
}
