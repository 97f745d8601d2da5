/*
 * names.h -- NIP-05 names resolved to pubkeys: GET https://{domain}/.well-known/nostr.json?name={name} through a
 * fetcher of its own (guarded, a small body, no redirects), one request per name however many wait for it, and
 * what it gave remembered: a pubkey for cache_seconds, a failure with a back-off.
 */
#ifndef PFP_NAMES_H
#define PFP_NAMES_H

#include <h2o/linklist.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <h2o.h>
#include <uv.h>

#include "nip05.h"

struct fetcher;

enum names_error {
    NAMES_OK,
    NAMES_NO_SUCH_NAME, /* the document has no such name */
    NAMES_UNREACHABLE,  /* the domain did not answer with a document: DNS, TLS, timeout, an HTTP error, a redirect */
    NAMES_MALFORMED,    /* the document is not NIP-05's, or larger than its limit */
    NAMES_REFUSED,      /* the domain's addresses are ones the guard refuses */
};

/* How a name was resolved; valid only during the callback (or until the next call, for names_cached()). */
struct names_result {
    enum names_error error;
    const char *why;       /* in words, for the answer's JSON: "no such name", "domain unreachable: ..." */
    const uint8_t *pubkey; /* when NAMES_OK */
    const char (*relays)[NIP65_MAX_URL]; /* the document's relays for the pubkey */
    size_t nrelays;
};

/* A wait for a name, in the caller's memory. `cb` runs once, on the loop, never from inside names_resolve(). */
struct names_wait {
    void (*cb)(struct names_wait *w, const struct names_result *r);
    h2o_linklist_t _link;
};

struct names_options {
    uint64_t cache_seconds; /* how long a resolved name is kept (nip05_cache_seconds) */
    size_t max_names;       /* names remembered at most; the least recently asked go first */
    /* Told of each relay a document names for the pubkey it resolves to, as a hint of where its events are. */
    void (*hint)(void *ctx, const uint8_t pubkey[32], const char *url);
    void *hint_ctx;
};

struct names_stats {
    uint64_t resolved, failed; /* documents fetched that gave a pubkey, and those that did not */
    uint64_t cached;           /* answers from what was remembered */
    uint64_t remembered;       /* names held now */
};

struct names;

/* Prepares the resolver on `fetcher` (which must outlive it and refuse redirects). Returns 0. */
int names_init(struct names **out, uv_loop_t *loop, struct fetcher *fetcher, const struct names_options *o);

/* What is remembered for `id`, if it is still fresh: returns true and fills `out`. Loop thread. */
bool names_cached(struct names *n, const struct nip05_id *id, struct names_result *out);

/* Resolves `id`, joining the request under way for it; `w->cb` must be set. Not after names_shutdown(). */
void names_resolve(struct names *n, const struct nip05_id *id, struct names_wait *w);

/* Goes on with a request once the name it names is resolved: `ctx` is names_serve()'s copy, valid during the call. */
typedef void (*names_go_fn)(const void *ctx, h2o_req_t *req, const uint8_t pubkey[32]);

/*
 * Answers `req`, which names `id`: through `go` once the name is resolved (at once when it is remembered), or
 * with 404 JSON saying why it could not be, or 503 after names_shutdown(). `ctx` (`ctx_len` bytes) is copied.
 */
void names_serve(struct names *n, h2o_req_t *req, const struct nip05_id *id, names_go_fn go, const void *ctx,
                 size_t ctx_len);

/* Requests under way end now, their waits told NAMES_UNREACHABLE ("shutting down"). Idempotent. */
void names_shutdown(struct names *n);
/* Whether names_shutdown() has been called: names_resolve() may not be any more. */
bool names_closing(const struct names *n);
void names_free(struct names *n);

void names_stats(const struct names *n, struct names_stats *out);

#endif
