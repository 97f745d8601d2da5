/* inbox.c -- results from other threads, run on the event loop. */
#include "inbox.h"

#include <h2o/memory.h>
#include <stdint.h>

void inbox_drain(struct inbox *ib)
{
    h2o_linklist_t items;

    h2o_linklist_init_anchor(&items);
    fifo_pop(&ib->_queue, &items, SIZE_MAX, false);
    while (!h2o_linklist_is_empty(&items)) {
        struct inbox_item *item = H2O_STRUCT_FROM_MEMBER(struct inbox_item, _q._link, items.next);
        h2o_linklist_unlink(&item->_q._link);
        item->cb(item);
    }
}

static void on_async(uv_async_t *a)
{
    inbox_drain(a->data);
}

int inbox_init(struct inbox *ib, uv_loop_t *loop)
{
    int r;

    if ((r = fifo_init(&ib->_queue)) != 0)
        return r;
    if ((r = uv_async_init(loop, &ib->_async, on_async)) != 0) {
        fifo_free(&ib->_queue);
        return r;
    }
    ib->_async.data = ib;
    return 0;
}

void inbox_post(struct inbox *ib, struct inbox_item *item)
{
    if (fifo_push(&ib->_queue, &item->_q) == 0)
        uv_async_send(&ib->_async);
}

void inbox_free(struct inbox *ib)
{
    inbox_drain(ib);
    fifo_shutdown(&ib->_queue);
    /* Items posted between the drain and the close still run. */
    inbox_drain(ib);
    if (!uv_is_closing((uv_handle_t *)&ib->_async))
        uv_close((uv_handle_t *)&ib->_async, NULL);
}
