/* workpool.c -- a fixed number of threads for CPU-heavy work. */
#include "workpool.h"

#include <assert.h>
#include <errno.h>
#include <h2o/memory.h>
#include <stdlib.h>
#include <unistd.h>

static void on_done(struct inbox_item *item)
{
    struct work *w = H2O_STRUCT_FROM_MEMBER(struct work, item, item);
    w->done(w);
}

static void *worker(void *arg)
{
    struct workpool *p = arg;
    h2o_linklist_t one;

    h2o_linklist_init_anchor(&one);
    while (fifo_pop(&p->_queue, &one, 1, true) == 1) {
        struct work *w = H2O_STRUCT_FROM_MEMBER(struct work, item._q._link, one.next);
        void (*done)(struct work *) = w->done;

        h2o_linklist_unlink(&w->item._q._link);
        w->run(w);
        /* Without `done`, `run` may have freed the job: it is not read again. */
        if (done != NULL) {
            w->item.cb = on_done;
            inbox_post(p->_inbox, &w->item);
        }
    }
    return NULL;
}

int workpool_init(struct workpool *p, size_t nthreads, struct inbox *inbox)
{
    int r;

    if (nthreads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = n > 0 ? (size_t)n : 1;
    }
    p->_nthreads = 0;
    p->_joined = false;
    p->_inbox = inbox;
    if ((r = fifo_init(&p->_queue)) != 0)
        return r;
    if ((p->_threads = calloc(nthreads, sizeof(pthread_t))) == NULL) {
        fifo_free(&p->_queue);
        return -ENOMEM;
    }
    for (; p->_nthreads < nthreads; p->_nthreads++) {
        if ((r = pthread_create(&p->_threads[p->_nthreads], NULL, worker, p)) != 0) {
            workpool_free(p);
            return -r;
        }
    }
    return 0;
}

void workpool_submit(struct workpool *p, struct work *w)
{
    int r = fifo_push(&p->_queue, &w->item._q);

    assert(r == 0);
    (void)r;
}

void workpool_submit_urgent(struct workpool *p, struct work *w)
{
    int r = fifo_push_urgent(&p->_queue, &w->item._q);

    assert(r == 0);
    (void)r;
}

void workpool_promote(struct workpool *p, struct work *w)
{
    fifo_promote(&p->_queue, &w->item._q);
}

void workpool_shutdown(struct workpool *p)
{
    if (p->_threads == NULL || p->_joined)
        return;
    fifo_shutdown(&p->_queue);
    for (size_t i = 0; i < p->_nthreads; i++)
        pthread_join(p->_threads[i], NULL);
    p->_joined = true;
}

void workpool_free(struct workpool *p)
{
    if (p->_threads == NULL)
        return;
    workpool_shutdown(p);
    fifo_free(&p->_queue);
    free(p->_threads);
    p->_threads = NULL;
    p->_nthreads = 0;
    p->_joined = false;
}

size_t workpool_threads(const struct workpool *p)
{
    return p->_nthreads;
}
