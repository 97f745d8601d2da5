/*
 * fallback.h -- the pictures a pubkey without a usable picture gets when a request asks for one: an identicon
 * drawn from the key, or a blank picture, of the requested size and format, drawn once on the image threads for
 * every request that wants it meanwhile, and the last of them kept in memory.
 */
#ifndef PFP_FALLBACK_H
#define PFP_FALLBACK_H

#include <h2o.h>
#include <stdint.h>

#include "variant.h"

struct workpool;

struct fallback_options {
    struct workpool *images; /* where pictures are drawn and encoded; outlives the module */
    int quality;             /* image_quality, JPEG's scale */
    size_t memory_bytes;     /* generated pictures kept in memory */
};

struct fallback_stats {
    uint64_t identicons, blanks; /* answers (200 and 304) */
    uint64_t drawn;              /* drawn and encoded; the other answers came from memory */
    uint64_t not_modified;       /* of the answers, 304s */
    uint64_t bytes_served;       /* bytes sent in 200 answers to GET */
};

struct fallback;

/* Returns the module (allocation failure aborts). */
struct fallback *fallback_new(const struct fallback_options *o);

/*
 * Answers `req` with the picture `v->fallback` names (VARIANT_FALLBACK_IDENTICON or VARIANT_FALLBACK_BLANK) for
 * `pubkey`: `v->size` clamped to what identicons allow, a banner's blank a third as high as wide, in `v->format`
 * (a GIF is asked only for animations: JPEG), with an hour's Cache-Control, its SHA-256 as a strong ETag, and
 * Vary: Accept when the format was negotiated. 500 JSON when it cannot be made, 503 after fallback_shutdown().
 */
void fallback_send(struct fallback *f, h2o_req_t *req, const uint8_t pubkey[32], const struct variant *v);

/* Draws nothing more: later requests get 503; those waiting are answered when their drawing comes back. */
void fallback_shutdown(struct fallback *f);

/* Once the image threads have stopped and their results have come back. Accepts NULL. */
void fallback_free(struct fallback *f);

void fallback_stats(const struct fallback *f, struct fallback_stats *out);

#endif
