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

/* Upper bounds of the histograms of the time to make a variant, in seconds. */
static const double MAKING_BOUNDS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

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
    char cache_control[64];
    struct variant_options variants, banner_variants;
    struct fallback *fallback;                        /* generated pictures */
    struct keymap *making;                            /* variants being made: master, variant key -> struct making */
    struct histogram making_seconds[VARIANT_GIF + 1]; /* by format */
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

static void release_blob(void *ptr)
{
    blob_release(*(struct blob_ref **)ptr);
}

/*
 * What a request is answered with: one variant of the picture, or the
 * picture's own file (kept as downloaded, or stored before masters).
 */
struct answer {
    uint8_t master[32]; /* the picture's file: its last use is this answer's */
    uint64_t fetched_at;
    bool variant;
    uint8_t key[PICTURES_VARIANT_KEY];
    struct image_variant_spec spec;
    uint8_t file[32]; /* what is sent, once known */
    uint32_t bytes;
    enum image_type type;
    bool vary; /* the format came from Accept */
};

/* Answers by size class: up to 64, 128, 256 and 512 pixels, and larger. */
static size_t size_class(int size)
{
    return size <= 64 ? 0 : size <= 128 ? 1 : size <= 256 ? 2 : size <= 512 ? 3 : 4;
}

static size_t format_index(enum image_type t)
{
    switch (t) {
    case IMAGE_WEBP: return VARIANT_WEBP;
    case IMAGE_AVIF: return VARIANT_AVIF;
    case IMAGE_PNG: return VARIANT_PNG;
    case IMAGE_GIF: return VARIANT_GIF;
    default: return VARIANT_JPEG;
    }
}

/* Sends the picture (or 304 Not Modified), with the cache headers; the response keeps a reference to the bytes. */
static void send_picture(struct pfp *p, h2o_req_t *req, const struct answer *a, struct blob_ref *blob,
                         const char *x_cache)
{
    static h2o_generator_t generator = {NULL, NULL};
    struct blob_ref **slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), release_blob);
    char *date = h2o_mem_alloc_pool(&req->pool, H2O_TIMESTR_RFC1123_LEN + 1);
    bool not_modified = http_if_none_match(req, h2o_iovec_init(blob->etag, 66)), head;
    h2o_iovec_t body = h2o_iovec_init(blob->data, blob->len);
    time_t fetched = (time_t)a->fetched_at;
    struct tm tm;

    *slot = blob;
    blob_retain(blob);
    pictures_touch(p->sv.pictures, a->master);
    p->stats.served_format[format_index(a->type)]++;
    p->stats.served_size[size_class(a->variant ? a->spec.size : p->o.image.max_size)]++;
    gmtime_r(&fetched, &tm);
    h2o_time2str_rfc1123(date, &tm);
    http_begin_response(req, not_modified ? 304 : 200);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL, blob->etag, 66);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, p->cache_control,
                   strlen(p->cache_control));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LAST_MODIFIED, NULL, date, H2O_TIMESTR_RFC1123_LEN);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-cache"), 0, NULL, x_cache, strlen(x_cache));
    if (a->vary)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Accept"));
    if (not_modified) {
        p->stats.not_modified++;
        h2o_start_response(req, &generator);
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return;
    }
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, image_mime(a->type),
                   strlen(image_mime(a->type)));
    req->res.content_length = blob->len;
    head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    if (!head)
        p->stats.bytes_served += blob->len;
    h2o_start_response(req, &generator);
    h2o_send(req, head ? NULL : &body, head ? 0 : 1, H2O_SEND_STATE_FINAL);
}

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
    a->fetched_at = pic->h.fetched_at;
    if (!(pic->h.flags & PIC_MASTER) && !v->sized && v->negotiated) {
        memcpy(a->file, pic->h.blob, 32);
        a->bytes = pic->h.bytes;
        a->type = (enum image_type)pic->h.type;
        return;
    }
    a->variant = true;
    a->vary = v->negotiated;
    a->type = (enum image_type)variant_image_type(f);
    a->spec = (struct image_variant_spec){.size = v->size,
                                          .width_only = v->width_only,
                                          .type = a->type,
                                          .animated = moves,
                                          .quality = p->o.image.quality,
                                          .timeout_ms = p->o.image.timeout_ms};
    pictures_variant_key(a->key, v->size, a->type, moves, v->width_only, pic->h.width, pic->h.height);
}

/* A request served from a file read or a variant being made; it becomes a miss if the picture's file has gone. */
struct answer_wait {
    h2o_linklist_t link;
    struct http_hold *hold;
    uint8_t pubkey[32];
    struct variant v;
    const char *x_cache;
};

static struct answer_wait *answer_wait_new(h2o_req_t *req, const uint8_t pubkey[32], const struct variant *v,
                                           const char *x_cache)
{
    struct answer_wait *aw = calloc(1, sizeof(*aw));

    if (aw == NULL)
        abort();
    aw->hold = http_hold(req);
    memcpy(aw->pubkey, pubkey, 32);
    aw->v = *v;
    aw->x_cache = x_cache;
    return aw;
}

/* The picture's file has gone or is damaged: its entries go too (and the file), and the request becomes a miss. */
static void answer_refetch(struct pfp *p, const uint8_t master[32], int err, struct answer_wait *aw)
{
    h2o_req_t *req = http_held(aw->hold);

    if (err == -EBADMSG)
        p->stats.damaged_files++;
    if (err == -EBADMSG)
        log_warn("pictures: the file of a cached picture is damaged (its size or SHA-256 is not its record's); "
                 "removing it and fetching the picture again");
    else
        log_warn("pictures: the file of a cached picture is missing (%s); fetching it again", strerror(-err));
    pictures_forget_file(p->sv.pictures, master);
    if (req == NULL)
        ;
    else if (!p->closing && wait_for_picture(p, aw->pubkey, &aw->v, NULL, aw->hold) == 0)
        aw->hold = NULL;
    else
        reply_unavailable(req);
}

static void answer_wait_free(struct answer_wait *aw)
{
    if (aw->hold != NULL)
        http_unhold(aw->hold);
    free(aw);
}

/* A file read on the read threads, for an answer not in the memory cache. */
struct file_read {
    struct work work;
    struct pfp *p;
    struct answer a;
    struct answer_wait *aw;
    uint8_t *data;
    size_t len;
    int err;
};

static void make_variant(struct pfp *p, h2o_req_t *req, const uint8_t pubkey[32], const struct variant *v,
                         const struct pic *pic, const struct answer *a, const char *x_cache);

static void file_read_run(struct work *w)
{
    struct file_read *fr = H2O_STRUCT_FROM_MEMBER(struct file_read, work, w);

    fr->err = blob_read(fr->p->sv.blobs, fr->a.file, fr->a.bytes, &fr->data, &fr->len);
}

static void file_read_done(struct work *w)
{
    struct file_read *fr = H2O_STRUCT_FROM_MEMBER(struct file_read, work, w);
    struct pfp *p = fr->p;
    h2o_req_t *req = http_held(fr->aw->hold);

    if (fr->err == 0) {
        struct blob_ref *blob = blobcache_put(p->sv.cache, fr->a.file, fr->data, fr->len);
        if (req != NULL)
            send_picture(p, req, &fr->a, blob, fr->aw->x_cache);
        blob_release(blob);
        free(fr->data);
    } else if (fr->a.variant) {
        /* Only the variant is lost: it is dropped, and made again from the master (not looked up again: the
         * index still names it until the drop has committed). */
        struct pic pic;
        if (fr->err == -EBADMSG)
            p->stats.damaged_files++;
        pictures_forget_variant(p->sv.pictures, fr->a.master, fr->a.key);
        if (req == NULL)
            ;
        else if (record_get(p, fr->aw->pubkey, &fr->aw->v, &pic) == 0 && pic.h.state == PIC_OK &&
                 memcmp(pic.h.blob, fr->a.master, 32) == 0 && !p->closing)
            make_variant(p, req, fr->aw->pubkey, &fr->aw->v, &pic, &fr->a, fr->aw->x_cache);
        /* Purged (or replaced) meanwhile: the request becomes a miss, as if it had come a moment later. */
        else if (!p->closing && wait_for_picture(p, fr->aw->pubkey, &fr->aw->v, NULL, fr->aw->hold) == 0)
            fr->aw->hold = NULL;
        else
            reply_unavailable(req);
    } else {
        answer_refetch(p, fr->a.master, fr->err, fr->aw);
    }
    answer_wait_free(fr->aw);
    free(fr);
}

static void read_file(struct pfp *p, h2o_req_t *req, const uint8_t pubkey[32], const struct variant *v,
                      const struct answer *a, const char *x_cache)
{
    struct file_read *fr = calloc(1, sizeof(*fr));

    if (fr == NULL)
        abort();
    fr->p = p;
    fr->a = *a;
    fr->aw = answer_wait_new(req, pubkey, v, x_cache);
    fr->work.run = file_read_run;
    fr->work.done = file_read_done;
    workpool_submit(&p->readers, &fr->work);
}

/*
 * A variant being made from its master on the image threads, once for every
 * request that wants it meanwhile; it is stored for the next ones, and until
 * that has committed, they are answered from `made`.
 */
struct making {
    struct work work;
    struct pfp *p;
    uint8_t id[32 + PICTURES_VARIANT_KEY]; /* master, key */
    struct answer a;
    uint32_t master_bytes;
    struct blob_ref *master; /* when it was in memory; else read from its file */
    h2o_linklist_t waits;    /* struct answer_wait */
    struct blob_ref *made;   /* made, and being stored */
    struct image_out out;
    uint8_t hash[32];
    int read_err, err;
    uint64_t ns;
};

static void making_run(struct work *w)
{
    struct making *m = H2O_STRUCT_FROM_MEMBER(struct making, work, w);
    uint8_t *data = NULL;
    size_t len = 0;
    uint64_t t0 = clock_mono_ns();

    if (m->master != NULL) {
        m->err = image_variant(m->master->data, m->master->len, &m->a.spec, &m->out);
    } else if ((m->read_err = blob_read(m->p->sv.blobs, m->a.master, m->master_bytes, &data, &len)) == 0) {
        m->err = image_variant(data, len, &m->a.spec, &m->out);
        free(data);
    }
    if (m->read_err == 0 && m->err == 0)
        blob_hash(m->out.data, m->out.len, m->hash);
    m->ns = clock_mono_ns() - t0;
}

static void making_free(struct making *m)
{
    keymap_del(m->p->making, m->id);
    if (m->made != NULL)
        blob_release(m->made);
    if (m->master != NULL)
        blob_release(m->master);
    image_out_free(&m->out);
    free(m);
}

/* The variant's record is committed (or could not be): the index answers for it from now on. */
static void on_variant_stored(void *ctx, int status)
{
    (void)status;
    making_free(ctx);
}

static void making_done(struct work *w)
{
    struct making *m = H2O_STRUCT_FROM_MEMBER(struct making, work, w);
    struct pfp *p = m->p;
    struct blob_ref *blob = NULL;

    if (m->read_err == 0 && m->err == 0) {
        struct pictures_variant pv = {.rec = {.bytes = (uint32_t)m->out.len,
                                              .width = (uint16_t)m->out.width,
                                              .height = (uint16_t)m->out.height,
                                              .type = (uint8_t)m->out.type,
                                              .frames = (uint8_t)(m->out.frames > 255 ? 255 : m->out.frames)}};
        blob = blobcache_put(p->sv.cache, m->hash, m->out.data, m->out.len);
        memcpy(pv.key, m->a.key, sizeof(pv.key));
        memcpy(pv.rec.blob, m->hash, 32);
        pv.bytes = blob;
        m->made = blob;
        blob_retain(blob);
        pictures_put_variant(p->sv.pictures, m->a.master, &pv, on_variant_stored, m);
        memcpy(m->a.file, m->hash, 32);
        m->a.bytes = (uint32_t)m->out.len;
        p->stats.variants_made++;
        histogram_observe(&p->making_seconds[format_index(m->a.type)], (double)m->ns / 1e9);
    } else if (m->read_err == 0) {
        p->stats.variant_failures++;
        log_warn("pictures: cannot make a %s variant of %d px: %s", image_mime(m->a.type), m->a.spec.size,
                 m->out.error);
    }
    while (!h2o_linklist_is_empty(&m->waits)) {
        struct answer_wait *aw = H2O_STRUCT_FROM_MEMBER(struct answer_wait, link, m->waits.next);
        h2o_req_t *req = http_held(aw->hold);
        h2o_linklist_unlink(&aw->link);
        if (m->read_err != 0)
            answer_refetch(p, m->a.master, m->read_err, aw);
        else if (req == NULL)
            ;
        else if (blob != NULL)
            send_picture(p, req, &m->a, blob, "MISS");
        else
            http_reply_error(req, 500, "cannot make this variant of the picture: %s", m->out.error);
        answer_wait_free(aw);
    }
    if (blob != NULL)
        blob_release(blob);
    else
        making_free(m);
}

/* Makes the variant `a` of `pic`, or joins the request to its making under way. */
static void make_variant(struct pfp *p, h2o_req_t *req, const uint8_t pubkey[32], const struct variant *v,
                         const struct pic *pic, const struct answer *a, const char *x_cache)
{
    uint8_t id[32 + PICTURES_VARIANT_KEY];
    struct making *m;
    struct answer_wait *aw;

    memcpy(id, a->master, 32);
    memcpy(id + 32, a->key, PICTURES_VARIANT_KEY);
    if ((m = keymap_get(p->making, id)) != NULL && m->made != NULL) {
        send_picture(p, req, &m->a, m->made, "HIT");
        return;
    }
    aw = answer_wait_new(req, pubkey, v, x_cache);
    if (m != NULL) {
        h2o_linklist_insert(&m->waits, &aw->link);
        return;
    }
    if ((m = calloc(1, sizeof(*m))) == NULL)
        abort();
    m->p = p;
    memcpy(m->id, id, sizeof(id));
    m->a = *a;
    m->master_bytes = pic->h.bytes;
    m->master = blobcache_get(p->sv.cache, a->master);
    h2o_linklist_init_anchor(&m->waits);
    h2o_linklist_insert(&m->waits, &aw->link);
    keymap_put(p->making, id, m);
    m->work.run = making_run;
    m->work.done = making_done;
    /* Someone waits for it in a browser: ahead of pictures fetched in the background. */
    workpool_submit_urgent(&p->images, &m->work);
}

/* Serves `pic` from memory, or from its file; the picture of `pubkey` is fetched again if the file has gone. */
static void serve_cached(struct pfp *p, h2o_req_t *req, const uint8_t pubkey[32], const struct variant *v,
                         const struct pic *pic, const char *x_cache)
{
    struct answer a;
    struct blob_ref *blob;

    choose(p, pic, v, &a);
    if (a.variant) {
        struct variant_rec rec;
        if (pictures_get_variant(p->sv.pictures, a.master, a.key, &rec) != 0) {
            if (p->closing)
                reply_unavailable(req);
            else
                make_variant(p, req, pubkey, v, pic, &a, x_cache);
            return;
        }
        memcpy(a.file, rec.blob, 32);
        a.bytes = rec.bytes;
    }
    if ((blob = blobcache_get(p->sv.cache, a.file)) != NULL) {
        send_picture(p, req, &a, blob, x_cache);
        blob_release(blob);
        return;
    }
    read_file(p, req, pubkey, v, &a, x_cache);
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

/* Answers `req` with the picture of `pubkey` that `v` asks for: from the cache, or found and fetched. */
static void serve_pubkey(struct pfp *p, h2o_req_t *req, const uint8_t pubkey[32], const struct variant *v)
{
    struct pic pic;
    bool have;
    uint64_t now = (uint64_t)clock_now_s();
    struct http_hold *hold;

    have = record_get(p, pubkey, v, &pic) == 0;
    if (have && pic.h.state == PIC_OK) {
        bool stale = pic.h.fetched_at + p->o.max_age <= now;
        if (stale) {
            p->stats.stale++;
            if (p->closing)
                ;
            else if (v->width_only)
                refresh_banner(p, pubkey, &pic);
            else if (!pending_active(p->pending, pubkey) && prefetch_add(p->prefetch, pubkey, true, 0))
                p->stats.refreshes++;
        } else {
            p->stats.hits++;
        }
        serve_cached(p, req, pubkey, v, &pic, stale ? "STALE" : "HIT");
        return;
    }
    if (have && now < pic.h.retry_at) {
        p->stats.negative_hits++;
        send_fallback(p, req, pubkey, v, &pic);
        return;
    }
    if (p->closing) {
        reply_unavailable(req);
        return;
    }
    p->stats.misses++;
    /* A stale failure record tells the new attempt how many came before it. */
    hold = http_hold(req);
    if (wait_for_picture(p, pubkey, v, have ? &pic : NULL, hold) != 0) {
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

int pfp_init(struct pfp **out, uv_loop_t *loop, const struct pfp_options *o, const struct pfp_services *sv, char *err,
             size_t errlen)
{
    struct pfp *p = calloc(1, sizeof(*p));
    struct downloads_options dopt;
    struct pending_options popt;
    struct prefetch_options qopt;
    int r;

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
    popt = (struct pending_options){
        .max_age = p->o.max_age, .max_data_bytes = o->max_data_bytes, .banner_master_size = VARIANT_BANNER_MAX};
    pending_init(&p->pending, sv->store, sv->pictures, sv->lookup, p->downloads, &popt);
    qopt = (struct prefetch_options){.max_queued = PREFETCH_QUEUE_MAX, .max_running = p->o.max_concurrent};
    prefetch_init(&p->prefetch, loop, &qopt, start_ahead, p);
    snprintf(p->cache_control, sizeof(p->cache_control), "public, max-age=%llu", (unsigned long long)p->o.max_age);
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
    p->making = keymap_new(32 + PICTURES_VARIANT_KEY);
    for (size_t i = 0; i <= VARIANT_GIF; i++)
        histogram_init(&p->making_seconds[i], MAKING_BOUNDS, sizeof(MAKING_BOUNDS) / sizeof(MAKING_BOUNDS[0]));
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
    keymap_free(p->making, NULL);
    free(p);
}

struct workpool *pfp_image_threads(struct pfp *p)
{
    return &p->images;
}

const struct downloads *pfp_downloads(const struct pfp *p)
{
    return p->downloads;
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
    out->not_modified += fs.not_modified;
    out->bytes_served += fs.bytes_served;
    out->processing = ds.processing;
    out->url_reuses = ps.url_reuses;
    out->refetched = ps.refetched;
    out->prefetch_dropped = qs.dropped;
    for (size_t i = 0; i <= VARIANT_GIF; i++)
        out->making[i] = &p->making_seconds[i];
}
