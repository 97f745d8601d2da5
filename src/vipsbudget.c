/* vipsbudget.c -- the time and memory budgets of libvips work: a watchdog thread that stops a pipeline past its
 * deadline, and memory reservations that make a picture wait for room rather than be refused. */
#include "vipsbudget.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "clock.h"

/* The state the image threads share, under `lock`. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;  /* for the watchdog: a new deadline, or stop */
    pthread_cond_t freed; /* memory given back */
    pthread_t watchdog;
    bool watching, stopping;
    struct vipsbudget *watched;
    int64_t memory_used;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

static struct timespec mono_timespec(uint64_t ns)
{
    return (struct timespec){.tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u)};
}

static void *watchdog_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g.lock);
    while (!g.stopping) {
        uint64_t now = clock_mono_ns(), next = UINT64_MAX;

        for (struct vipsbudget *b = g.watched; b != NULL; b = b->next) {
            if (b->expired)
                continue;
            if (b->deadline_ns <= now) {
                b->expired = true;
                if (b->image != NULL)
                    vips_image_set_kill(b->image, TRUE);
            } else if (b->deadline_ns < next) {
                next = b->deadline_ns;
            }
        }
        if (next == UINT64_MAX) {
            pthread_cond_wait(&g.wake, &g.lock);
        } else {
            struct timespec until = mono_timespec(next);
            pthread_cond_timedwait(&g.wake, &g.lock, &until);
        }
    }
    pthread_mutex_unlock(&g.lock);
    return NULL;
}

void vipsbudget_start(struct vipsbudget *b, int timeout_ms)
{
    if (timeout_ms <= 0)
        return;
    pthread_mutex_lock(&g.lock);
    b->deadline_ns = clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    b->prev = NULL;
    b->next = g.watched;
    if (g.watched != NULL)
        g.watched->prev = b;
    g.watched = b;
    pthread_cond_signal(&g.wake);
    pthread_mutex_unlock(&g.lock);
}

void vipsbudget_watch(struct vipsbudget *b, VipsImage *im)
{
    VipsImage *old;

    if (b->deadline_ns == 0)
        return;
    g_object_ref(im);
    pthread_mutex_lock(&g.lock);
    old = b->image;
    b->image = im;
    if (b->expired)
        vips_image_set_kill(im, TRUE);
    pthread_mutex_unlock(&g.lock);
    if (old != NULL)
        g_object_unref(old);
}

bool vipsbudget_stop(struct vipsbudget *b)
{
    bool expired;

    if (b->deadline_ns == 0)
        return false;
    pthread_mutex_lock(&g.lock);
    if (b->prev != NULL)
        b->prev->next = b->next;
    else
        g.watched = b->next;
    if (b->next != NULL)
        b->next->prev = b->prev;
    expired = b->expired;
    pthread_mutex_unlock(&g.lock);
    if (b->image != NULL)
        g_object_unref(b->image);
    b->image = NULL;
    b->deadline_ns = 0;
    return expired;
}

void vipsbudget_reserve(struct vipsbudget *b, int64_t need, int64_t limit)
{
    pthread_mutex_lock(&g.lock);
    while (g.memory_used + need > limit)
        pthread_cond_wait(&g.freed, &g.lock);
    g.memory_used += need;
    b->reserved = need;
    pthread_mutex_unlock(&g.lock);
}

void vipsbudget_release(struct vipsbudget *b)
{
    if (b->reserved == 0)
        return;
    pthread_mutex_lock(&g.lock);
    g.memory_used -= b->reserved;
    b->reserved = 0;
    pthread_cond_broadcast(&g.freed);
    pthread_mutex_unlock(&g.lock);
}

int vipsbudget_init(void)
{
    pthread_condattr_t attr;

    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g.wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_cond_init(&g.freed, NULL);
    if (pthread_create(&g.watchdog, NULL, watchdog_main, NULL) != 0)
        return -EAGAIN;
    g.watching = true;
    return 0;
}

void vipsbudget_free(void)
{
    if (!g.watching)
        return;
    pthread_mutex_lock(&g.lock);
    g.stopping = true;
    pthread_cond_signal(&g.wake);
    pthread_mutex_unlock(&g.lock);
    pthread_join(g.watchdog, NULL);
    g.watching = false;
}
