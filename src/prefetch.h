/*
 * prefetch.h -- the fetch-ahead queue: pubkeys whose picture is worth caching
 * before anyone asks (a new profile, a stale entry), so that noticing one costs
 * only an append; a bounded number are worked on at a time.
 */
#ifndef PFP_PREFETCH_H
#define PFP_PREFETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/*
 * Begins working on one queued pubkey. Returns true when it started work that
 * will end with prefetch_done() (perhaps before this returns), false when there
 * was nothing to do. `kind0_at`: the new profile's created_at, 0 for a refresh.
 */
typedef bool (*prefetch_start_fn)(void *ctx, const uint8_t pubkey[32], bool refresh, int64_t kind0_at);

struct prefetch_options {
    size_t max_queued;  /* pubkeys waiting; more are dropped */
    size_t max_running; /* started and not yet done */
};

struct prefetch_stats {
    uint64_t dropped; /* not queued: the queue was full */
    uint64_t queued, running;
};

struct prefetch;

/* Prepares an empty queue on `loop` that hands pubkeys to `start`. Returns 0 (allocation failure aborts). */
int prefetch_init(struct prefetch **out, uv_loop_t *loop, const struct prefetch_options *o, prefetch_start_fn start,
                  void *ctx);

/* Queues `pubkey` unless it is queued already, the queue is full or it is shut down. Returns whether it was queued. */
bool prefetch_add(struct prefetch *q, const uint8_t pubkey[32], bool refresh, int64_t kind0_at);

/* Work that `start` began has ended: another may begin. */
void prefetch_done(struct prefetch *q);

/* Begins nothing more. Idempotent. */
void prefetch_shutdown(struct prefetch *q);

/* Closes the timer and frees the queue once the loop has run the close callback (after shutdown). */
void prefetch_free(struct prefetch *q);

void prefetch_stats(const struct prefetch *q, struct prefetch_stats *out);

#endif
