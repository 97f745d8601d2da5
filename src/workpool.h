/* workpool.h -- a fixed number of threads for CPU-heavy work, with results back on the loop. */
#ifndef PFP_WORKPOOL_H
#define PFP_WORKPOOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "inbox.h"

/* Embed in the job. `run` runs on a pool thread; then `done` runs on the loop thread and owns the job again. */
struct work {
    struct inbox_item item;
    void (*run)(struct work *w);
    void (*done)(struct work *w);
    struct work *next;
};

struct workpool {
    pthread_t *threads;
    size_t nthreads;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct work *head, *tail;
    size_t queued; /* waiting, not yet running */
    bool stopping;
    struct inbox *inbox;
};

/* Starts `nthreads` threads (0: one per online CPU). Returns 0 or -errno. */
int workpool_init(struct workpool *p, size_t nthreads, struct inbox *inbox);

/* Queues `w`. Loop thread. */
void workpool_submit(struct workpool *p, struct work *w);

/* Lets the threads finish what is queued, then joins them. Loop thread; `done`s arrive through the inbox. */
void workpool_stop(struct workpool *p);

#endif
