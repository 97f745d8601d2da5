/*
 * pfp.h -- profile pictures: GET /profile-pic/{pubkey} answered from the cache,
 * or found, fetched, checked, resized and stored; and pictures cached ahead of
 * requests, for new profiles and for jobs.
 */
#ifndef PFP_PFP_H
#define PFP_PFP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "answer.h"
#include "fetch.h"
#include "image.h"
#include "pending.h"
#include "pictures.h"
#include "variant.h"

struct blobs;
struct blobcache;
struct cdn;
struct cluster;
struct downloads;
struct fetcher;
struct histogram;
struct http_server;
struct inbox;
struct lookup;
struct names;
struct pictures;
struct store;

/* Size classes of picture answers in pfp_stats: up to 64, 128, 256 and 512 pixels, and larger. */
#define PFP_SIZE_CLASSES ANSWER_SIZE_CLASSES

struct pfp_stats {
    uint64_t hits, stale, misses, not_modified;
    uint64_t negative_hits;                   /* answered from a remembered failure */
    uint64_t downloads;                       /* started */
    uint64_t download_failures[FETCH_ERRORS]; /* by enum fetch_error */
    uint64_t bad_images;
    uint64_t processed;          /* pictures checked and stored */
    uint64_t url_reuses;         /* a picture another pubkey's URL had already brought */
    uint64_t prefetches;         /* started because a kind 0 arrived */
    uint64_t refreshes;          /* started because an entry was stale */
    uint64_t prefetch_dropped;   /* not queued: the queue was full */
    uint64_t refetched;          /* a picture whose file went while its record was written, downloaded again */
    uint64_t damaged_files;      /* cached files found damaged when read (size or SHA-256), dropped */
    uint64_t bytes_served;       /* picture bytes sent (200 answers to GET) */
    uint64_t process_ns;         /* time spent checking and resizing, summed */
    uint64_t identicons, blanks; /* generated answers (200 and 304) for pubkeys without a usable picture */
    uint64_t drawn;              /* generated pictures drawn and encoded; the other answers came from memory */
    uint64_t served_format[VARIANT_GIF + 1];         /* picture answers (200 and 304) by enum variant_format */
    uint64_t served_size[PFP_SIZE_CLASSES];          /* ... by size class: up to 64, 128, 256, 512 px, larger */
    uint64_t variants_made;                          /* made from a master on request */
    uint64_t variant_failures;                       /* ... that could not be made */
    const struct histogram *making[VARIANT_GIF + 1]; /* seconds to make one, by format; valid while the service lives */
    const struct histogram *processing;              /* seconds per picture; valid while the service lives */
};

/* What caching a pubkey's picture ahead of any request came to, for the jobs that ask. */
enum pfp_outcome {
    PFP_CACHED,         /* a picture is now cached for it */
    PFP_ALREADY_CACHED, /* it was cached and fresh, or confirmed unchanged */
    PFP_NOT_FOUND,      /* no profile, no picture, or a picture URL that cannot be fetched */
    PFP_FAILED,         /* the download or the image failed */
    PFP_ABANDONED,      /* the relay is shutting down: try again after a restart */
};

/* Told once how caching one pubkey ended. Lives in the caller's memory until then; set `cb`, the rest is pfp's. */
struct pfp_watch {
    void (*cb)(struct pfp_watch *w, enum pfp_outcome outcome);
    struct pending_wait _wait;
};

struct pfp_options {
    size_t image_threads;                 /* checking and resizing (0: one per online CPU) */
    size_t read_threads;                  /* reading picture files not in memory */
    size_t max_concurrent;                /* downloads, and pictures fetched ahead, under way at once */
    size_t max_per_host;                  /* downloads from one origin host at once (0: no limit) */
    size_t max_data_bytes;                /* the most bytes of a data: picture */
    struct image_opts image;              /* how pictures are checked and resized */
    uint64_t max_age;                     /* seconds a picture stays fresh (at least 1) */
    uint64_t stale_while_revalidate;      /* Cache-Control's, for caches in front (0: not sent) */
    uint64_t stale_if_error;              /* ... */
    bool precache_on_metadata;            /* fetch the picture of every new kind 0 ahead */
    enum variant_fallback default_avatar; /* what a request without `default` gets: 404, identicon or blank */
    int master_max_size;                  /* the largest `size` a request may ask for */
    int max_banner_size;                  /* a banner's width without `size` */
    const enum variant_format *negotiate; /* formats picked from Accept, in order; outlives the service */
    size_t nnegotiate;
};

/* What the service works with; all must outlive it. */
struct pfp_services {
    struct store *store;
    struct lookup *lookup;
    struct pictures *pictures; /* opened on `blobs` and `cache` */
    struct blobs *blobs;
    struct blobcache *cache;
    struct fetcher *fetcher;
    struct inbox *inbox;     /* where the image and read threads post their results */
    struct names *names;     /* NIP-05 names in place of keys; NULL: keys only */
    struct cluster *cluster; /* the other nodes behind the balancer; NULL: none */
    struct cdn *cdn;         /* told when a pubkey's picture changes; NULL: none */
};

struct pfp;

/*
 * Sets the picture service up: starts libvips and the image and read threads,
 * and registers for kind 0 events with the store, so that newly stored profiles
 * are fetched ahead. Returns 0, or a negative error with a message in `err`.
 * Free with pfp_free() in either case (after pfp_shutdown()).
 */
int pfp_init(struct pfp **out, uv_loop_t *loop, const struct pfp_options *o, const struct pfp_services *sv, char *err,
             size_t errlen);

/* Routes GET and HEAD /profile-pic/{pubkey}. Returns 0 or an http_route() error. */
int pfp_route(struct pfp *p, struct http_server *http);

/*
 * Caches the picture of `pubkey` in `slot` (avatar or banner) ahead of any request, behind pictures someone
 * waits for; `w->cb` hears the outcome once, perhaps before this returns.
 */
void pfp_precache(struct pfp *p, const uint8_t pubkey[32], enum pictures_slot slot, struct pfp_watch *w);

/*
 * Stops starting new work; downloads under way are abandoned and their waiters
 * answered 503; the image and read threads finish what they hold and stop,
 * their results arriving through the inbox. Idempotent.
 */
void pfp_shutdown(struct pfp *p);

/* After pfp_shutdown() and once the inbox has been drained. Accepts NULL. */
void pfp_free(struct pfp *p);

void pfp_stats(const struct pfp *p, struct pfp_stats *out);

/* The image threads, for other work on pictures stored here; submit only before pfp_shutdown(). */
struct workpool *pfp_image_threads(struct pfp *p);

/* The download scheduler, for its figures and for other routes' pictures; valid while the service lives. */
struct downloads *pfp_downloads(const struct pfp *p);

/* The answers from the picture cache, for other routes that serve pictures; valid while the service lives. */
struct answers *pfp_answers(const struct pfp *p);

#endif
