/* lookup.c -- the newest event of a pubkey and kind from the upstream relays: coalesced, batched, verified, stored. */
#include "lookup.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/memory.h>

#include "buf.h"
#include "clock.h"
#include "hex.h"
#include "keymap.h"
#include "log.h"

#define MAX_AUTHORS 500
/* How long "no relay has it" is remembered, so repeated asks do not reach the relays again. */
#define NEGATIVE_TTL_MS (10 * 60 * 1000)
/*
 * How long "not found in time" is remembered when a relay did not finish before
 * upstream_timeout_ms: long enough that one stalled relay does not make every ask
 * for an unknown author wait the whole timeout, short enough that the author is
 * looked for again soon.
 */
#define TIMEOUT_TTL_MS (60 * 1000)
#define NEGATIVE_MAX   100000

/* Upper bounds of the lookup latency histogram, in seconds: a batch window, a round trip, a timeout. */
static const double LOOKUP_LATENCY_BOUNDS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

struct lookup {
    uv_loop_t *loop;
    struct lookup_options opt;
    struct upstream *up;
    struct ingest *ingest;
    struct store *store;
    struct keymap *active;    /* (kind, pubkey) -> entry under way */
    struct keymap *negative;  /* (kind, pubkey) -> recent "none found" */
    h2o_linklist_t negatives; /* the same, oldest first */
    h2o_linklist_t batch;     /* entries waiting for the batch timer, oldest first */
    size_t nbatch;
    h2o_linklist_t queued; /* queries waiting for a free slot (max_concurrent) */
    h2o_linklist_t running;
    size_t nrunning;
    uint64_t next_query_id;
    h2o_linklist_t ready; /* waiters answered, to be called back from the loop */
    uv_timer_t batch_timer, ready_timer;
    unsigned timers_open; /* while lookup_free() waits for close callbacks */
    bool closing;
    struct lookup_stats stats;
    struct histogram latency;
};

static void make_key(uint8_t key[36], const uint8_t pubkey[32], uint32_t kind)
{
    memcpy(key, pubkey, 32);
    memcpy(key + 32, &kind, 4);
}

/* A remembered miss, kept in a FIFO as well so the oldest go first when the map is full. */
struct lookup_negative {
    uint8_t key[36];
    uint64_t until;
    h2o_linklist_t link;
};

struct lookup_entry {
    uint8_t pubkey[32];
    uint32_t kind;
    h2o_linklist_t waiters;
    h2o_linklist_t link; /* in the batch, until a query takes it */
    struct lookup_query *query;
    bool found;      /* a valid event was stored for it */
    int64_t best_at; /* created_at of the best verified, to skip copies that are not newer */
    uint8_t best_id[32];
    bool has_best;
    unsigned inflight;   /* events in the ingest pipeline */
    uint64_t grace_at;   /* once found: when to stop waiting for newer versions; 0 before */
    uint64_t started_ns; /* clock_mono_ns() when first asked, for the latency histogram */
    bool done;
};

enum relay_part { PART_NONE, PART_OPEN, PART_DONE };

struct lookup_query {
    struct lookup *lk;
    uint64_t id;
    char subid[24];
    uint32_t kind;
    struct lookup_entry **entries; /* sorted by pubkey */
    size_t n;
    enum relay_part *parts; /* per upstream relay */
    size_t participants, finished;
    bool answered; /* a relay reached EOSE: an absence means something */
    bool over;     /* every entry is done; only references keep it */
    unsigned refs; /* events in the ingest pipeline, plus one until the timer has closed */
    uint64_t deadline;
    uv_timer_t timer;
    h2o_linklist_t link; /* in lk->queued or lk->running */
};

/* An upstream event in the ingest pipeline. */
struct incoming {
    struct ingest_job job;
    struct lookup_query *q;
    struct lookup_entry *e;
    struct upstream_relay *relay;
};

static void check_query(struct lookup_query *q);

static void query_unref(struct lookup_query *q);

/* --- waiters ------------------------------------------------------------------------------------------------- */

static void on_ready(uv_timer_t *t)
{
    struct lookup *lk = t->data;

    while (!h2o_linklist_is_empty(&lk->ready)) {
        struct lookup_waiter *w = H2O_STRUCT_FROM_MEMBER(struct lookup_waiter, _link, lk->ready.next);
        h2o_linklist_unlink(&w->_link);
        w->cb(w, NULL);
    }
}

/* Answers "none" from the loop, so that no callback runs inside lookup_get(). */
static void answer_none_later(struct lookup *lk, struct lookup_waiter *w)
{
    w->_entry = NULL;
    h2o_linklist_insert(&lk->ready, &w->_link);
    uv_timer_start(&lk->ready_timer, on_ready, 0, 0);
}

void lookup_cancel(struct lookup *lk, struct lookup_waiter *w)
{
    (void)lk;
    if (h2o_linklist_is_linked(&w->_link))
        h2o_linklist_unlink(&w->_link);
    w->_entry = NULL;
}

static void remember_miss(struct lookup *lk, const struct lookup_entry *e, uint64_t ttl_ms)
{
    struct lookup_negative *n;
    uint8_t key[36];

    make_key(key, e->pubkey, e->kind);
    if ((n = keymap_get(lk->negative, key)) == NULL) {
        if (keymap_count(lk->negative) >= NEGATIVE_MAX) {
            struct lookup_negative *old = H2O_STRUCT_FROM_MEMBER(struct lookup_negative, link, lk->negatives.next);
            h2o_linklist_unlink(&old->link);
            keymap_del(lk->negative, old->key);
            free(old);
        }
        if ((n = calloc(1, sizeof(*n))) == NULL)
            abort();
        memcpy(n->key, key, 36);
        keymap_put(lk->negative, key, n);
    } else {
        h2o_linklist_unlink(&n->link); /* moved to the newest end */
    }
    n->until = uv_now(lk->loop) + ttl_ms;
    h2o_linklist_insert(&lk->negatives, &n->link);
}

/* Ends an entry: its waiters hear the stored event, or NULL; a miss is remembered for `miss_ttl_ms` (0: not). */
static void finish_entry(struct lookup *lk, struct lookup_entry *e, uint64_t miss_ttl_ms)
{
    struct event_view ev;
    uint8_t key[36];
    void *copy = NULL;

    if (e->done)
        return;
    e->done = true;
    make_key(key, e->pubkey, e->kind);
    keymap_del(lk->active, key);

    histogram_observe(&lk->latency, (double)(clock_mono_ns() - e->started_ns) / 1e9);
    if (e->found) {
        lk->stats.found++;
    } else {
        lk->stats.not_found++;
        if (miss_ttl_ms > 0)
            remember_miss(lk, e, miss_ttl_ms);
    }
    /* The event is copied out of the database so that callbacks may read it themselves. */
    if (e->found)
        store_get_latest_copy(lk->store, e->pubkey, e->kind, &ev, &copy);
    /* One waiter at a time, from the entry itself: a callback may cancel the others or look up more. */
    while (!h2o_linklist_is_empty(&e->waiters)) {
        struct lookup_waiter *w = H2O_STRUCT_FROM_MEMBER(struct lookup_waiter, _link, e->waiters.next);
        h2o_linklist_unlink(&w->_link);
        w->_entry = NULL;
        w->cb(w, copy != NULL ? &ev : NULL);
    }
    free(copy);
}

/* --- queries ------------------------------------------------------------------------------------------------- */

static int cmp_entry(const void *a, const void *b)
{
    return memcmp((*(struct lookup_entry *const *)a)->pubkey, (*(struct lookup_entry *const *)b)->pubkey, 32);
}

static struct lookup_entry *query_entry(const struct lookup_query *q, const uint8_t pubkey[32])
{
    size_t lo = 0, hi = q->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = memcmp(q->entries[mid]->pubkey, pubkey, 32);
        if (c == 0)
            return q->entries[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void send_req(struct lookup_query *q, struct upstream_relay *r)
{
    struct buf b = BUF_INIT;
    char hex[64];

    buf_appendf(&b, "[\"REQ\",\"%s\",{\"kinds\":[%u],\"authors\":[", q->subid, q->kind);
    for (size_t k = 0; k < q->n; k++) {
        hex_encode(q->entries[k]->pubkey, 32, hex);
        buf_append(&b, k ? ",\"" : "\"", k ? 2 : 1);
        buf_append(&b, hex, 64);
        buf_appendc(&b, '"');
    }
    buf_appendf(&b, "],\"limit\":%zu}]", q->n);
    /* A relay not connected now joins when it connects (on_connected). */
    if (upstream_send(r, b.data, b.len) == 0) {
        q->parts[upstream_relay_index(r)] = PART_OPEN;
        q->participants++;
    }
    buf_free(&b);
}

static void send_close(struct lookup_query *q, struct upstream_relay *r)
{
    char msg[64];
    int n = snprintf(msg, sizeof(msg), "[\"CLOSE\",\"%s\"]", q->subid);
    upstream_send(r, msg, (size_t)n);
}

static void on_query_timer_closed(uv_handle_t *h)
{
    query_unref(h->data);
}

static void query_unref(struct lookup_query *q)
{
    if (--q->refs > 0)
        return;
    for (size_t i = 0; i < q->n; i++)
        free(q->entries[i]);
    free(q->entries);
    free(q->parts);
    free(q);
}

static void start_queued(struct lookup *lk);

/* Ends the query, at its deadline or not: every entry is answered, open subscriptions are closed. */
static void end_query(struct lookup_query *q, bool timed_out)
{
    struct lookup *lk = q->lk;
    uint64_t miss_ttl = 0;

    if (q->over)
        return;
    q->over = true;
    for (size_t i = 0; i < upstream_count(lk->up); i++) {
        if (q->parts[i] == PART_OPEN)
            send_close(q, upstream_relay(lk->up, i));
    }
    /* Only a query every relay answered may call an author absent for long. */
    if (q->answered && q->finished == q->participants)
        miss_ttl = NEGATIVE_TTL_MS;
    else if (timed_out)
        miss_ttl = TIMEOUT_TTL_MS;
    for (size_t i = 0; i < q->n; i++)
        finish_entry(lk, q->entries[i], miss_ttl);
    h2o_linklist_unlink(&q->link);
    lk->nrunning--;
    uv_close((uv_handle_t *)&q->timer, on_query_timer_closed);
    start_queued(lk);
}

static void on_query_timer(uv_timer_t *t)
{
    struct lookup_query *q = t->data;

    if (uv_now(t->loop) >= q->deadline) {
        for (size_t i = 0; i < q->n; i++) {
            if (!q->entries[i]->done && !q->entries[i]->found)
                q->lk->stats.timed_out++;
        }
        end_query(q, true);
        return;
    }
    check_query(q);
}

/*
 * Answers what can be answered: entries whose event arrived and whose grace
 * period has passed, and everything once every relay has finished (or, with no
 * relay taking part, none is still connecting). Waits for events still in the
 * ingest pipeline, so that nothing found is answered as missing.
 */
static void check_query(struct lookup_query *q)
{
    struct lookup *lk = q->lk;
    uint64_t now, next = q->deadline;
    bool all_done = true, relays_done;
    size_t inflight = 0;

    if (q->over)
        return;
    now = uv_now(lk->loop);
    relays_done = q->finished == q->participants && (q->participants > 0 || !upstream_connecting(lk->up));
    for (size_t i = 0; i < q->n; i++) {
        struct lookup_entry *e = q->entries[i];
        if (e->done)
            continue;
        inflight += e->inflight;
        if (e->inflight == 0 && e->found && (relays_done || now >= e->grace_at)) {
            finish_entry(lk, e, 0);
            continue;
        }
        all_done = false;
        /*
         * A grace period already over waits for the events still in the pipeline, whose
         * completion checks again: a timer for it would fire at once, forever, and the
         * loop (on libuv 1.44) never get to those completions.
         */
        if (e->found && e->grace_at > now && e->grace_at < next)
            next = e->grace_at;
    }
    if (all_done || (relays_done && inflight == 0)) {
        end_query(q, false);
        return;
    }
    uv_timer_start(&q->timer, on_query_timer, next > now ? next - now : 0, 0);
}

static void start_query(struct lookup *lk, struct lookup_query *q)
{
    h2o_linklist_insert(&lk->running, &q->link);
    lk->nrunning++;
    lk->stats.queries++;
    q->deadline = uv_now(lk->loop) + lk->opt.timeout_ms;
    for (size_t i = 0; i < upstream_count(lk->up); i++)
        send_req(q, upstream_relay(lk->up, i));
    check_query(q);
}

static void start_queued(struct lookup *lk)
{
    while (!h2o_linklist_is_empty(&lk->queued) && lk->nrunning < lk->opt.max_concurrent && !lk->closing) {
        struct lookup_query *q = H2O_STRUCT_FROM_MEMBER(struct lookup_query, link, lk->queued.next);
        h2o_linklist_unlink(&q->link);
        start_query(lk, q);
    }
}

static struct lookup_query *new_query(struct lookup *lk, uint32_t kind, struct lookup_entry **entries, size_t n)
{
    struct lookup_query *q = calloc(1, sizeof(*q));

    if (q == NULL || (q->parts = calloc(upstream_count(lk->up) + 1, sizeof(*q->parts))) == NULL)
        abort();
    q->lk = lk;
    q->id = ++lk->next_query_id;
    snprintf(q->subid, sizeof(q->subid), "pfp%llu", (unsigned long long)q->id);
    q->kind = kind;
    q->entries = entries;
    q->n = n;
    q->refs = 1;
    qsort(entries, n, sizeof(*entries), cmp_entry);
    for (size_t i = 0; i < n; i++)
        entries[i]->query = q;
    uv_timer_init(lk->loop, &q->timer);
    q->timer.data = q;
    return q;
}

/* Turns the batch into queries of at most MAX_AUTHORS of one kind each, and starts what the limit allows. */
static void on_batch_timer(uv_timer_t *t)
{
    struct lookup *lk = t->data;

    lk->nbatch = 0;
    while (!h2o_linklist_is_empty(&lk->batch)) {
        uint32_t kind = H2O_STRUCT_FROM_MEMBER(struct lookup_entry, link, lk->batch.next)->kind;
        struct lookup_entry **group = malloc(MAX_AUTHORS * sizeof(*group));
        size_t n = 0;

        if (group == NULL)
            abort();
        /* Takes up to MAX_AUTHORS entries of this kind out of the batch, in order. */
        for (h2o_linklist_t *l = lk->batch.next, *next; l != &lk->batch && n < MAX_AUTHORS; l = next) {
            struct lookup_entry *e = H2O_STRUCT_FROM_MEMBER(struct lookup_entry, link, l);
            next = l->next;
            if (e->kind == kind) {
                h2o_linklist_unlink(l);
                group[n++] = e;
            }
        }
        h2o_linklist_insert(&lk->queued, &new_query(lk, kind, group, n)->link);
    }
    start_queued(lk);
}

void lookup_get(struct lookup *lk, const uint8_t pubkey[32], uint32_t kind, struct lookup_waiter *w)
{
    struct lookup_entry *e;
    struct lookup_negative *neg;
    uint8_t key[36];

    assert(w->cb != NULL);
    lk->stats.requested++;
    w->_link = (h2o_linklist_t){NULL, NULL};
    make_key(key, pubkey, kind);
    if (lk->closing || upstream_count(lk->up) == 0) {
        answer_none_later(lk, w);
        return;
    }
    if ((neg = keymap_get(lk->negative, key)) != NULL && neg->until > uv_now(lk->loop)) {
        lk->stats.negative_hits++;
        answer_none_later(lk, w);
        return;
    }
    if ((e = keymap_get(lk->active, key)) != NULL) {
        lk->stats.coalesced++;
    } else {
        if ((e = calloc(1, sizeof(*e))) == NULL)
            abort();
        memcpy(e->pubkey, pubkey, 32);
        e->kind = kind;
        e->started_ns = clock_mono_ns();
        h2o_linklist_init_anchor(&e->waiters);
        keymap_put(lk->active, key, e);
        h2o_linklist_insert(&lk->batch, &e->link);
        if (lk->nbatch++ == 0)
            uv_timer_start(&lk->batch_timer, on_batch_timer, lk->opt.batch_ms, 0);
    }
    w->_entry = e;
    h2o_linklist_insert(&e->waiters, &w->_link);
}

/* --- what the relays send ------------------------------------------------------------------------------------ */

static struct lookup_query *find_query(struct lookup *lk, const char *subid)
{
    for (h2o_linklist_t *l = lk->running.next; l != &lk->running; l = l->next) {
        struct lookup_query *q = H2O_STRUCT_FROM_MEMBER(struct lookup_query, link, l);
        if (strcmp(q->subid, subid) == 0)
            return q;
    }
    return NULL;
}

/* Whether an event is newer than the best verified for `e` (at equal times, the lower id wins, as NIP-01 says). */
static bool beats_best(const struct lookup_entry *e, int64_t created_at, const uint8_t id[32])
{
    return !e->has_best || created_at > e->best_at || (created_at == e->best_at && memcmp(id, e->best_id, 32) < 0);
}

/* A verified version of `e`'s event is stored. */
static void found(struct lookup *lk, struct lookup_entry *e, int64_t created_at, const uint8_t id[32])
{
    if (beats_best(e, created_at, id)) {
        e->has_best = true;
        e->best_at = created_at;
        memcpy(e->best_id, id, 32);
    }
    if (e->done)
        return;
    if (!e->found)
        e->grace_at = uv_now(lk->loop) + lk->opt.grace_ms;
    e->found = true;
}

static void on_ingested(struct ingest_job *job, int status, const struct event_view *ev)
{
    struct incoming *in = H2O_STRUCT_FROM_MEMBER(struct incoming, job, job);
    struct lookup_query *q = in->q;

    in->e->inflight--;
    /* A forged copy changes nothing: only verified events count as the best in hand. */
    if (status == -EKEYREJECTED)
        upstream_dropped(in->relay, "event with a bad signature");
    else if (status >= 0 && status != INGEST_EPHEMERAL)
        found(q->lk, in->e, ev->created_at, ev->id);
    free(in);
    check_query(q);
    query_unref(q);
}

static void on_upstream_event(struct lookup *lk, struct upstream_relay *r, json_t *msg)
{
    json_t *jsub = json_array_get(msg, 1);
    struct lookup_query *q;
    struct lookup_entry *e;
    struct event ev;
    struct incoming *in;
    char reason[200], why[240];

    if (json_array_size(msg) != 3 || !json_is_string(jsub)) {
        upstream_dropped(r, "malformed EVENT message");
        return;
    }
    /* Events for a subscription already closed are late, not wrong. */
    if ((q = find_query(lk, json_string_value(jsub))) == NULL || q->over)
        return;
    if (ingest_check(lk->ingest, json_array_get(msg, 2), &ev, reason, sizeof(reason)) != 0) {
        snprintf(why, sizeof(why), "invalid event: %s", reason);
        upstream_dropped(r, why);
        return;
    }
    if (ev.kind != q->kind || (e = query_entry(q, ev.pubkey)) == NULL) {
        upstream_dropped(r, "event of a kind or author not asked for");
    } else if (!e->done && beats_best(e, ev.created_at, ev.id)) {
        /* Stored through the same path as a client's EVENT: the relay's subscribers and listeners hear of it. */
        if ((in = calloc(1, sizeof(*in))) == NULL)
            abort();
        in->job.done = on_ingested;
        in->q = q;
        in->e = e;
        in->relay = r;
        if (ingest_submit(lk->ingest, &ev, &in->job) == INGEST_DUPLICATE) {
            free(in);
            found(lk, e, ev.created_at, ev.id);
            check_query(q);
        } else {
            e->inflight++;
            q->refs++;
        }
    }
    /* Otherwise already answered, or not newer than a verified version: nothing to check. */
    event_free(&ev);
}

/* A relay has said all it will for `q`: EOSE, CLOSED, or its connection went. */
static void relay_finished(struct lookup_query *q, size_t i, bool answered)
{
    if (q->parts[i] != PART_OPEN)
        return;
    q->parts[i] = PART_DONE;
    q->finished++;
    q->answered |= answered;
    check_query(q);
}

static void on_message(void *data, struct upstream_relay *r, json_t *msg)
{
    struct lookup *lk = data;
    const char *verb = json_string_value(json_array_get(msg, 0));
    json_t *jsub = json_array_get(msg, 1);
    struct lookup_query *q;

    if (strcmp(verb, "EVENT") == 0) {
        on_upstream_event(lk, r, msg);
    } else if (strcmp(verb, "EOSE") == 0 || strcmp(verb, "CLOSED") == 0) {
        if (!json_is_string(jsub)) {
            upstream_dropped(r, "malformed EOSE or CLOSED message");
            return;
        }
        if ((q = find_query(lk, json_string_value(jsub))) == NULL)
            return;
        if (verb[0] == 'E')
            send_close(q, r);
        else
            log_debug("upstream %s: subscription closed: %s", upstream_relay_url(r),
                      json_string_value(json_array_get(msg, 2)));
        relay_finished(q, upstream_relay_index(r), verb[0] == 'E');
    } else if (strcmp(verb, "NOTICE") != 0 && strcmp(verb, "OK") != 0 && strcmp(verb, "AUTH") != 0) {
        upstream_dropped(r, "unknown message type");
    }
}

/* A relay that connects while queries are running joins them. */
static void on_connected(void *data, struct upstream_relay *r)
{
    struct lookup *lk = data;
    size_t i = upstream_relay_index(r);

    for (h2o_linklist_t *l = lk->running.next; l != &lk->running; l = l->next) {
        struct lookup_query *q = H2O_STRUCT_FROM_MEMBER(struct lookup_query, link, l);
        if (!q->over && q->parts[i] == PART_NONE)
            send_req(q, r);
    }
}

static void on_disconnected(void *data, struct upstream_relay *r)
{
    struct lookup *lk = data;
    size_t i = upstream_relay_index(r);

    /* A query may end (and leave the list) on the way. */
    for (h2o_linklist_t *l = lk->running.next, *next; l != &lk->running; l = next) {
        struct lookup_query *q = H2O_STRUCT_FROM_MEMBER(struct lookup_query, link, l);
        next = l->next;
        if (q->parts[i] == PART_OPEN)
            relay_finished(q, i, false);
        else if (q->parts[i] == PART_NONE)
            check_query(q);
    }
}

static const struct upstream_handler upstream_handler = {
    .on_connected = on_connected,
    .on_disconnected = on_disconnected,
    .on_message = on_message,
};

int lookup_init(struct lookup **out, uv_loop_t *loop, const struct lookup_options *opt, struct upstream *up,
                struct ingest *ingest, struct store *store)
{
    struct lookup *lk = calloc(1, sizeof(*lk));

    if (lk == NULL)
        abort();
    lk->loop = loop;
    lk->opt = *opt;
    lk->up = up;
    lk->ingest = ingest;
    lk->store = store;
    lk->active = keymap_new(36);
    lk->negative = keymap_new(36);
    h2o_linklist_init_anchor(&lk->negatives);
    h2o_linklist_init_anchor(&lk->batch);
    h2o_linklist_init_anchor(&lk->queued);
    h2o_linklist_init_anchor(&lk->running);
    h2o_linklist_init_anchor(&lk->ready);
    histogram_init(&lk->latency, LOOKUP_LATENCY_BOUNDS, sizeof(LOOKUP_LATENCY_BOUNDS) / sizeof(double));
    uv_timer_init(loop, &lk->batch_timer);
    uv_timer_init(loop, &lk->ready_timer);
    lk->batch_timer.data = lk->ready_timer.data = lk;
    upstream_set_handler(up, &upstream_handler, lk);
    *out = lk;
    return 0;
}

bool lookup_enabled(const struct lookup *lk)
{
    return upstream_count(lk->up) > 0;
}

bool lookup_closing(const struct lookup *lk)
{
    return lk->closing;
}

void lookup_stats(const struct lookup *lk, struct lookup_stats *out)
{
    *out = lk->stats;
    out->latency = &lk->latency;
}

void lookup_shutdown(struct lookup *lk)
{
    if (lk->closing)
        return;
    lk->closing = true;
    uv_timer_stop(&lk->batch_timer);
    /* Batched entries become one last set of queries, ended at once with the rest. */
    on_batch_timer(&lk->batch_timer);
    while (!h2o_linklist_is_empty(&lk->queued)) {
        struct lookup_query *q = H2O_STRUCT_FROM_MEMBER(struct lookup_query, link, lk->queued.next);
        h2o_linklist_unlink(&q->link);
        h2o_linklist_insert(&lk->running, &q->link);
        lk->nrunning++;
    }
    while (!h2o_linklist_is_empty(&lk->running))
        end_query(H2O_STRUCT_FROM_MEMBER(struct lookup_query, link, lk->running.next), false);
    on_ready(&lk->ready_timer);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct lookup *lk = h->data;

    if (--lk->timers_open > 0)
        return;
    keymap_free(lk->active, NULL);
    keymap_free(lk->negative, free);
    free(lk);
}

void lookup_free(struct lookup *lk)
{
    lk->timers_open = 2;
    uv_close((uv_handle_t *)&lk->batch_timer, on_timer_closed);
    uv_close((uv_handle_t *)&lk->ready_timer, on_timer_closed);
}
