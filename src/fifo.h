/*
 * fifo.h -- a FIFO between threads: an intrusive list under a mutex, with a
 * condition variable for waiting; urgent items go ahead of the others.
 */
#ifndef PFP_FIFO_H
#define PFP_FIFO_H

#include <h2o/linklist.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

/* Embed in whatever is queued; the queue only links it. */
struct fifo_item {
    h2o_linklist_t _link;
};

/* The fields are private; the queue may be embedded. */
struct fifo {
    pthread_mutex_t _lock;
    pthread_cond_t _cond;
    h2o_linklist_t _urgent; /* popped before _items */
    h2o_linklist_t _items;
    size_t _length; /* of both lists */
    bool _closed;
};

/* Returns 0, or a negative errno when the mutex or condition variable cannot be made. */
int fifo_init(struct fifo *q);

/*
 * Appends `item` and wakes one waiter. Any thread. Returns 0, or -ESHUTDOWN
 * after fifo_shutdown(), in which case the item stays the caller's.
 */
int fifo_push(struct fifo *q, struct fifo_item *item);

/* As fifo_push(), but `item` goes after the urgent items already queued and ahead of every other. */
int fifo_push_urgent(struct fifo *q, struct fifo_item *item);

/*
 * Makes `item`, pushed with fifo_push(), urgent if it is still queued. Returns
 * 0, or -ENOENT when it is not waiting among the others (popped, or urgent
 * already). Any thread; it looks through the items waiting, so it suits short queues.
 */
int fifo_promote(struct fifo *q, struct fifo_item *item);

/*
 * Moves up to `max` items, urgent ones first and oldest first, to the end of the list `out` (an
 * initialised anchor) and returns how many. With `wait`, blocks until there is
 * at least one or the queue is closed; a closed queue still gives what it holds,
 * and 0 once it is empty. Items are then the caller's. Any thread.
 */
size_t fifo_pop(struct fifo *q, h2o_linklist_t *out, size_t max, bool wait);

/* The items waiting now. Any thread. */
size_t fifo_length(struct fifo *q);

/* Refuses further pushes and wakes every waiter; what is queued can still be popped. Idempotent. */
void fifo_shutdown(struct fifo *q);

/* Releases the mutex and condition variable; the queue must be empty and no thread waiting on it. */
void fifo_free(struct fifo *q);

#endif
