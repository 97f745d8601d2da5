/* inbox.h -- hands results from other threads back to the event loop, in order, through one uv_async. */
#ifndef PFP_INBOX_H
#define PFP_INBOX_H

#include <pthread.h>
#include <uv.h>

/* Embed in whatever travels back; `cb` runs on the loop thread and owns the item from then on. */
struct inbox_item {
    struct inbox_item *next;
    void (*cb)(struct inbox_item *item);
};

struct inbox {
    uv_async_t async;
    pthread_mutex_t lock;
    struct inbox_item *head, *tail;
};

/* Returns 0 or a negative libuv error. */
int inbox_init(struct inbox *ib, uv_loop_t *loop);

/* Queues `item` for the loop. Safe from any thread. */
void inbox_post(struct inbox *ib, struct inbox_item *item);

/* Runs whatever is queued now, on the loop thread. */
void inbox_drain(struct inbox *ib);

/* Runs what is queued, then closes the async handle; the inbox must outlive the loop iteration that closes it. */
void inbox_close(struct inbox *ib);

#endif
