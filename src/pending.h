/*
 * pending.h -- the picture of a pubkey being found: one search per pubkey
 * however many wait for it, from its kind 0 (here or upstream) to a picture
 * URL, a download or a reuse, and the record written before anyone is told.
 */
#ifndef PFP_PENDING_H
#define PFP_PENDING_H

#include <h2o/linklist.h>
#include <stdbool.h>
#include <stdint.h>

#include "pictures.h"

struct blob_ref;
struct downloads;
struct lookup;
struct store;

/* Why a pubkey has no picture, kept in its record (pic_head.reason) with a time to try again. The values are stored. */
enum pending_reason {
    PENDING_NO_PROFILE = 1, /* no kind 0 here or upstream */
    PENDING_NO_PICTURE,     /* a kind 0 without picture (or image) */
    PENDING_BAD_URL,        /* a picture URL that is not http(s) or data:, or not usable */
    PENDING_DOWNLOAD_FAILED,
    PENDING_BAD_IMAGE,    /* downloaded, but not an accepted picture */
    PENDING_URL_TOO_LONG, /* a picture URL longer than PROFILE_MAX_URL: refused, not cut */
    PENDING_DATA_TOO_BIG, /* a data: picture of more bytes than max_data_bytes */
};

/* How a search ended, for each waiter; valid only during the callback. */
struct pending_result {
    const struct pic *pic; /* the record written: a picture, or a remembered failure (NULL when abandoned) */
    struct blob_ref *blob; /* the picture's bytes when just made (retain them to keep them), else NULL */
    int status;            /* 0, or the record's write failed with this negative error */
    bool confirmed;        /* the picture there was is still the profile's: nothing new was cached */
    bool abandoned;        /* the relay is shutting down: nothing was found or written */
};

/* A wait for a pubkey's picture, in the caller's memory. `cb` runs once, on the loop. */
struct pending_wait {
    void (*cb)(struct pending_wait *w, const struct pending_result *r);
    h2o_linklist_t _link;
};

struct pending_options {
    uint64_t max_age;       /* seconds a picture (and what a URL gave) stays fresh */
    size_t max_data_bytes;  /* the most bytes of a data: picture, as of a download */
    int banner_master_size; /* the width a banner's master may have, as the largest banner asked for */
    /* Told when a pubkey's stored picture (or banner) was replaced by another, or by a failure; may be NULL. */
    void (*changed)(void *ctx, const uint8_t pubkey[32], enum pictures_slot slot);
    void *changed_ctx;
};

struct pending_stats {
    uint64_t url_reuses; /* a picture another pubkey's URL had already brought */
    uint64_t refetched;  /* a picture whose file went while its record was written, downloaded again */
    uint64_t active;     /* searches under way */
};

struct pending;

/* Prepares the searches; `store`, `pictures`, `lookup` and `downloads` must outlive them. Returns 0. */
int pending_init(struct pending **out, struct store *store, struct pictures *pictures, struct lookup *lookup,
                 struct downloads *downloads, const struct pending_options *o);

/*
 * Starts finding the picture of `pubkey` in `slot` (its avatar or its banner), or joins the search under way (one
 * not `background` moves a background one ahead); `w` (its cb set) hears how
 * it ended, never from inside this call. `refresh`: a stale entry, so ask the
 * upstream relays rather than take the kind 0 stored here. `old`: the record
 * there is, if any (copied). Returns 0, or -ECANCELED after pending_shutdown(),
 * when `w` is not called.
 */
int pending_start(struct pending *ps, const uint8_t pubkey[32], enum pictures_slot slot, bool background, bool refresh,
                  const struct pic *old, struct pending_wait *w);

/* Whether a search for the record `key` (pictures_record_key()) is under way. */
bool pending_active(const struct pending *ps, const uint8_t key[32]);

/* Starts nothing more: searches that end from now on are abandoned. Call before downloads_shutdown(). Idempotent. */
void pending_shutdown(struct pending *ps);

/* After shutdown, once the downloads and lookups have answered. */
void pending_free(struct pending *ps);

void pending_stats(const struct pending *ps, struct pending_stats *out);

#endif
