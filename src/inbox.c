/* inbox.c -- results from other threads, run on the event loop. */
#include "inbox.h"

#include <stddef.h>

void inbox_drain(struct inbox *ib)
{
    struct inbox_item *item;

    pthread_mutex_lock(&ib->lock);
    item = ib->head;
    ib->head = ib->tail = NULL;
    pthread_mutex_unlock(&ib->lock);

    while (item != NULL) {
        struct inbox_item *next = item->next;
        item->cb(item);
        item = next;
    }
}

static void on_async(uv_async_t *a)
{
    inbox_drain(a->data);
}

int inbox_init(struct inbox *ib, uv_loop_t *loop)
{
    int r;

    ib->head = ib->tail = NULL;
    pthread_mutex_init(&ib->lock, NULL);
    if ((r = uv_async_init(loop, &ib->async, on_async)) != 0)
        return r;
    ib->async.data = ib;
    return 0;
}

void inbox_post(struct inbox *ib, struct inbox_item *item)
{
    item->next = NULL;
    pthread_mutex_lock(&ib->lock);
    if (ib->tail != NULL)
        ib->tail->next = item;
    else
        ib->head = item;
    ib->tail = item;
    pthread_mutex_unlock(&ib->lock);
    uv_async_send(&ib->async);
}

void inbox_close(struct inbox *ib)
{
    inbox_drain(ib);
    if (!uv_is_closing((uv_handle_t *)&ib->async))
        uv_close((uv_handle_t *)&ib->async, NULL);
}
