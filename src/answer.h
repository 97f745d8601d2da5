/*
 * answer.h -- answers from the picture cache, for every route that serves pictures: one file sent from memory or
 * read off the loop, or one variant of a master made on the image threads once for every request that wants it
 * meanwhile and stored for the next; with the cache headers and 304 Not Modified. Which file or variant answers a
 * request is its route's choice; a route hears when the master it chose has gone.
 */
#ifndef PFP_ANSWER_H
#define PFP_ANSWER_H

#include <h2o.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "image.h"
#include "pictures.h"
#include "variant.h"

struct blobcache;
struct blobs;
struct histogram;
struct http_hold;
struct workpool;

/* Size classes of picture answers: up to 64, 128, 256 and 512 pixels, and larger. */
#define ANSWER_SIZE_CLASSES 5

/* What a route's answers came to; the route owns it, and it outlives the route's requests. */
struct answer_counts {
    uint64_t not_modified;
    uint64_t bytes_served;                     /* picture bytes sent (200 answers to GET) */
    uint64_t damaged_files;                    /* cached files found damaged when read (size or SHA-256) */
    uint64_t variants_made;                    /* made from a master on request */
    uint64_t variant_failures;                 /* ... that could not be made */
    uint64_t served_format[VARIANT_GIF + 1];   /* 200 and 304 answers by enum variant_format */
    uint64_t served_size[ANSWER_SIZE_CLASSES]; /* ... by size class */
};

/* One answer: the master's own file, or one of its variants. */
struct answer {
    uint8_t master[32]; /* the picture's file: its last use is this answer's */
    uint32_t master_bytes;
    uint64_t fetched_at; /* Last-Modified */
    bool variant;
    struct pictures_vkey key;       /* with `variant` */
    struct image_variant_spec spec; /* ... how it is made */
    int size;                       /* its longer side, for the size classes */
    uint8_t file[32];               /* what is sent, once known */
    uint32_t bytes;
    enum image_type type;
    bool vary; /* the format came from Accept */
};

struct answers_options {
    struct pictures *pictures;
    struct blobs *blobs;
    struct blobcache *cache;
    struct workpool *images;   /* variants are made here, ahead of background work */
    struct workpool *readers;  /* files not in memory are read here */
    const char *cache_control; /* the Cache-Control of every picture answer; outlives the answers */
};

struct answers;

/* All of `o` must outlive the answers. */
struct answers *answers_new(const struct answers_options *o);

/* Variants are no longer made: a request that needs one gets 503. Idempotent. */
void answers_shutdown(struct answers *as);

/* Once the image and read threads have given back their work. Accepts NULL. */
void answers_free(struct answers *as);

/*
 * How an answer that could not be sent at once ended, for the route that asked: status 0, answered (`hold` is
 * NULL); or -ENOENT or -EBADMSG, the master's file is gone or damaged, and its entries are being dropped: the route
 * answers `hold` (as a miss, say) and releases it. `ctx` is the route's copy given to answer_send().
 */
typedef void (*answer_done_fn)(void *ctx, struct http_hold *hold, int status);

/*
 * Answers `req` with `a` (`a->file` and `a->bytes` filled in for a variant already stored), counted in `counts`,
 * with `x_cache` as its X-Cache. Returns true when it was answered now; otherwise `req` is held and `done` hears,
 * once, how it ended, with a copy of the `ctxlen` bytes at `ctx` (at most 8 KiB). Loop thread.
 */
bool answer_send(struct answers *as, h2o_req_t *req, const struct answer *a, struct answer_counts *counts,
                 const char *x_cache, answer_done_fn done, const void *ctx, size_t ctxlen);

/*
 * Answers `req` now with `blob`, the bytes of the variant `a` made before its master was stored (so a->master is
 * not known yet, and the master's use is not recorded), counted in `counts`. Loop thread.
 */
void answer_send_made(struct answers *as, h2o_req_t *req, const struct answer *a, struct blob_ref *blob,
                      struct answer_counts *counts, const char *x_cache);

/* Seconds to make a variant, by enum variant_format; valid while the answers live. */
const struct histogram *answers_making(const struct answers *as, enum variant_format f);

/* The enum variant_format of an answer of type `t`. */
enum variant_format answer_format(enum image_type t);

#endif
