/* lookup.h -- the newest event of a pubkey and kind from the upstream relays: coalesced, batched, verified, stored. */
#ifndef PFP_LOOKUP_H
#define PFP_LOOKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "metrics.h"
#include "store.h"
#include "upstream.h"
#include "workpool.h"

struct lookup_entry;

/*
 * A caller's wait for one (pubkey, kind), embedded in the caller's own struct.
 * `cb` runs once, on the loop thread and never from inside lookup_get(): with the
 * newest valid event the relays had (already stored, so the local relay serves
 * it from then on), or NULL when none had one, none answered in time, or there
 * are no upstream relays. `ev` is valid only during the call.
 */
struct lookup_waiter {
    void (*cb)(struct lookup_waiter *w, const struct event_view *ev);
    struct lookup_entry *entry; /* the rest is the lookup's */
    struct lookup_waiter *prev, *next;
    bool ready;
};

struct lookup_stats {
    uint64_t requested;     /* lookup_get() calls */
    uint64_t coalesced;     /* ... that joined a lookup already under way */
    uint64_t negative_hits; /* ... answered "none" from memory of a recent miss */
    uint64_t queries;       /* batches asked of the relays */
    uint64_t found, not_found, timed_out;
};

struct lookup_query;
struct lookup_negative;
struct keymap;

struct lookup {
    uv_loop_t *loop;
    const struct config *cfg;
    struct upstream *up;
    struct store *store;
    struct workpool *verify;
    struct keymap *active;   /* (kind, pubkey) -> entry under way */
    struct keymap *negative; /* (kind, pubkey) -> recent "none found" */
    struct lookup_negative *neg_oldest, *neg_newest;
    struct lookup_entry *batch; /* entries waiting for the batch timer */
    size_t nbatch;
    struct lookup_query *queued; /* batches waiting for a free slot (max_concurrent) */
    struct lookup_query *running;
    size_t nrunning;
    uint64_t next_query_id;
    struct lookup_waiter *ready; /* answered, to be called back from the loop */
    uv_timer_t batch_timer, ready_timer;
    bool closing;
    struct lookup_stats stats;
    struct histogram latency; /* seconds from the first ask to the answer, per (pubkey, kind) looked up */
};

/* Sets the lookup up and registers with `up` (whose connections it then uses). All must outlive it. */
void lookup_init(struct lookup *lk, uv_loop_t *loop, const struct config *cfg, struct upstream *up, struct store *store,
                 struct workpool *verify);

/* Looks up the newest event of `pubkey` and `kind`; `w->cb` must be set. The waiter stays the caller's. */
void lookup_get(struct lookup *lk, const uint8_t pubkey[32], uint32_t kind, struct lookup_waiter *w);

/* Withdraws a waiter whose callback has not run; its callback will not run. */
void lookup_cancel(struct lookup *lk, struct lookup_waiter *w);

/* Answers every waiter with NULL and stops; call before the upstream connections close. */
void lookup_shutdown(struct lookup *lk);

#endif
