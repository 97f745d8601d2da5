/*
 * cluster.h -- this node among the others behind a balancer that hashes on the pubkey (nginx's `hash $key
 * consistent`): the ring they share, the owner of each key, and what keyed answers say about it. Requests that
 * name a key other than in lowercase hex are sent to its canonical URL, so that the balancer can route them.
 */
#ifndef PFP_CLUSTER_H
#define PFP_CLUSTER_H

#include <h2o.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct cluster_options {
    const char *const *nodes; /* "host:port", exactly as in nginx's upstream block, in its order */
    size_t nnodes;
    const char *self;    /* one of them */
    uint64_t timeout_ms; /* for a picture asked of its owner */
    size_t max_bytes;    /* the largest answer taken from an owner */
};

struct cluster_stats {
    uint64_t owned;          /* keyed answers for keys this node owns */
    uint64_t not_owned;      /* ... for keys another node owns: the balancer did not route them here */
    uint64_t redirected;     /* requests sent to the key's canonical URL */
    uint64_t from_owner;     /* picture requests for another node's key answered with what its owner answered */
    uint64_t owner_failures; /* ... that its owner could not answer, answered here instead */
};

struct cluster;

/* NULL when there are no nodes (one machine alone). The options were checked by the configuration. */
struct cluster *cluster_new(const struct cluster_options *o);
void cluster_free(struct cluster *c);

size_t cluster_size(const struct cluster *c);
size_t cluster_self(const struct cluster *c);
const char *cluster_node(const struct cluster *c, size_t i);

/* The fraction of all keys node `i` owns. */
double cluster_share(const struct cluster *c, size_t i);

/* The node that owns `pubkey`: the one nginx picks for its lowercase hex while every node is up. */
size_t cluster_owner(const struct cluster *c, const uint8_t pubkey[32]);

/*
 * For a keyed route (/profile-pic/, /profile-banner/, /profile/) whose last path segment named `pubkey`: when
 * that segment is not its lowercase hex, answers 307 to the URL that is (the query kept) and returns true.
 * Otherwise adds X-Pfp-Owner and X-Served-By to the answer and returns false. With `c` NULL, returns false.
 */
bool cluster_route(struct cluster *c, h2o_req_t *req, const uint8_t pubkey[32]);

/*
 * Sets up the connections to the other nodes: a fetcher whose guard lets exactly their addresses through (names
 * are resolved now). Returns 0, or a negative errno with `err` saying why.
 */
int cluster_start(struct cluster *c, uv_loop_t *loop, char *err, size_t errlen);

/* Answers `req` here, after all: the owner could not. `ctx` is cluster_forward()'s copy, valid during the call. */
typedef void (*cluster_local_fn)(const void *ctx, h2o_req_t *req);

/*
 * For a picture request (GET or HEAD) for `pubkey`, which this node does not have cached: when another node owns
 * the key, asks it for the same URL (with the request's Accept and If-None-Match, and X-Pfp-Hop so that it answers
 * from itself) and answers with what it answered, returning true. When the owner cannot be reached, `local`
 * answers. Returns false, and does nothing, when this node owns the key, when the request came from another node,
 * when the owner failed moments ago, or when `c` is NULL. `ctx` (`ctxlen` bytes) is copied.
 */
bool cluster_forward(struct cluster *c, h2o_req_t *req, const uint8_t pubkey[32], cluster_local_fn local,
                     const void *ctx, size_t ctxlen);

/*
 * For a request for a file by its hash, which this node does not hold: asks each other node in turn (as
 * cluster_forward() asks the owner) and answers with the first answer that is not a 404; `none` answers when no
 * node has it. Returns false, and does nothing, when there is no other node to ask, or the request came from one.
 */
bool cluster_ask_others(struct cluster *c, h2o_req_t *req, cluster_local_fn none, const void *ctx, size_t ctxlen);

/* Requests waiting for an owner are answered 503; no more are forwarded. Idempotent; accepts NULL. */
void cluster_shutdown(struct cluster *c);

/* Whether the node's name is a cluster_nodes entry: "host:port" with a port from 1 to 65535. */
bool cluster_valid_node(const char *s);

void cluster_stats(const struct cluster *c, struct cluster_stats *out);

#endif
