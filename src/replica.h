/*
 * replica.h -- the profiles every node of a cluster holds: each event a client gives this node is passed to every
 * other node over its persistent connection (the upstream machinery, EVENT), and each time a connection to
 * another node opens, a NIP-77 sync of profiles, contact lists and relay lists with it catches up on what was
 * missed while either was away.
 */
#ifndef PFP_REPLICA_H
#define PFP_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_view;
struct jobs;
struct upstream;

struct replica_options {
    struct upstream *up; /* the other nodes are its relays first .. first + n - 1 */
    size_t first, n;
    const char *const *nodes;     /* their cluster_nodes names, n of them, outliving the replica */
    const char *const *sync_urls; /* ... the ws:// URL each is synced with, n of them */
    struct jobs *jobs;            /* where the catch-up syncs run */
    const char *filter;           /* what they reconcile (JSON text, outliving the replica) */
};

struct replica_peer_stats {
    const char *node;
    bool connected;
    uint64_t catchups; /* syncs started with it because its connection opened */
};

struct replica_stats {
    uint64_t forwarded; /* events sent to another node */
    uint64_t unsent;    /* ... not sent, the node being away: its catch-up sync brings them */
};

struct replica;

/* Hears of the connections to the other nodes: call before upstream_start(). */
struct replica *replica_new(const struct replica_options *o);

/* Passes `ev`, which a client gave this node and which was newly stored, to every other node. */
void replica_forward(struct replica *rp, const struct event_view *ev);

/* These two accept NULL: a cluster of one node. */
size_t replica_peers(const struct replica *rp);
void replica_peer_stats(const struct replica *rp, size_t i, struct replica_peer_stats *out);
void replica_stats(const struct replica *rp, struct replica_stats *out);

/* Starts no more syncs. Idempotent; accepts NULL. */
void replica_shutdown(struct replica *rp);
/* After the upstream's connections have closed (they call into the replica until then). Accepts NULL. */
void replica_free(struct replica *rp);

#endif
