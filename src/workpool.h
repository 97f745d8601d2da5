/* workpool.h -- a fixed number of threads for CPU-heavy work, with results back on the loop. */
#ifndef PFP_WORKPOOL_H
#define PFP_WORKPOOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "inbox.h"
#include "fifo.h"

/*
 * Embed in the job. `run` runs on a pool thread; then `done` runs on the loop
 * thread and owns the job again. With `done` NULL nothing comes back: the job
 * is run's from then on.
 */
struct work {
    struct inbox_item item;
    void (*run)(struct work *w);
    void (*done)(struct work *w);
};

/* The fields are private; a zeroed workpool may be stopped. */
struct workpool {
    pthread_t *_threads;
    size_t _nthreads;
    struct fifo _queue;
    struct inbox *_inbox;
    bool _joined; /* workpool_shutdown() has joined the threads */
};

/* Starts `nthreads` threads (0: one per online CPU). Returns 0, -ENOMEM, or another negative errno. */
int workpool_init(struct workpool *p, size_t nthreads, struct inbox *inbox);

/* How many threads the pool runs. */
size_t workpool_threads(const struct workpool *p);

/* Queues `w`, run in submission order by the first free thread. Any thread, before workpool_shutdown(). */
void workpool_submit(struct workpool *p, struct work *w);

/* As workpool_submit(), but ahead of the work queued with it: someone is waiting for this. */
void workpool_submit_urgent(struct workpool *p, struct work *w);

/*
 * Moves `w`, queued with workpool_submit(), ahead as if it had been submitted
 * urgent, unless a thread has taken it already. Looks through the queue: for
 * pools whose queue stays short. Any thread.
 */
void workpool_promote(struct workpool *p, struct work *w);

/*
 * Lets the threads finish what is queued, then joins them. Loop thread; `done`s
 * arrive through the inbox. Idempotent, and a no-op on a zeroed workpool.
 */
void workpool_shutdown(struct workpool *p);

/* Shuts the pool down if that has not been done, and releases it. A zeroed workpool may be freed. */
void workpool_free(struct workpool *p);

#endif
