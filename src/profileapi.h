/*
 * profileapi.h -- profiles as JSON: GET /profile/{id} and POST /profiles answer
 * what a stored kind 0 says (looked up upstream when missing) and how far this
 * relay is with its picture, without waiting for any download.
 */
#ifndef PFP_PROFILEAPI_H
#define PFP_PROFILEAPI_H

#include <h2o/linklist.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pictures.h"

/* The most pubkeys one POST /profiles may ask for. */
#define PROFILEAPI_BATCH_MAX 500

/* Pictures whose blurhash and colour are kept in memory; past this the oldest are forgotten (and made again). */
#define PROFILEAPI_SUMMARIES_MAX 65536

/* The side of the thumbnail blurhash and colour are computed from. */
#define PROFILEAPI_THUMBNAIL 32

/* Seconds a client or cache may keep an answer (Cache-Control: max-age). */
#define PROFILEAPI_MAX_AGE 60

struct blobs;
struct http_server;
struct keymap;
struct workpool;
struct lookup;
struct cluster;
struct names;
struct pfp;
struct store;

struct profileapi_stats {
    uint64_t found;     /* profiles answered (each entry of a batch counts) */
    uint64_t not_found; /* pubkeys without a kind 0 here or upstream */
    uint64_t pending;   /* profiles answered whose picture was not cached yet, and was queued */
    uint64_t not_modified;
    uint64_t summaries; /* pictures whose blurhash and colour were computed */
};

/* What the module works with; all must outlive it. The fields are private. */
struct profileapi {
    struct store *_store;
    struct lookup *_lookup;
    struct pictures *_pictures;
    struct pfp *_pfp;
    struct names *_names;     /* NULL: keys only */
    struct cluster *_cluster; /* NULL: no cluster */
    struct blobs *_blobs;
    struct workpool *_images;
    struct keymap *_summaries; /* picture file hash -> struct summary */
    h2o_linklist_t _order;     /* summaries, oldest first */
    bool _closing;
    struct profileapi_stats _stats;
};

/* How far the relay is with a profile's picture (the "state" of the "picture" object). */
enum profileapi_state {
    PROFILEAPI_NONE,    /* the kind 0 names no picture */
    PROFILEAPI_PENDING, /* not cached yet: queued */
    PROFILEAPI_CACHED,
    PROFILEAPI_FAILED, /* its URL is unusable, or the download or the image failed (retried later) */
};

/*
 * Blurhashes and colours are computed from the files of `blobs` on the image threads of `pfp`. GET /profile/{id}
 * takes NIP-05 names too, resolved by `names` (NULL: keys only).
 */
void profileapi_init(struct profileapi *pa, struct store *store, struct lookup *lookup, struct pictures *pictures,
                     struct blobs *blobs, struct pfp *pfp, struct names *names, struct cluster *cluster);

/* Computes nothing more (call before pfp_shutdown()); answers go on without blurhash and colour. */
void profileapi_shutdown(struct profileapi *pa);

/* Once the inbox has been drained. */
void profileapi_free(struct profileapi *pa);

/* Routes GET /profile/{id} and POST /profiles. Returns 0 or an http_route() error. */
int profileapi_route(struct profileapi *pa, struct http_server *http);

void profileapi_stats(const struct profileapi *pa, struct profileapi_stats *out);

/*
 * Builds the object of one profile from its kind 0 (`json`, `len` bytes of the
 * event as JSON) and the picture record of its pubkey (`pic`, NULL when there
 * is none). `base` prefixes relay URLs ("" for paths, or "https://host").
 * `banner` is the record of its banner (NULL when there is none), and
 * `*state` and `*banner_state` say what their states are. Returns a new object, or NULL when
 * `json` is not a kind 0 event.
 */
json_t *profileapi_entry(const char *json, size_t len, const struct pic *pic, const struct pic *banner,
                         const char *base, enum profileapi_state *state, enum profileapi_state *banner_state);

/* The dominant colour of `width` x `height` pixels of 8-bit RGB (3 bytes a pixel, rows packed): the mean of the
 * most populated of 4096 boxes (4 bits a channel), written "#rrggbb" into `out`. */
void profileapi_dominant_color(const uint8_t *rgb, int width, int height, char out[8]);

/*
 * Reads a POST /profiles body: {"pubkeys": [...]}, 1 to PROFILEAPI_BATCH_MAX
 * keys in any spelling nip19_decode_pubkey() accepts, kept in order with
 * duplicates. Returns 0 with `*keys` malloc()ed (free() it) and `*n`, or -EINVAL
 * with what is wrong in `err` (the key at fault by its index, never echoed).
 * On success, each relay of an nprofile among them goes to `hint` unless it is
 * NULL.
 */
int profileapi_parse_batch(const char *body, size_t len, uint8_t (**keys)[32], size_t *n,
                           void (*hint)(void *ctx, const uint8_t pubkey[32], const char *url), void *ctx, char *err,
                           size_t errlen);

#endif
