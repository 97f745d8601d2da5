/* replica.c -- events passed to the other nodes as they arrive, and a catch-up sync each time one reconnects. */
#include "replica.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "jobs.h"
#include "log.h"
#include "store.h"
#include "upstream.h"

/* How often the connections to the other nodes are looked at, to catch up with one that has just opened. */
#define WATCH_MS 500

struct replica {
    struct replica_options o;
    uv_timer_t timer;
    bool *connected; /* by peer: as last seen */
    uint64_t *catchups;
    bool closing;
    struct replica_stats stats;
};

static void on_created(void *ctx, int status, uint64_t id)
{
    (void)ctx;
    if (status != 0)
        log_warn("replica: cannot create a catch-up sync: %s", strerror(-status));
    else
        log_info("replica: catch-up sync job %016llx", (unsigned long long)id);
}

static void on_watch(uv_timer_t *t)
{
    struct replica *rp = t->data;

    for (size_t i = 0; i < rp->o.n && !rp->closing; i++) {
        bool now = upstream_relay_state(upstream_relay(rp->o.up, rp->o.first + i)) == UPSTREAM_CONNECTED;

        /* Either side may have missed events while apart: a connection that opens is where that ends. */
        if (now && !rp->connected[i] && !jobs_sync_unfinished(rp->o.jobs, rp->o.sync_urls[i])) {
            rp->catchups[i]++;
            jobs_create_sync(rp->o.jobs, rp->o.sync_urls[i], rp->o.filter, on_created, rp);
        }
        rp->connected[i] = now;
    }
}

struct replica *replica_new(uv_loop_t *loop, const struct replica_options *o)
{
    struct replica *rp = calloc(1, sizeof(*rp));

    if (rp == NULL || (rp->connected = calloc(o->n, sizeof(*rp->connected))) == NULL ||
        (rp->catchups = calloc(o->n, sizeof(*rp->catchups))) == NULL)
        abort();
    rp->o = *o;
    uv_timer_init(loop, &rp->timer);
    rp->timer.data = rp;
    uv_timer_start(&rp->timer, on_watch, WATCH_MS, WATCH_MS);
    uv_unref((uv_handle_t *)&rp->timer);
    return rp;
}

void replica_forward(struct replica *rp, const struct event_view *ev)
{
    struct buf m = BUF_INIT;

    buf_appends(&m, "[\"EVENT\",");
    buf_append(&m, ev->json, ev->json_len);
    buf_appendc(&m, ']');
    for (size_t i = 0; i < rp->o.n; i++) {
        if (upstream_send(upstream_relay(rp->o.up, rp->o.first + i), m.data, m.len) == 0)
            rp->stats.forwarded++;
        else
            rp->stats.unsent++;
    }
    buf_free(&m);
}

size_t replica_peers(const struct replica *rp)
{
    return rp != NULL ? rp->o.n : 0;
}

void replica_peer_stats(const struct replica *rp, size_t i, struct replica_peer_stats *out)
{
    *out = (struct replica_peer_stats){rp->o.nodes[i], rp->connected[i], rp->catchups[i]};
}

void replica_stats(const struct replica *rp, struct replica_stats *out)
{
    if (rp != NULL)
        *out = rp->stats;
    else
        memset(out, 0, sizeof(*out));
}

void replica_shutdown(struct replica *rp)
{
    if (rp == NULL)
        return;
    rp->closing = true;
    uv_timer_stop(&rp->timer);
}

static void on_closed(uv_handle_t *h)
{
    struct replica *rp = h->data;

    free(rp->connected);
    free(rp->catchups);
    free(rp);
}

void replica_free(struct replica *rp)
{
    if (rp != NULL)
        uv_close((uv_handle_t *)&rp->timer, on_closed);
}
