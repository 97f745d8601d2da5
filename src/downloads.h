/*
 * downloads.h -- the picture download scheduler: one download and processing
 * per URL however many wait for it, pictures someone waits for in a browser
 * before background work (in the slots and in the image threads' queue), a
 * bounded number of slots of which background work holds at most half, and a
 * bounded number of downloads from one origin host.
 */
#ifndef PFP_DOWNLOADS_H
#define PFP_DOWNLOADS_H

#include <h2o/linklist.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fetch.h"
#include "image.h"

struct blobcache;
struct blob_ref;
struct fetcher;
struct histogram;
struct url_rec;
struct workpool;

enum download_error {
    DOWNLOAD_OK,
    DOWNLOAD_FAILED,    /* not downloaded, or abandoned at shutdown */
    DOWNLOAD_BAD_IMAGE, /* downloaded, but not an accepted picture */
};

/* Variants made with each master at most. */
#define DOWNLOADS_MAX_FIRST 4

/* A variant made with the master, so that the answers most asked for need no more work. */
struct download_variant {
    const struct image_variant_spec *spec; /* as asked in the options */
    struct blob_ref *blob;                 /* its bytes (retain them to keep them) */
    int width, height, frames;
};

/* How a download ended, for each waiter; valid only during the callback. */
struct download_result {
    enum download_error error;
    const char *detail;                      /* for logs, when it failed */
    enum fetch_error fetch;                  /* DOWNLOAD_FAILED: why (FETCH_OK: abandoned at shutdown) */
    long http_status;                        /* ... the origin's status, with FETCH_HTTP_STATUS */
    enum image_refusal refusal;              /* DOWNLOAD_BAD_IMAGE: why */
    const uint8_t *url_key;                  /* the URL's SHA-256 */
    const struct url_rec *url;               /* on success: what the URL gave */
    struct blob_ref *blob;                   /* on success: the bytes (retain them to keep them) */
    const struct download_variant *variants; /* on success, with a master: those made with it */
    size_t nvariants;
    bool first; /* the first waiter told: it records what the URL gave */
};

struct download_wait;

/*
 * One variant answered before its master is encoded and stored, for the first wait that asks when processing
 * begins: made from the master's pixels in memory (still pictures only, with resizing), it saves the wait the
 * master's encoding, which follows behind the work others wait for, in the same slot.
 */
struct download_early {
    /* On an image thread: the variant wanted of a master of `width` x `height`, into *out; false for none. It may
     * read only what stays unchanged until the wait is told. */
    bool (*shape)(const struct download_wait *w, int width, int height, struct image_variant_spec *out);
    /* On the loop, once the variant is made (not when it failed), before `cb` tells how the master ended; with the
     * master's size. v->spec is *out above; retain v->blob to keep it. */
    void (*cb)(struct download_wait *w, const struct download_variant *v, int width, int height);
};

/*
 * A wait for a URL, in the caller's memory. `cb` runs once, on the loop, never from inside downloads_get(). With
 * `first`, the options' first variants are made with the master, unless its processing has begun; likewise
 * `master_size` and `early`.
 */
struct download_wait {
    void (*cb)(struct download_wait *w, const struct download_result *r);
    bool first;
    int master_size;                    /* the master's longest side at least (banners' are wider); 0: the options' */
    const struct download_early *early; /* NULL: none */
    struct download *_download;
    h2o_linklist_t _link;
};

struct downloads_options {
    size_t max_concurrent;   /* downloads and processing under way at once (at least 1) */
    size_t max_per_host;     /* downloads under way from one host name, whatever its port (0: no limit) */
    struct image_opts image; /* how each picture is checked and resized */
    /* Variants made with each master (image.resize); those that fail are left to be made when asked for. */
    struct image_variant_spec first[DOWNLOADS_MAX_FIRST];
    size_t nfirst;
};

struct downloads_stats {
    uint64_t started;                   /* downloads started */
    uint64_t failures[FETCH_ERRORS];    /* by enum fetch_error */
    uint64_t bad_images;                /* downloaded, then refused */
    uint64_t processed;                 /* checked and resized */
    uint64_t process_ns;                /* time spent checking and resizing, summed */
    uint64_t running;                   /* holding a slot now */
    uint64_t running_background;        /* of those, slots taken by background work */
    uint64_t queued;                    /* waiting for one */
    uint64_t queued_background;         /* of those, background work */
    uint64_t host_waits;                /* downloads that waited because their host had max_per_host under way */
    uint64_t busiest_host;              /* the most downloads under way from one host now */
    uint64_t slots, background_slots;   /* max_concurrent, and the most of them background work may hold */
    uint64_t max_per_host;              /* as configured (0: no limit) */
    const struct histogram *processing; /* seconds per picture; valid while the scheduler lives */
};

struct downloads;

/*
 * Prepares a scheduler that downloads with `fetcher`, checks and resizes
 * pictures on `images` threads, and keeps the bytes in `cache`; all must
 * outlive it. It writes no file: the waiters hand the bytes to the picture
 * index, which stores them. Returns 0 (allocation failure aborts).
 */
int downloads_init(struct downloads **out, struct fetcher *fetcher, struct workpool *images, struct blobcache *cache,
                   const struct downloads_options *o);

/*
 * Waits for `url` (`len` bytes, copied), joining its download when one is
 * under way; `w->cb` must be set. `interactive`: someone waits in a browser,
 * which moves a queued background download ahead. Not after downloads_shutdown().
 */
void downloads_get(struct downloads *d, const char *url, size_t len, bool interactive, struct download_wait *w);

/*
 * As downloads_get(), for a picture whose bytes are at hand (a data: URI's):
 * `bytes` (copied) are checked and resized with no download, under the name
 * `name` (`len` bytes), which stands for their URL.
 */
void downloads_get_data(struct downloads *d, const char *name, size_t len, const uint8_t *bytes, size_t nbytes,
                        bool interactive, struct download_wait *w);

/* Someone now waits in a browser for what `w` waits for: a background download or its processing moves ahead. */
void downloads_promote(struct downloads *d, struct download_wait *w);

/*
 * Starts nothing more; downloads queued or under way end now with
 * DOWNLOAD_FAILED ("shutting down"), those being processed when their image
 * work comes back. Idempotent.
 */
void downloads_shutdown(struct downloads *d);

/* After shutdown, once the image work has come back. */
void downloads_free(struct downloads *d);

void downloads_stats(const struct downloads *d, struct downloads_stats *out);

#endif
