/* lookup.c -- the newest event of a pubkey and kind from the upstream relays: coalesced, batched, verified, stored. */
#include "lookup.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "event.h"
#include "hex.h"
#include "keymap.h"
#include "log.h"

#define MAX_AUTHORS 500
/* How long "no relay has it" is remembered, so repeated asks do not reach the relays again. */
#define NEGATIVE_TTL_MS (10 * 60 * 1000)
#define NEGATIVE_MAX    100000

/* Upper bounds of the lookup latency histogram, in seconds: a batch window, a round trip, a timeout. */
static const double LOOKUP_LATENCY_BOUNDS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

static void make_key(uint8_t key[36], const uint8_t pubkey[32], uint32_t kind)
{
    memcpy(key, pubkey, 32);
    memcpy(key + 32, &kind, 4);
}

/* A remembered miss, kept in a FIFO as well so the oldest go first when the map is full. */
struct lookup_negative {
    uint8_t key[36];
    uint64_t until;
    struct lookup_negative *older, *newer;
};

struct lookup_entry {
    uint8_t pubkey[32];
    uint32_t kind;
    struct lookup_waiter *waiters;
    struct lookup_query *query;
    bool found;      /* a valid event was stored for it */
    int64_t best_at; /* created_at of the best verified, to skip copies that are not newer */
    uint8_t best_id[32];
    bool has_best;
    unsigned inflight;   /* verifications and writes not yet back */
    uint64_t grace_at;   /* once found: when to stop waiting for newer versions; 0 before */
    uint64_t started_ns; /* uv_hrtime() when first asked, for the latency histogram */
    bool done;
    struct lookup_entry *next;
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
    unsigned refs; /* verifications and writes in flight, plus one while running */
    uint64_t deadline;
    uv_timer_t timer;
    struct lookup_query *next;
};

/* An upstream event on its way: signature check on the pool, then the store. */
struct incoming {
    struct work work;
    struct store_event_write ew;
    struct lookup_query *q;
    struct lookup_entry *e;
    struct upstream_relay *relay;
    uint8_t pubkey[32];
    uint8_t sig[64];
    int64_t ev_at;
    bool sig_ok;
};

static void check_query(struct lookup_query *q);

static void query_unref(struct lookup_query *q);

/* --- waiters ------------------------------------------------------------------------------------------------- */

static void on_ready(uv_timer_t *t)
{
    struct lookup *lk = t->data;

    while (lk->ready != NULL) {
        struct lookup_waiter *w = lk->ready;
        lk->ready = w->next;
        if (lk->ready != NULL)
            lk->ready->prev = NULL;
        w->ready = false;
        w->cb(w, NULL);
    }
}

/* Answers "none" from the loop, so that no callback runs inside lookup_get(). */
static void answer_none_later(struct lookup *lk, struct lookup_waiter *w)
{
    w->entry = NULL;
    w->ready = true;
    w->prev = NULL;
    w->next = lk->ready;
    if (lk->ready != NULL)
        lk->ready->prev = w;
    lk->ready = w;
    uv_timer_start(&lk->ready_timer, on_ready, 0, 0);
}

void lookup_cancel(struct lookup *lk, struct lookup_waiter *w)
{
    struct lookup_waiter **head;

    if (w->ready)
        head = &lk->ready;
    else if (w->entry != NULL)
        head = &w->entry->waiters;
    else
        return;
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        *head = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    w->entry = NULL;
    w->ready = false;
}

static void remember_miss(struct lookup *lk, const struct lookup_entry *e)
{
    struct lookup_negative *n;
    uint8_t key[36];

    make_key(key, e->pubkey, e->kind);
    if ((n = keymap_get(lk->negative, key)) == NULL) {
        if (keymap_count(lk->negative) >= NEGATIVE_MAX && lk->neg_oldest != NULL) {
            struct lookup_negative *old = lk->neg_oldest;
            lk->neg_oldest = old->newer;
            if (lk->neg_oldest != NULL)
                lk->neg_oldest->older = NULL;
            else
                lk->neg_newest = NULL;
            keymap_del(lk->negative, old->key);
            free(old);
        }
        if ((n = calloc(1, sizeof(*n))) == NULL)
            abort();
        memcpy(n->key, key, 36);
        keymap_put(lk->negative, key, n);
    } else {
        /* Moved to the newest end. */
        if (n->older != NULL)
            n->older->newer = n->newer;
        else
            lk->neg_oldest = n->newer;
        if (n->newer != NULL)
            n->newer->older = n->older;
        else
            lk->neg_newest = n->older;
    }
    n->until = uv_now(lk->loop) + NEGATIVE_TTL_MS;
    n->older = lk->neg_newest;
    n->newer = NULL;
    if (lk->neg_newest != NULL)
        lk->neg_newest->newer = n;
    else
        lk->neg_oldest = n;
    lk->neg_newest = n;
}

/* Ends an entry: its waiters hear the stored event, or NULL. */
static void finish_entry(struct lookup *lk, struct lookup_entry *e, bool answered)
{
    struct lookup_waiter *w;
    struct event_view ev;
    MDB_txn *txn;
    uint8_t key[36];
    void *copy = NULL;

    if (e->done)
        return;
    e->done = true;
    make_key(key, e->pubkey, e->kind);
    keymap_del(lk->active, key);

    histogram_observe(&lk->latency, (double)(uv_hrtime() - e->started_ns) / 1e9);
    if (e->found) {
        lk->stats.found++;
    } else {
        lk->stats.not_found++;
        if (answered)
            remember_miss(lk, e);
    }
    /* The event is copied out of the database so that callbacks may read it themselves. */
    if (e->found && store_read_begin(lk->store, &txn) == 0) {
        if (store_get_latest(lk->store, txn, e->pubkey, e->kind, &ev) == 0)
            copy = event_view_dup(&ev, &ev);
        store_read_end(lk->store, txn);
    }
    /* One waiter at a time, from the entry itself: a callback may cancel the others or look up more. */
    while ((w = e->waiters) != NULL) {
        e->waiters = w->next;
        if (e->waiters != NULL)
            e->waiters->prev = NULL;
        w->prev = w->next = NULL;
        w->entry = NULL;
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

static void send_req(struct lookup_query *q, struct upstream_relay *r, size_t i)
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
    if (upstream_send(r, b.data, b.len) == 0) {
        q->parts[i] = PART_OPEN;
        q->participants++;
        r->stats.queries++;
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
    struct lookup_query *q = h->data;
    query_unref(q);
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

/* Ends the query: every entry is answered, open subscriptions are closed. */
static void end_query(struct lookup_query *q)
{
    struct lookup *lk = q->lk;

    if (q->over)
        return;
    q->over = true;
    for (size_t i = 0; i < lk->up->nrelays; i++) {
        if (q->parts[i] == PART_OPEN)
            send_close(q, &lk->up->relays[i]);
    }
    /* Only a query every relay answered may call an author absent. */
    for (size_t i = 0; i < q->n; i++)
        finish_entry(lk, q->entries[i], q->answered && q->finished == q->participants);
    for (struct lookup_query **p = &lk->running; *p != NULL; p = &(*p)->next) {
        if (*p == q) {
            *p = q->next;
            break;
        }
    }
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
        end_query(q);
        return;
    }
    check_query(q);
}

/*
 * Answers what can be answered: entries whose event arrived and whose grace
 * period has passed, and everything once every relay has finished (or, with no
 * relay taking part, none is still connecting). Waits for checks and writes in
 * flight, so that nothing found is answered as missing.
 */
static void check_query(struct lookup_query *q)
{
    struct lookup *lk = q->lk;
    uint64_t now = uv_now(lk->loop), next = q->deadline;
    bool all_done = true, relays_done;
    size_t inflight = 0;

    if (q->over)
        return;
    relays_done = q->finished == q->participants && (q->participants > 0 || !upstream_connecting(lk->up));
    for (size_t i = 0; i < q->n; i++) {
        struct lookup_entry *e = q->entries[i];
        if (e->done)
            continue;
        inflight += e->inflight;
        if (e->inflight == 0 && e->found && (relays_done || now >= e->grace_at)) {
            finish_entry(lk, e, q->answered);
            continue;
        }
        all_done = false;
        if (e->found && e->grace_at < next)
            next = e->grace_at;
    }
    if (all_done || (relays_done && inflight == 0)) {
        end_query(q);
        return;
    }
    uv_timer_start(&q->timer, on_query_timer, next > now ? next - now : 0, 0);
}

static void start_query(struct lookup *lk, struct lookup_query *q)
{
    q->next = lk->running;
    lk->running = q;
    lk->nrunning++;
    lk->stats.queries++;
    q->deadline = uv_now(lk->loop) + (uint64_t)lk->cfg->upstream_timeout_ms;
    for (size_t i = 0; i < lk->up->nrelays; i++) {
        if (lk->up->relays[i].state == UPSTREAM_CONNECTED)
            send_req(q, &lk->up->relays[i], i);
    }
    check_query(q);
}

static void start_queued(struct lookup *lk)
{
    while (lk->queued != NULL && lk->nrunning < (size_t)lk->cfg->max_concurrent && !lk->closing) {
        struct lookup_query *q = lk->queued;
        lk->queued = q->next;
        start_query(lk, q);
    }
}

static struct lookup_query *new_query(struct lookup *lk, uint32_t kind, struct lookup_entry **entries, size_t n)
{
    struct lookup_query *q = calloc(1, sizeof(*q));

    if (q == NULL || (q->parts = calloc(lk->up->nrelays + 1, sizeof(*q->parts))) == NULL)
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
    struct lookup_entry *e = lk->batch;
    struct lookup_query **tail = &lk->queued;

    while (*tail != NULL)
        tail = &(*tail)->next;
    lk->batch = NULL;
    lk->nbatch = 0;
    while (e != NULL) {
        uint32_t kind = e->kind;
        struct lookup_entry **group = malloc(MAX_AUTHORS * sizeof(*group)), **rest = &e;
        size_t n = 0;

        if (group == NULL)
            abort();
        /* Takes up to MAX_AUTHORS entries of this kind out of the list, in order. */
        for (struct lookup_entry **p = rest; *p != NULL && n < MAX_AUTHORS;) {
            if ((*p)->kind == kind) {
                group[n++] = *p;
                *p = (*p)->next;
            } else {
                p = &(*p)->next;
            }
        }
        *tail = new_query(lk, kind, group, n);
        tail = &(*tail)->next;
    }
    start_queued(lk);
}

void lookup_get(struct lookup *lk, const uint8_t pubkey[32], uint32_t kind, struct lookup_waiter *w)
{
    struct lookup_entry *e;
    struct lookup_negative *neg;
    uint8_t key[36];

    lk->stats.requested++;
    w->prev = w->next = NULL;
    w->ready = false;
    make_key(key, pubkey, kind);
    if (lk->closing || lk->up->nrelays == 0) {
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
        e->started_ns = uv_hrtime();
        keymap_put(lk->active, key, e);
        e->next = lk->batch;
        lk->batch = e;
        if (lk->nbatch++ == 0)
            uv_timer_start(&lk->batch_timer, on_batch_timer, (uint64_t)lk->cfg->upstream_batch_ms, 0);
    }
    w->entry = e;
    w->next = e->waiters;
    if (e->waiters != NULL)
        e->waiters->prev = w;
    e->waiters = w;
}

/* --- what the relays send ------------------------------------------------------------------------------------ */

static struct lookup_query *find_query(struct lookup *lk, const char *subid)
{
    for (struct lookup_query *q = lk->running; q != NULL; q = q->next) {
        if (strcmp(q->subid, subid) == 0)
            return q;
    }
    return NULL;
}

static size_t relay_index(const struct lookup *lk, const struct upstream_relay *r)
{
    return (size_t)(r - lk->up->relays);
}

static void on_incoming_stored(struct store_event_write *ew)
{
    struct incoming *in = (struct incoming *)((char *)ew - offsetof(struct incoming, ew));
    struct lookup_entry *e = in->e;
    struct lookup_query *q = in->q;

    e->inflight--;
    if (ew->w.status == 0 && !e->done) {
        if (!e->found)
            e->grace_at = uv_now(q->lk->loop) + (uint64_t)q->lk->cfg->upstream_grace_ms;
        e->found = true;
    }
    free(in->ew.rec);
    free(in);
    check_query(q);
    query_unref(q);
}

static void verify_run(struct work *w)
{
    struct incoming *in = (struct incoming *)w;
    in->sig_ok = event_verify_sig(in->ew.id, in->pubkey, in->sig);
}

static void verify_done(struct work *w)
{
    struct incoming *in = (struct incoming *)w;
    struct lookup_query *q = in->q;

    if (!in->sig_ok) {
        /* A forged copy changes nothing: only verified events count as the best in hand. */
        upstream_dropped(in->relay, "event with a bad signature");
        in->e->inflight--;
        free(in->ew.rec);
        free(in);
        check_query(q);
        query_unref(q);
        return;
    }
    if (!in->e->has_best || in->ev_at > in->e->best_at ||
        (in->ev_at == in->e->best_at && memcmp(in->ew.id, in->e->best_id, 32) < 0)) {
        in->e->has_best = true;
        in->e->best_at = in->ev_at;
        memcpy(in->e->best_id, in->ew.id, 32);
    }
    /* Stored through the same path as a client's EVENT: the relay's subscribers and listeners hear of it. */
    in->ew.done = on_incoming_stored;
    store_put_event(q->lk->store, &in->ew);
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
    if (event_parse(json_array_get(msg, 2), &ev, reason, sizeof(reason)) != 0) {
        snprintf(why, sizeof(why), "invalid event: %s", reason);
        upstream_dropped(r, why);
        return;
    }
    if (ev.kind != q->kind || (e = query_entry(q, ev.pubkey)) == NULL) {
        upstream_dropped(r, "event of a kind or author not asked for");
    } else if (ev.created_at > (int64_t)time(NULL) + lk->cfg->max_future_seconds) {
        upstream_dropped(r, "event dated in the future");
    } else if (!event_id_valid(&ev)) {
        upstream_dropped(r, "event whose id is not its hash");
    } else if (e->done || (e->has_best && (ev.created_at < e->best_at ||
                                           (ev.created_at == e->best_at && memcmp(ev.id, e->best_id, 32) >= 0)))) {
        /* Already answered, or not newer than a verified version: nothing to check. */
        r->stats.events_received++;
    } else {
        r->stats.events_received++;
        if ((in = calloc(1, sizeof(*in))) == NULL)
            abort();
        in->q = q;
        in->e = e;
        in->relay = r;
        memcpy(in->ew.id, ev.id, 32);
        memcpy(in->pubkey, ev.pubkey, 32);
        memcpy(in->sig, ev.sig, 64);
        in->ev_at = ev.created_at;
        in->ew.rec = event_record_build(&ev, &in->ew.rec_len);
        in->work.run = verify_run;
        in->work.done = verify_done;
        e->inflight++;
        q->refs++;
        workpool_submit(lk->verify, &in->work);
    }
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
            log_debug("upstream %s: subscription closed: %s", r->url, json_string_value(json_array_get(msg, 2)));
        relay_finished(q, relay_index(lk, r), verb[0] == 'E');
    } else if (strcmp(verb, "NOTICE") == 0) {
        r->stats.notices++;
        log_debug("upstream %s: NOTICE %s", r->url, json_string_value(jsub));
    } else if (strcmp(verb, "OK") != 0 && strcmp(verb, "AUTH") != 0) {
        upstream_dropped(r, "unknown message type");
    }
}

/* A relay that connects while queries are running joins them. */
static void on_connected(void *data, struct upstream_relay *r)
{
    struct lookup *lk = data;
    size_t i = relay_index(lk, r);

    for (struct lookup_query *q = lk->running; q != NULL; q = q->next) {
        if (!q->over && q->parts[i] == PART_NONE)
            send_req(q, r, i);
    }
}

static void on_disconnected(void *data, struct upstream_relay *r)
{
    struct lookup *lk = data;
    size_t i = relay_index(lk, r);

    for (struct lookup_query *q = lk->running, *next; q != NULL; q = next) {
        next = q->next;
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

void lookup_init(struct lookup *lk, uv_loop_t *loop, const struct config *cfg, struct upstream *up, struct store *store,
                 struct workpool *verify)
{
    memset(lk, 0, sizeof(*lk));
    lk->loop = loop;
    lk->cfg = cfg;
    lk->up = up;
    lk->store = store;
    lk->verify = verify;
    lk->active = keymap_new(36);
    lk->negative = keymap_new(36);
    histogram_init(&lk->latency, LOOKUP_LATENCY_BOUNDS, sizeof(LOOKUP_LATENCY_BOUNDS) / sizeof(double));
    uv_timer_init(loop, &lk->batch_timer);
    uv_timer_init(loop, &lk->ready_timer);
    lk->batch_timer.data = lk->ready_timer.data = lk;
    upstream_start(up, &upstream_handler, lk);
}

void lookup_shutdown(struct lookup *lk)
{
    lk->closing = true;
    uv_timer_stop(&lk->batch_timer);
    /* Batched entries become one last set of queries, ended at once with the rest. */
    on_batch_timer(&lk->batch_timer);
    while (lk->queued != NULL) {
        struct lookup_query *q = lk->queued;
        lk->queued = q->next;
        q->next = lk->running;
        lk->running = q;
        lk->nrunning++;
    }
    while (lk->running != NULL)
        end_query(lk->running);
    on_ready(&lk->ready_timer);
    uv_close((uv_handle_t *)&lk->batch_timer, NULL);
    uv_close((uv_handle_t *)&lk->ready_timer, NULL);
    keymap_free(lk->active, NULL);
    keymap_free(lk->negative, free);
    lk->neg_oldest = lk->neg_newest = NULL;
}
