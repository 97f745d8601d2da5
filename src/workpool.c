/* workpool.c -- a fixed number of threads for CPU-heavy work. */
#include "workpool.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static void on_done(struct inbox_item *item)
{
    struct work *w = (struct work *)item;
    w->done(w);
}

static void *worker(void *arg)
{
    struct workpool *p = arg;

    for (;;) {
        struct work *w;

        pthread_mutex_lock(&p->lock);
        while (p->head == NULL && !p->stopping)
            pthread_cond_wait(&p->cond, &p->lock);
        w = p->head;
        if (w == NULL) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        p->head = w->next;
        if (p->head == NULL)
            p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->lock);

        w->run(w);
        w->item.cb = on_done;
        inbox_post(p->inbox, &w->item);
    }
}

int workpool_init(struct workpool *p, size_t nthreads, struct inbox *inbox)
{
    if (nthreads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = n > 0 ? (size_t)n : 1;
    }
    p->head = p->tail = NULL;
    p->queued = 0;
    p->stopping = false;
    p->inbox = inbox;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->threads = calloc(nthreads, sizeof(pthread_t));
    if (p->threads == NULL)
        return -ENOMEM;
    for (p->nthreads = 0; p->nthreads < nthreads; p->nthreads++) {
        int r = pthread_create(&p->threads[p->nthreads], NULL, worker, p);
        if (r != 0) {
            workpool_stop(p);
            return -r;
        }
    }
    return 0;
}

void workpool_submit(struct workpool *p, struct work *w)
{
    w->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->tail != NULL)
        p->tail->next = w;
    else
        p->head = w;
    p->tail = w;
    p->queued++;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

void workpool_stop(struct workpool *p)
{
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    p->threads = NULL;
    p->nthreads = 0;
}
