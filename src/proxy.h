/*
 * proxy.h -- GET {prefix}/{signature}/{options}/{source}: any picture by its URL, in imgproxy's URL language, for
 * clients that proxy images through imgproxy (Snort, Coracle). The source goes through the download guard, limits
 * and checks of profile pictures, becomes a master once, and every size and format asked for is a variant of it,
 * cached and evicted like the rest. Sources fetched and variants made here at once are bounded, and past the bound
 * requests wait in a bounded queue, beyond which they get 429.
 */
#ifndef PFP_PROXY_H
#define PFP_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imgproxy.h"
#include "variant.h"

struct answers;
struct downloads;
struct http_server;
struct pictures;

struct proxy_options {
    const char *prefix;                   /* e.g. "/imgproxy": no trailing '/'; outlives the proxy */
    struct imgproxy_options parse;        /* keys (copied), signature size, unsigned requests */
    size_t max_concurrent;                /* sources fetched and variants made for this route at once (at least 1) */
    size_t max_queue;                     /* requests waiting for one of those; more get 429 */
    int max_size;                         /* sizes asked for are capped here before dpr (master_max_size) */
    int quality;                          /* JPEG's scale, when the request names none (image_quality) */
    int timeout_ms;                       /* to make one variant (image_timeout) */
    uint64_t max_age;                     /* seconds a source stays fresh */
    size_t max_data_bytes;                /* the most bytes of a data: source */
    const enum variant_format *negotiate; /* formats picked from Accept, in order; outlives the proxy */
    size_t nnegotiate;
};

struct proxy_services {
    struct pictures *pictures;
    struct downloads *downloads;
    struct answers *answers;
};

struct proxy_stats {
    uint64_t requests; /* answered, whatever the status */
    uint64_t hits, stale, misses, not_modified;
    uint64_t sources_fetched; /* downloads started for this route */
    uint64_t source_failures; /* ... that failed, or whose bytes were no accepted picture */
    uint64_t variants_made;
    uint64_t early_answers; /* new sources' answers made before their master was encoded and stored */
    uint64_t rejected;      /* 429: the queue was full */
    uint64_t bad_requests;  /* 400 */
    uint64_t forbidden;     /* 403: the signature */
    uint64_t failed;        /* the source could not be had: 404, 413, 415, 502, 504 */
    uint64_t bytes_served;
    uint64_t running, queued; /* now */
    uint64_t max_concurrent, max_queue;
};

struct proxy;

/* All of `sv` must outlive the proxy. Returns 0 (allocation failure aborts). */
int proxy_init(struct proxy **out, const struct proxy_options *o, const struct proxy_services *sv);

/* Routes GET and HEAD {prefix}/... Returns 0 or an http_route() error. */
int proxy_route(struct proxy *px, struct http_server *http);

/* Starts nothing more: requests waiting for a slot get 503. Before the downloads shut down. Idempotent. */
void proxy_shutdown(struct proxy *px);

/* Once the downloads and answers have given back their work. Accepts NULL. */
void proxy_free(struct proxy *px);

void proxy_stats(const struct proxy *px, struct proxy_stats *out);

#endif
