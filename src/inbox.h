/* inbox.h -- hands results from other threads back to the event loop, in order, through one uv_async. */
#ifndef PFP_INBOX_H
#define PFP_INBOX_H

#include <uv.h>

#include "fifo.h"

/* Embed in whatever travels back; `cb` runs on the loop thread and owns the item from then on. */
struct inbox_item {
    struct fifo_item _q;
    void (*cb)(struct inbox_item *item);
};

/* The fields are private. */
struct inbox {
    uv_async_t _async;
    struct fifo _queue;
};

/* Returns 0, or a negative errno or libuv error. Loop thread. */
int inbox_init(struct inbox *ib, uv_loop_t *loop);

/* Queues `item` for the loop. Safe from any thread; after inbox_free() the item is dropped and stays the caller's. */
void inbox_post(struct inbox *ib, struct inbox_item *item);

/* Runs whatever is queued now, on the loop thread. */
void inbox_drain(struct inbox *ib);

/*
 * Runs what is queued, refuses further items, then closes the async handle;
 * the inbox must outlive the loop iteration that closes it. Idempotent.
 */
void inbox_free(struct inbox *ib);

#endif
