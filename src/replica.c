/* replica.c -- events passed to the other nodes as they arrive, and a catch-up sync each time one reconnects. */
#include "replica.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "jobs.h"
#include "log.h"
#include "store.h"
#include "upstream.h"

struct replica {
    struct replica_options o;
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

/* Either side may have missed events while apart: a connection to another node that opens is where that ends. */
static void on_connected(void *data, struct upstream_relay *r)
{
    struct replica *rp = data;

    for (size_t i = 0; i < rp->o.n && !rp->closing; i++) {
        if (upstream_relay(rp->o.up, rp->o.first + i) != r)
            continue;
        if (!jobs_sync_unfinished(rp->o.jobs, rp->o.sync_urls[i])) {
            rp->catchups[i]++;
            jobs_create_sync(rp->o.jobs, rp->o.sync_urls[i], rp->o.filter, on_created, rp);
        }
        return;
    }
}

static const struct upstream_handler handler = {.on_connected = on_connected};

struct replica *replica_new(const struct replica_options *o)
{
    struct replica *rp = calloc(1, sizeof(*rp));

    if (rp == NULL || (rp->catchups = calloc(o->n, sizeof(*rp->catchups))) == NULL)
        abort();
    rp->o = *o;
    upstream_add_handler(o->up, &handler, rp);
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
    bool connected = upstream_relay_state(upstream_relay(rp->o.up, rp->o.first + i)) == UPSTREAM_CONNECTED;

    *out = (struct replica_peer_stats){rp->o.nodes[i], connected, rp->catchups[i]};
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
    if (rp != NULL)
        rp->closing = true;
}

void replica_free(struct replica *rp)
{
    if (rp == NULL)
        return;
    free(rp->catchups);
    free(rp);
}
