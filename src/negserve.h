/*
 * negserve.h -- NIP-77 served on the relay's connections: NEG-OPEN, NEG-MSG and NEG-CLOSE answered from the
 * stored events. Each session's records are read off the loop, in a read transaction of their own; sessions are
 * bounded in number per connection, in records, and in idle time.
 */
#ifndef PFP_NEGSERVE_H
#define PFP_NEGSERVE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"

struct store;
struct workpool;

struct negserve_options {
    size_t max_sessions;     /* open at once on one connection */
    size_t max_records;      /* a session over more is refused with "blocked: too many records" */
    uint32_t idle_ms;        /* a session that hears nothing this long is closed */
    uint32_t max_limit;      /* as for REQ, to parse filters (whose limits do not apply to a set) */
    size_t max_subid_length; /* as for REQ */
};

struct negserve_stats {
    uint64_t sessions_total; /* NEG-OPENs that became sessions */
    uint64_t sessions_open;  /* now */
    uint64_t round_trips;    /* NEG-OPEN and NEG-MSG answered with a NEG-MSG */
    uint64_t records;        /* records read for sessions */
    uint64_t bytes_in;       /* negentropy messages received, in bytes (not hex) */
    uint64_t bytes_out;      /* ... sent */
    uint64_t errors;         /* NEG-ERR sent */
};

/* Sends one message (JSON text) to the connection. */
typedef void (*negserve_send_fn)(void *ctx, const struct buf *msg);

struct negserve;
struct negserve_peer;

/* `store` and `reads` (where the records are read) must outlive it. Returns 0 (allocation failure aborts). */
int negserve_init(struct negserve **out, uv_loop_t *loop, struct store *store, struct workpool *reads,
                  const struct negserve_options *o);

/* A connection's sessions, sent through `send`. */
struct negserve_peer *negserve_peer_new(struct negserve *ns, negserve_send_fn send, void *ctx);

/* The connection has gone: its sessions end (a read under way is dropped when it comes back). Accepts NULL. */
void negserve_peer_free(struct negserve_peer *p);

/*
 * Answers `msg`, a message whose type `verb` is NEG-OPEN, NEG-MSG or NEG-CLOSE; returns false, doing nothing, for
 * any other type.
 */
bool negserve_handle(struct negserve_peer *p, const char *verb, const json_t *msg);

/* Stops the idle timer: no session is closed for idleness after this. Idempotent. */
void negserve_shutdown(struct negserve *ns);

/* Once the reads have come back; the memory goes when the loop next runs. Kept while a peer remains. */
void negserve_free(struct negserve *ns);

void negserve_stats(const struct negserve *ns, struct negserve_stats *out);

#endif
