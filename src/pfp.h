/* pfp.h -- profile pictures: GET /profile-pic/{pubkey} from the cache, or found, fetched, checked, resized, stored. */
#ifndef PFP_PFP_H
#define PFP_PFP_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "blob.h"
#include "blobcache.h"
#include "config.h"
#include "fetch.h"
#include "http.h"
#include "image.h"
#include "lookup.h"
#include "metrics.h"
#include "pictures.h"
#include "store.h"
#include "workpool.h"

/* Why a pubkey has no picture in the cache; kept with a retry time. */
enum pfp_negative {
    PFP_NO_PROFILE = 1, /* no kind 0 here or upstream */
    PFP_NO_PICTURE,     /* a kind 0 without picture (or image) */
    PFP_BAD_URL,        /* a picture URL that is not http(s) or data: */
    PFP_DOWNLOAD_FAILED,
    PFP_BAD_IMAGE, /* downloaded, but not an accepted picture */
};

struct pfp_stats {
    uint64_t hits, stale, misses, not_modified;
    uint64_t negative_hits;        /* answered from a remembered failure */
    uint64_t downloads;            /* started */
    uint64_t download_failures[8]; /* by enum fetch_error */
    uint64_t bad_images;
    uint64_t processed;        /* pictures checked and stored */
    uint64_t url_reuses;       /* a picture another pubkey's URL had already brought */
    uint64_t prefetches;       /* started because a kind 0 arrived */
    uint64_t refreshes;        /* started because an entry was stale */
    uint64_t prefetch_dropped; /* not queued: the queue was full */
    uint64_t refetched;        /* a picture whose file went while its record was written, downloaded again */
    uint64_t bytes_served;     /* picture bytes sent (200 answers to GET) */
    uint64_t process_ns;       /* time spent checking and resizing, summed */
};

/* What caching a pubkey's picture ahead of any request came to, for the jobs that ask. */
enum pfp_outcome {
    PFP_CACHED,         /* a picture is now cached for it */
    PFP_ALREADY_CACHED, /* it was cached and fresh, or confirmed unchanged */
    PFP_NOT_FOUND,      /* no profile, no picture, or a picture URL that cannot be fetched */
    PFP_FAILED,         /* the download or the image failed */
    PFP_ABANDONED,      /* the relay is shutting down: try again after a restart */
};

/* Told once how caching one pubkey ended. Lives in the caller's memory until then. */
struct pfp_watch {
    void (*cb)(struct pfp_watch *w, enum pfp_outcome outcome);
    struct pfp_watch *next;
};

struct pfp_pending;
struct pfp_download;
struct prefetch_item;
struct keymap;

struct pfp {
    uv_loop_t *loop;
    const struct config *cfg;
    struct store *store;
    struct lookup *lookup;
    struct pictures index;
    struct blobs blobs;
    struct blobcache cache;
    struct fetcher fetcher;
    struct workpool images;
    struct image_opts image_opts;
    struct keymap *pending;                                    /* pubkey -> the fetch under way for it */
    struct keymap *downloads;                                  /* URL hash -> its download and processing under way */
    struct pfp_download *queue_interactive, *queue_background; /* waiting for a download slot */
    struct pfp_download *all_downloads;
    size_t slots_used;                    /* downloads and processing under way, at most max_concurrent */
    size_t background_running;            /* ... of them started as background work, at most half */
    size_t prefetch_pending;              /* pubkeys being fetched ahead, at most max_concurrent */
    struct prefetch_item *prefetch_queue; /* a ring of pubkeys to fetch ahead */
    size_t prefetch_head, prefetch_len;
    struct keymap *prefetch_set; /* pubkey -> its place in the ring, so none is queued twice */
    uv_timer_t prefetch_timer;
    uint64_t max_age; /* seconds a picture stays fresh */
    char cache_control[64];
    bool closing;
    struct pfp_stats stats;
    struct histogram processing; /* seconds checking, resizing and storing each downloaded picture */
};

/*
 * Sets the picture service up: its databases (call between store_open() and
 * store_start()), the media directory, libvips, the downloader and the image
 * threads. Registers for kind 0 events with the store, so newly stored profiles
 * are fetched ahead. Returns 0, or a negative error with a message in `err`.
 */
int pfp_init(struct pfp *p, uv_loop_t *loop, const struct config *cfg, struct store *store, struct lookup *lookup,
             struct inbox *inbox, char *err, size_t errlen);

/* After store_start(): drops index entries whose file has gone. */
void pfp_start(struct pfp *p);

/* Routes GET and HEAD /profile-pic/{pubkey}. */
int pfp_route(struct pfp *p, struct http_server *http);

/*
 * Caches the picture of `pubkey` ahead of any request, behind pictures someone
 * waits for; `w->cb` hears the outcome once, perhaps before this returns.
 */
void pfp_precache(struct pfp *p, const uint8_t pubkey[32], struct pfp_watch *w);

/* Stops starting new work; downloads under way are abandoned and their waiters answered 503. */
void pfp_shutdown(struct pfp *p);

/* After the image threads have stopped and their results have run. */
void pfp_free(struct pfp *p);

#endif
