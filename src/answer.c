/* answer.c -- picture answers from the cache: files from memory or read off the loop, variants made once. */
#include "answer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blob.h"
#include "blobcache.h"
#include "clock.h"
#include "http.h"
#include "keymap.h"
#include "log.h"
#include "metrics.h"
#include "workpool.h"

#define CTX_MAX 8192

/* Upper bounds of the histograms of the time to make a variant, in seconds. */
static const double MAKING_BOUNDS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

struct answers {
    struct answers_options o;
    struct keymap *making;                            /* variants being made: master, variant key -> struct making */
    struct histogram making_seconds[VARIANT_GIF + 1]; /* by format */
    bool closing;
};

/* A request answered once a file is read or a variant made. */
struct answer_wait {
    h2o_linklist_t link;
    struct http_hold *hold;
    struct answer_counts *counts;
    const char *x_cache;
    bool vary; /* its own: requests that share a variant may not all have had it negotiated */
    answer_done_fn done;
    size_t ctxlen;
    uint8_t ctx[];
};

static void release_blob(void *ptr)
{
    blob_release(*(struct blob_ref **)ptr);
}

static size_t size_class(int size)
{
    return size <= 64 ? 0 : size <= 128 ? 1 : size <= 256 ? 2 : size <= 512 ? 3 : 4;
}

enum variant_format answer_format(enum image_type t)
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
static void send_bytes(struct answers *as, h2o_req_t *req, const struct answer *a, bool vary, struct blob_ref *blob,
                       struct answer_counts *c, const char *x_cache)
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
    c->served_format[answer_format(a->type)]++;
    c->served_size[size_class(a->size)]++;
    gmtime_r(&fetched, &tm);
    h2o_time2str_rfc1123(date, &tm);
    http_begin_response(req, not_modified ? 304 : 200);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL, blob->etag, 66);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, as->o.cache_control,
                   strlen(as->o.cache_control));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LAST_MODIFIED, NULL, date, H2O_TIMESTR_RFC1123_LEN);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-cache"), 0, NULL, x_cache, strlen(x_cache));
    if (vary)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Accept"));
    if (not_modified) {
        c->not_modified++;
        h2o_start_response(req, &generator);
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return;
    }
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, image_mime(a->type),
                   strlen(image_mime(a->type)));
    req->res.content_length = blob->len;
    head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    if (!head)
        c->bytes_served += blob->len;
    h2o_start_response(req, &generator);
    h2o_send(req, head ? NULL : &body, head ? 0 : 1, H2O_SEND_STATE_FINAL);
}

/* As send_bytes(), a use of the master, for its place in the eviction order. */
static void send_picture(struct answers *as, h2o_req_t *req, const struct answer *a, bool vary, struct blob_ref *blob,
                         struct answer_counts *c, const char *x_cache)
{
    pictures_touch(as->o.pictures, a->master);
    send_bytes(as, req, a, vary, blob, c, x_cache);
}

void answer_send_made(struct answers *as, h2o_req_t *req, const struct answer *a, struct blob_ref *blob,
                      struct answer_counts *counts, const char *x_cache)
{
    send_bytes(as, req, a, a->vary, blob, counts, x_cache);
}

static void reply_unavailable(h2o_req_t *req)
{
    http_reply_error(req, 503, "the relay is shutting down");
}

static struct answer_wait *wait_new(h2o_req_t *req, const struct answer *a, struct answer_counts *c,
                                    const char *x_cache, answer_done_fn done, const void *ctx, size_t ctxlen)
{
    struct answer_wait *aw;

    if (ctxlen > CTX_MAX || (aw = calloc(1, sizeof(*aw) + ctxlen)) == NULL)
        abort();
    aw->hold = http_hold(req);
    aw->counts = c;
    aw->x_cache = x_cache;
    aw->vary = a->vary;
    aw->done = done;
    aw->ctxlen = ctxlen;
    memcpy(aw->ctx, ctx, ctxlen);
    return aw;
}

/* The request was answered (or its client has gone): the route hears it, and the hold goes. */
static void wait_answered(struct answer_wait *aw)
{
    http_unhold(aw->hold);
    aw->done(aw->ctx, NULL, 0);
    free(aw);
}

/* The master's file has gone or is damaged: its entries go too (and the file), and the route has the request. */
static void wait_master_gone(struct answers *as, const uint8_t master[32], int err, struct answer_wait *aw)
{
    if (err == -EBADMSG) {
        aw->counts->damaged_files++;
        log_warn("pictures: the file of a cached picture is damaged (its size or SHA-256 is not its record's); "
                 "removing it and fetching the picture again");
    } else {
        log_warn("pictures: the file of a cached picture is missing (%s); fetching it again", strerror(-err));
    }
    pictures_forget_file(as->o.pictures, master);
    aw->done(aw->ctx, aw->hold, err == -EBADMSG ? -EBADMSG : -ENOENT);
    free(aw);
}

/* --- variants being made ---------------------------------------------------------------------------------------- */

/*
 * A variant being made from its master on the image threads, once for every
 * request that wants it meanwhile; it is stored for the next ones, and until
 * that has committed, they are answered from `made`.
 */
struct making {
    struct work work;
    struct answers *as;
    uint8_t id[32 + 1 + PICTURES_VARIANT_KEY_MAX]; /* master, key length, key */
    struct answer a;
    struct answer_counts *counts; /* of the request that started it */
    struct blob_ref *master;      /* when it was in memory; else read from its file */
    h2o_linklist_t waits;         /* struct answer_wait */
    struct blob_ref *made;        /* made, and being stored */
    struct image_out out;
    uint8_t hash[32];
    int read_err, err;
    uint64_t ns;
};

static void making_id(uint8_t id[32 + 1 + PICTURES_VARIANT_KEY_MAX], const struct answer *a)
{
    memset(id, 0, 32 + 1 + PICTURES_VARIANT_KEY_MAX);
    memcpy(id, a->master, 32);
    id[32] = a->key.len;
    memcpy(id + 33, a->key.b, a->key.len <= PICTURES_VARIANT_KEY_MAX ? a->key.len : PICTURES_VARIANT_KEY_MAX);
}

static void making_run(struct work *w)
{
    struct making *m = H2O_STRUCT_FROM_MEMBER(struct making, work, w);
    uint8_t *data = NULL;
    size_t len = 0;
    uint64_t t0 = clock_mono_ns();

    if (m->master != NULL) {
        m->err = image_variant(m->master->data, m->master->len, &m->a.spec, &m->out);
    } else if ((m->read_err = blob_read(m->as->o.blobs, m->a.master, m->a.master_bytes, &data, &len)) == 0) {
        m->err = image_variant(data, len, &m->a.spec, &m->out);
        free(data);
    }
    if (m->read_err == 0 && m->err == 0)
        blob_hash(m->out.data, m->out.len, m->hash);
    m->ns = clock_mono_ns() - t0;
}

static void making_free(struct making *m)
{
    keymap_del(m->as->making, m->id);
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
    struct answers *as = m->as;
    struct blob_ref *blob = NULL;

    if (m->read_err == 0 && m->err == 0) {
        struct pictures_variant pv = {.key = m->a.key,
                                      .rec = {.bytes = (uint32_t)m->out.len,
                                              .width = (uint16_t)m->out.width,
                                              .height = (uint16_t)m->out.height,
                                              .type = (uint8_t)m->out.type,
                                              .frames = (uint8_t)(m->out.frames > 255 ? 255 : m->out.frames)}};
        blob = blobcache_put(as->o.cache, m->hash, m->out.data, m->out.len);
        memcpy(pv.rec.blob, m->hash, 32);
        pv.bytes = blob;
        m->made = blob;
        blob_retain(blob);
        pictures_put_variant(as->o.pictures, m->a.master, &pv, on_variant_stored, m);
        memcpy(m->a.file, m->hash, 32);
        m->a.bytes = (uint32_t)m->out.len;
        m->counts->variants_made++;
        histogram_observe(&as->making_seconds[answer_format(m->a.type)], (double)m->ns / 1e9);
    } else if (m->read_err == 0) {
        m->counts->variant_failures++;
        log_warn("pictures: cannot make a %s variant of %d px: %s", image_mime(m->a.type), m->a.size, m->out.error);
    }
    if (m->read_err != 0)
        pictures_forget_file(as->o.pictures, m->a.master);
    while (!h2o_linklist_is_empty(&m->waits)) {
        struct answer_wait *aw = H2O_STRUCT_FROM_MEMBER(struct answer_wait, link, m->waits.next);
        h2o_req_t *req = http_held(aw->hold);
        h2o_linklist_unlink(&aw->link);
        if (m->read_err != 0) {
            if (m->read_err == -EBADMSG)
                aw->counts->damaged_files++;
            aw->done(aw->ctx, aw->hold, m->read_err == -EBADMSG ? -EBADMSG : -ENOENT);
            free(aw);
            continue;
        }
        if (req == NULL)
            ;
        else if (blob != NULL)
            send_picture(as, req, &m->a, aw->vary, blob, aw->counts, "MISS");
        else
            http_reply_error(req, 500, "cannot make this variant of the picture: %s", m->out.error);
        wait_answered(aw);
    }
    if (m->read_err != 0)
        log_warn("pictures: the file of a cached picture is missing or damaged (%s); fetching it again",
                 strerror(-m->read_err));
    if (blob != NULL)
        blob_release(blob);
    else
        making_free(m);
}

/* Makes the variant `a`, or joins `aw` to its making under way. */
static void make_variant(struct answers *as, const struct answer *a, struct answer_wait *aw)
{
    uint8_t id[32 + 1 + PICTURES_VARIANT_KEY_MAX];
    struct making *m;

    making_id(id, a);
    if ((m = keymap_get(as->making, id)) != NULL) {
        h2o_linklist_insert(&m->waits, &aw->link);
        return;
    }
    if ((m = calloc(1, sizeof(*m))) == NULL)
        abort();
    m->as = as;
    memcpy(m->id, id, sizeof(id));
    m->a = *a;
    m->counts = aw->counts;
    m->master = blobcache_get(as->o.cache, a->master);
    h2o_linklist_init_anchor(&m->waits);
    h2o_linklist_insert(&m->waits, &aw->link);
    keymap_put(as->making, id, m);
    m->work.run = making_run;
    m->work.done = making_done;
    /* Someone waits for it in a browser: ahead of pictures fetched in the background. */
    workpool_submit_urgent(as->o.images, &m->work);
}

/* --- files read off the loop ------------------------------------------------------------------------------------ */

struct file_read {
    struct work work;
    struct answers *as;
    struct answer a;
    struct answer_wait *aw;
    uint8_t *data;
    size_t len;
    int err;
};

static void file_read_run(struct work *w)
{
    struct file_read *fr = H2O_STRUCT_FROM_MEMBER(struct file_read, work, w);

    fr->err = blob_read(fr->as->o.blobs, fr->a.file, fr->a.bytes, &fr->data, &fr->len);
}

static void file_read_done(struct work *w)
{
    struct file_read *fr = H2O_STRUCT_FROM_MEMBER(struct file_read, work, w);
    struct answers *as = fr->as;
    struct answer_wait *aw = fr->aw;
    h2o_req_t *req = http_held(aw->hold);

    if (fr->err == 0) {
        struct blob_ref *blob = blobcache_put(as->o.cache, fr->a.file, fr->data, fr->len);
        if (req != NULL)
            send_picture(as, req, &fr->a, aw->vary, blob, aw->counts, aw->x_cache);
        blob_release(blob);
        free(fr->data);
        wait_answered(aw);
    } else if (fr->a.variant) {
        /* Only the variant is lost: it is dropped, and made again from the master (not looked up again: the
         * index still names it until the drop has committed). A master gone too makes the request the route's. */
        if (fr->err == -EBADMSG)
            aw->counts->damaged_files++;
        pictures_forget_variant(as->o.pictures, fr->a.master, &fr->a.key);
        if (req == NULL) {
            wait_answered(aw);
        } else if (as->closing) {
            reply_unavailable(req);
            wait_answered(aw);
        } else {
            make_variant(as, &fr->a, aw);
        }
    } else {
        wait_master_gone(as, fr->a.master, fr->err, aw);
    }
    free(fr);
}

static void read_file(struct answers *as, const struct answer *a, struct answer_wait *aw)
{
    struct file_read *fr = calloc(1, sizeof(*fr));

    if (fr == NULL)
        abort();
    fr->as = as;
    fr->a = *a;
    fr->aw = aw;
    fr->work.run = file_read_run;
    fr->work.done = file_read_done;
    workpool_submit(as->o.readers, &fr->work);
}

/* --- serving ---------------------------------------------------------------------------------------------------- */

bool answer_send(struct answers *as, h2o_req_t *req, const struct answer *given, struct answer_counts *counts,
                 const char *x_cache, answer_done_fn done, const void *ctx, size_t ctxlen)
{
    struct answer a = *given;
    struct blob_ref *blob;

    /* A variant the route found stored already (a->bytes filled in) is not looked up again. */
    if (a.variant && a.bytes == 0) {
        uint8_t id[32 + 1 + PICTURES_VARIANT_KEY_MAX];
        struct variant_rec rec;
        struct making *m;

        if (pictures_get_variant(as->o.pictures, a.master, &a.key, &rec) != 0) {
            making_id(id, &a);
            if ((m = keymap_get(as->making, id)) != NULL && m->made != NULL) {
                send_picture(as, req, &m->a, a.vary, m->made, counts, "HIT");
                return true;
            }
            if (as->closing) {
                reply_unavailable(req);
                return true;
            }
            make_variant(as, &a, wait_new(req, &a, counts, x_cache, done, ctx, ctxlen));
            return false;
        }
        memcpy(a.file, rec.blob, 32);
        a.bytes = rec.bytes;
    }
    if ((blob = blobcache_get(as->o.cache, a.file)) != NULL) {
        send_picture(as, req, &a, a.vary, blob, counts, x_cache);
        blob_release(blob);
        return true;
    }
    read_file(as, &a, wait_new(req, &a, counts, x_cache, done, ctx, ctxlen));
    return false;
}

/* --- life cycle ------------------------------------------------------------------------------------------------- */

struct answers *answers_new(const struct answers_options *o)
{
    struct answers *as = calloc(1, sizeof(*as));

    if (as == NULL)
        abort();
    as->o = *o;
    as->making = keymap_new(32 + 1 + PICTURES_VARIANT_KEY_MAX);
    for (size_t i = 0; i <= VARIANT_GIF; i++)
        histogram_init(&as->making_seconds[i], MAKING_BOUNDS, sizeof(MAKING_BOUNDS) / sizeof(MAKING_BOUNDS[0]));
    return as;
}

void answers_shutdown(struct answers *as)
{
    as->closing = true;
}

void answers_free(struct answers *as)
{
    if (as == NULL)
        return;
    keymap_free(as->making, NULL);
    free(as);
}

const struct histogram *answers_making(const struct answers *as, enum variant_format f)
{
    return &as->making_seconds[f];
}
