/* fifo.c -- a FIFO between threads, urgent items first. */
#include "fifo.h"

#include <assert.h>
#include <errno.h>

int fifo_init(struct fifo *q)
{
    int r;

    if ((r = pthread_mutex_init(&q->_lock, NULL)) != 0)
        return -r;
    if ((r = pthread_cond_init(&q->_cond, NULL)) != 0) {
        pthread_mutex_destroy(&q->_lock);
        return -r;
    }
    h2o_linklist_init_anchor(&q->_urgent);
    h2o_linklist_init_anchor(&q->_items);
    q->_length = 0;
    q->_closed = false;
    return 0;
}

static int push(struct fifo *q, h2o_linklist_t *list, struct fifo_item *item)
{
    pthread_mutex_lock(&q->_lock);
    if (q->_closed) {
        pthread_mutex_unlock(&q->_lock);
        return -ESHUTDOWN;
    }
    /* The item's link may hold anything: it is the caller's memory, perhaps reused. */
    item->_link.next = item->_link.prev = NULL;
    h2o_linklist_insert(list, &item->_link);
    q->_length++;
    pthread_cond_signal(&q->_cond);
    pthread_mutex_unlock(&q->_lock);
    return 0;
}

int fifo_push(struct fifo *q, struct fifo_item *item)
{
    return push(q, &q->_items, item);
}

int fifo_push_urgent(struct fifo *q, struct fifo_item *item)
{
    return push(q, &q->_urgent, item);
}

int fifo_promote(struct fifo *q, struct fifo_item *item)
{
    int r = -ENOENT;

    pthread_mutex_lock(&q->_lock);
    for (h2o_linklist_t *l = q->_items.next; l != &q->_items; l = l->next) {
        if (l == &item->_link) {
            h2o_linklist_unlink(l);
            h2o_linklist_insert(&q->_urgent, l);
            r = 0;
            break;
        }
    }
    pthread_mutex_unlock(&q->_lock);
    return r;
}

size_t fifo_pop(struct fifo *q, h2o_linklist_t *out, size_t max, bool wait)
{
    size_t n = 0;

    pthread_mutex_lock(&q->_lock);
    while (wait && q->_length == 0 && !q->_closed)
        pthread_cond_wait(&q->_cond, &q->_lock);
    if (max >= q->_length) {
        /* Everything at once: two splices, however long the queue. */
        n = q->_length;
        h2o_linklist_insert_list(out, &q->_urgent);
        h2o_linklist_insert_list(out, &q->_items);
    } else {
        for (; n < max; n++) {
            h2o_linklist_t *first = h2o_linklist_is_empty(&q->_urgent) ? q->_items.next : q->_urgent.next;
            h2o_linklist_unlink(first);
            h2o_linklist_insert(out, first);
        }
    }
    q->_length -= n;
    pthread_mutex_unlock(&q->_lock);
    return n;
}

size_t fifo_length(struct fifo *q)
{
    size_t n;

    pthread_mutex_lock(&q->_lock);
    n = q->_length;
    pthread_mutex_unlock(&q->_lock);
    return n;
}

void fifo_shutdown(struct fifo *q)
{
    pthread_mutex_lock(&q->_lock);
    q->_closed = true;
    pthread_cond_broadcast(&q->_cond);
    pthread_mutex_unlock(&q->_lock);
}

void fifo_free(struct fifo *q)
{
    assert(q->_length == 0);
    pthread_cond_destroy(&q->_cond);
    pthread_mutex_destroy(&q->_lock);
}
