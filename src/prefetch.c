/*
 * prefetch.c -- the fetch-ahead queue: pubkeys whose picture is worth caching
 * before anyone asks (a new profile, a stale entry), so that noticing one costs
 * only an append; a bounded number are worked on at a time.
 */
#include "prefetch.h"

#include <stdlib.h>
#include <string.h>

#include "keymap.h"

struct item {
    uint8_t pubkey[32];
    bool refresh;
    int64_t kind0_at;
};

struct prefetch {
    uv_timer_t timer; /* first: the close callback finds the queue from it */
    struct prefetch_options o;
    prefetch_start_fn start;
    void *ctx;
    struct item *ring; /* max_queued items from `head`, `len` of them in use */
    size_t head, len;
    struct keymap *queued; /* pubkey -> its item, so that none is queued twice */
    size_t running;
    bool closing;
    struct prefetch_stats stats;
};

/* Hands queued pubkeys over while fewer than max_running are worked on; run from the loop, never from an append. */
static void on_timer(uv_timer_t *t)
{
    struct prefetch *q = t->data;

    while (!q->closing && q->len > 0 && q->running < q->o.max_running) {
        struct item it = q->ring[q->head];

        q->head = (q->head + 1) % q->o.max_queued;
        q->len--;
        keymap_del(q->queued, it.pubkey);
        /* Counted before it starts: it may end at once. */
        q->running++;
        if (!q->start(q->ctx, it.pubkey, it.refresh, it.kind0_at))
            q->running--;
    }
}

bool prefetch_add(struct prefetch *q, const uint8_t pubkey[32], bool refresh, int64_t kind0_at)
{
    struct item *it;

    if (q->closing || keymap_get(q->queued, pubkey) != NULL)
        return false;
    if (q->len == q->o.max_queued) {
        q->stats.dropped++;
        return false;
    }
    it = &q->ring[(q->head + q->len++) % q->o.max_queued];
    memcpy(it->pubkey, pubkey, 32);
    it->refresh = refresh;
    it->kind0_at = kind0_at;
    keymap_put(q->queued, pubkey, it);
    uv_timer_start(&q->timer, on_timer, 0, 0);
    return true;
}

void prefetch_done(struct prefetch *q)
{
    q->running--;
    if (!q->closing && q->len > 0)
        uv_timer_start(&q->timer, on_timer, 0, 0);
}

int prefetch_init(struct prefetch **out, uv_loop_t *loop, const struct prefetch_options *o, prefetch_start_fn start,
                  void *ctx)
{
    struct prefetch *q = calloc(1, sizeof(*q));

    if (q == NULL)
        abort();
    q->o = *o;
    if (q->o.max_queued == 0)
        q->o.max_queued = 1;
    if (q->o.max_running == 0)
        q->o.max_running = 1;
    q->start = start;
    q->ctx = ctx;
    if ((q->ring = calloc(q->o.max_queued, sizeof(*q->ring))) == NULL)
        abort();
    q->queued = keymap_new(32);
    uv_timer_init(loop, &q->timer);
    q->timer.data = q;
    *out = q;
    return 0;
}

void prefetch_shutdown(struct prefetch *q)
{
    q->closing = true;
    uv_timer_stop(&q->timer);
}

static void on_closed(uv_handle_t *h)
{
    struct prefetch *q = (struct prefetch *)h;

    keymap_free(q->queued, NULL);
    free(q->ring);
    free(q);
}

void prefetch_free(struct prefetch *q)
{
    if (q != NULL)
        uv_close((uv_handle_t *)&q->timer, on_closed);
}

void prefetch_stats(const struct prefetch *q, struct prefetch_stats *out)
{
    *out = q->stats;
    out->queued = q->len;
    out->running = q->running;
}
