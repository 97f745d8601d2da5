/*
 * lookup.h -- the newest event of a pubkey and kind, from the relays in turn: the upstream relays (indexers), then
 * together the pubkey's write relays (its kind 10002, found the same way) and the relays hinted for it. Coalesced
 * per pubkey and kind across every stage, batched per relay, verified, stored.
 */
#ifndef PFP_LOOKUP_H
#define PFP_LOOKUP_H

#include <h2o/linklist.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "event.h"
#include "ingest.h"
#include "metrics.h"
#include "store.h"
#include "upstream.h"

struct lookup;
struct lookup_entry;
struct relaybook;

/*
 * A caller's wait for one (pubkey, kind), embedded in the caller's own struct.
 * `cb` runs once, on the loop thread and never from inside lookup_get(): with the
 * newest valid event the relays had (already stored, so the local relay serves
 * it from then on), or NULL when none had one, none answered in time, or there
 * are no upstream relays. `ev` is valid only during the call.
 */
struct lookup_waiter {
    void (*cb)(struct lookup_waiter *w, const struct event_view *ev);
    struct lookup_entry *_entry; /* NULL while on the lookup's list of answers to give */
    h2o_linklist_t _link;
};

struct lookup_options {
    uint64_t timeout_ms;   /* a batch's answers are awaited this long at most */
    uint64_t grace_ms;     /* once an event is found, newer versions from other relays are awaited this long */
    uint64_t batch_ms;     /* lookups asked within this window go out together */
    size_t max_concurrent; /* batches asked of the upstream relays at once; more wait their turn */
    /* The outbox stage, for kinds 0, 3 and 10002; off without a book (hints only with no write relay to try). */
    struct relaybook *book;   /* the discovered relays' records: who is skipped, who is tried first */
    size_t max_outbox_relays; /* write relays of a pubkey tried at most */
    /* The last `npeers` upstream relays are the cluster's other nodes: asked first, the others only for what they
       did not have. */
    size_t npeers;
};

/* Where a lookup's answer came from. */
enum lookup_tier {
    LOOKUP_TIER_LOCAL,    /* stored here already (counted by the callers that look first: lookup_count_local()) */
    LOOKUP_TIER_UPSTREAM, /* an upstream relay */
    LOOKUP_TIER_OUTBOX,   /* a write relay of the pubkey's kind 10002 */
    LOOKUP_TIER_HINT,     /* a relay hinted for it */
    LOOKUP_TIERS
};

struct lookup_stats {
    uint64_t requested;      /* lookup_get() calls */
    uint64_t coalesced;      /* ... that joined a lookup already under way */
    uint64_t negative_hits;  /* ... answered "none" from memory of a recent miss */
    uint64_t queries;        /* batches asked of the upstream relays */
    uint64_t outbox_queries; /* batches asked of discovered relays (one relay each) */
    uint64_t found, not_found, timed_out;
    uint64_t by_tier[LOOKUP_TIERS];  /* answers found, by where */
    uint64_t skipped_backoff;        /* write relays and hints not asked for their record */
    const struct histogram *latency; /* seconds from the first ask to the answer; lives as long as the lookup */
};

/*
 * Sets the lookup up in `*out`: it asks the relays of `up` (it becomes their
 * handler; start them with upstream_start()), passes what they send through
 * `ingest` and reads `store`. All must outlive it. Returns 0.
 */
int lookup_init(struct lookup **out, uv_loop_t *loop, const struct lookup_options *opt, struct upstream *up,
                struct ingest *ingest, struct store *store);

/* Looks up the newest event of `pubkey` and `kind`; `w->cb` must be set. The waiter stays the caller's. */
void lookup_get(struct lookup *lk, const uint8_t pubkey[32], uint32_t kind, struct lookup_waiter *w);

/*
 * Remembers that `pubkey`'s events may be on `url` (from an nprofile, a NIP-05 document or an event): the next
 * lookups of it that find nothing upstream ask there too, and a miss remembered for it is forgotten. Bounded:
 * a few per pubkey, the oldest pubkeys forgotten first. URLs that are not ws:// or wss:// are ignored.
 */
void lookup_hint(struct lookup *lk, const uint8_t pubkey[32], const char *url);

/* lookup_hint() with the lookup as a `void *`: the hint callback of parsers that find relays. */
void lookup_hint_to(void *lk, const uint8_t pubkey[32], const char *url);

/* Counts an answer a caller found stored here before it would have looked up, for the tier figures. NULL: none. */
void lookup_count_local(struct lookup *lk);

/* Withdraws a waiter whose callback has not run; its callback will not run. */
void lookup_cancel(struct lookup *lk, struct lookup_waiter *w);

/* Whether there are relays to ask at all: upstream ones, or the outbox stage. */
bool lookup_enabled(const struct lookup *lk);

/* Whether lookup_shutdown() has been called: every lookup is answered "none" from then on. */
bool lookup_closing(const struct lookup *lk);

void lookup_stats(const struct lookup *lk, struct lookup_stats *out);

/* Answers every waiter with NULL and takes no more work; call before the upstream connections close. Idempotent. */
void lookup_shutdown(struct lookup *lk);

/*
 * Releases the lookup once the events it submitted are through the pipeline
 * (the verify pool stopped, the store closed); the memory goes once the loop has
 * run the close callbacks.
 */
void lookup_free(struct lookup *lk);

#endif
