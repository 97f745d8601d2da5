/*
 * lookup.c -- the newest event of a pubkey and kind: asked of the upstream relays, then of the pubkey's write relays
 * and its hints together; coalesced, batched per relay, verified, stored.
 */
#include "lookup.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/memory.h>

#include "buf.h"
#include "clock.h"
#include "hex.h"
#include "keymap.h"
#include "hints.h"
#include "log.h"
#include "nip65.h"
#include "relaybook.h"

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
/* Pubkeys whose relay hints are kept at most: a few megabytes. */
#define HINTS_MAX 50000

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
    /* The outbox stage: */
    h2o_linklist_t outbox_batch; /* entries whose relays are chosen, waiting for the batch timer */
    uv_timer_t outbox_timer;
    char **configured; /* the upstream relays' URLs in canonical form: never asked twice */
    size_t nconfigured;
    struct hints *hints;
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

enum stage {
    STAGE_PEERS,    /* asked of the cluster's other nodes */
    STAGE_UPSTREAM, /* asked of the upstream relays */
    STAGE_RELAYS,   /* missing there: its relay list (kind 10002) is being found */
    STAGE_OUTBOX,   /* asked of its write relays and hints */
};

/* A relay the outbox stage asks. */
struct candidate {
    char *url;
    bool hint; /* a hint rather than a write relay of its list */
};

struct lookup_entry {
    struct lookup *lk;
    uint8_t pubkey[32];
    uint32_t kind;
    h2o_linklist_t waiters;
    h2o_linklist_t link; /* in the batch, until a query takes it; then in the outbox batch */
    enum stage stage;
    unsigned refs;         /* queries holding it, plus one until it is done */
    unsigned outstanding;  /* queries not over */
    bool unclean;          /* some relay asked did not answer: an absence means less */
    bool timed_out;        /* ... and some query ran out of time */
    enum lookup_tier tier; /* where the best version came from */
    struct candidate *cands;
    size_t ncands;
    struct lookup_waiter relays_wait; /* for its kind 10002, in STAGE_RELAYS */
    bool found;                       /* a valid event was stored for it */
    int64_t best_at;                  /* created_at of the best verified, to skip copies that are not newer */
    uint8_t best_id[32];
    bool has_best;
    unsigned inflight;   /* events in the ingest pipeline */
    uint64_t grace_at;   /* once found: when to stop waiting for newer versions; 0 before */
    uint64_t started_ns; /* clock_mono_ns() when first asked, for the latency histogram */
    bool done;
};

enum relay_part { PART_NONE, PART_OPEN, PART_DONE };

/* A relay a query asks, and how far it has answered. */
struct part {
    struct upstream_relay *r;
    enum relay_part state;
};

struct lookup_query {
    struct lookup *lk;
    uint64_t id;
    char subid[24];
    uint32_t kind;
    bool outbox; /* a discovered relay's (one part, not counted against max_concurrent) */
    /*
     * It asks for the authors' relay lists (kind 10002) as well, in the same REQ: an author missing upstream
     * then has its write relays stored already, without another round trip.
     */
    bool with_lists;
    struct lookup_entry **entries; /* sorted by pubkey */
    size_t n;
    struct part *parts;
    size_t nparts;
    size_t participants, finished;
    unsigned inflight;   /* its events in the ingest pipeline */
    uint64_t started_at; /* uv_now(), for the time to EOSE */
    bool answered;       /* a relay reached EOSE: an absence means something */
    bool over;           /* every entry is done; only references keep it */
    unsigned refs;       /* events in the ingest pipeline, plus one until the timer has closed */
    uint64_t deadline;
    uv_timer_t timer;
    h2o_linklist_t link; /* in lk->queued or lk->running */
};

/* An upstream event in the ingest pipeline. */
struct incoming {
    struct ingest_job job;
    bool list; /* the author's relay list, asked with its event: stored, and no answer to the entry */
    struct lookup_query *q;
    struct lookup_entry *e;
    struct upstream_relay *relay; /* held, when discovered, until the event is through */
    enum lookup_tier tier;
};

/* The kinds whose author's relays are worth finding: profiles, contact lists and relay lists. */
static const uint32_t OUTBOX_KINDS[] = {0, 3, 10002};

static bool outbox_kind(uint32_t kind)
{
    return kind == 0 || kind == 3 || kind == 10002;
}

static bool outbox_enabled(const struct lookup *lk)
{
    return lk->opt.book != NULL;
}

static void check_query(struct lookup_query *q);

static void query_unref(struct lookup_query *q);

static void next_stage(struct lookup *lk, struct lookup_entry *e);

static void entry_unref(struct lookup_entry *e)
{
    if (--e->refs > 0)
        return;
    for (size_t i = 0; i < e->ncands; i++)
        free(e->cands[i].url);
    free(e->cands);
    free(e);
}

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
        lk->stats.by_tier[e->tier]++;
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
    entry_unref(e);
}

/* Ends an entry nothing was found for, remembering the miss as what was asked deserves. */
static void finish_miss(struct lookup *lk, struct lookup_entry *e)
{
    finish_entry(lk, e, !e->unclean ? NEGATIVE_TTL_MS : e->timed_out ? TIMEOUT_TTL_MS : 0);
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

/* A filter for the newest event of `kind` of each of the query's authors. */
static void append_filter(struct buf *b, const struct lookup_query *q, uint32_t kind)
{
    char hex[64];

    buf_appendf(b, ",{\"kinds\":[%u],\"authors\":[", kind);
    for (size_t k = 0; k < q->n; k++) {
        hex_encode(q->entries[k]->pubkey, 32, hex);
        buf_append(b, k ? ",\"" : "\"", k ? 2 : 1);
        buf_append(b, hex, 64);
        buf_appendc(b, '"');
    }
    buf_appendf(b, "],\"limit\":%zu}", q->n);
}

static void send_req(struct lookup_query *q, struct part *p)
{
    struct buf b = BUF_INIT;

    buf_appendf(&b, "[\"REQ\",\"%s\"", q->subid);
    append_filter(&b, q, q->kind);
    if (q->with_lists)
        append_filter(&b, q, 10002);
    buf_appendc(&b, ']');
    /* A relay not connected now joins when it connects (on_connected). */
    if (upstream_send(p->r, b.data, b.len) == 0) {
        p->state = PART_OPEN;
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
        entry_unref(q->entries[i]);
    free(q->entries);
    free(q->parts);
    free(q);
}

static void start_queued(struct lookup *lk);

/*
 * Ends the query, at its deadline or not: open subscriptions are closed, and each entry no other query still asks
 * for is answered, or goes on to its next stage.
 */
static void end_query(struct lookup_query *q, bool timed_out)
{
    struct lookup *lk = q->lk;
    /* Only a query every relay answered may call an author absent for long. */
    bool clean = q->answered && q->finished == q->participants;

    if (q->over)
        return;
    q->over = true;
    h2o_linklist_unlink(&q->link);
    if (!q->outbox)
        lk->nrunning--;
    for (size_t i = 0; i < q->nparts; i++) {
        struct part *p = &q->parts[i];
        if (p->state == PART_OPEN)
            send_close(q, p->r);
        if (upstream_relay_discovered(p->r)) {
            if (timed_out && p->state != PART_DONE && lk->opt.book != NULL)
                relaybook_failure(lk->opt.book, upstream_relay_url(p->r), "no EOSE within upstream_timeout_ms",
                                  time(NULL));
            upstream_relay_release(p->r);
        }
    }
    for (size_t i = 0; i < q->n; i++) {
        struct lookup_entry *e = q->entries[i];
        e->outstanding--;
        e->unclean |= !clean;
        e->timed_out |= timed_out;
        if (e->done || e->outstanding > 0)
            continue;
        if (e->found)
            finish_entry(lk, e, 0);
        else
            next_stage(lk, e);
    }
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
/* Whether a relay the query has not reached yet is still connecting. */
static bool query_connecting(const struct lookup_query *q)
{
    for (size_t i = 0; i < q->nparts; i++) {
        if (q->parts[i].state == PART_NONE && upstream_relay_state(q->parts[i].r) == UPSTREAM_CONNECTING)
            return true;
    }
    return false;
}

static void check_query(struct lookup_query *q)
{
    struct lookup *lk = q->lk;
    uint64_t now, next = q->deadline;
    bool all_done = true, relays_done;

    if (q->over)
        return;
    now = uv_now(lk->loop);
    relays_done = q->finished == q->participants && (q->participants > 0 || !query_connecting(q));
    for (size_t i = 0; i < q->n; i++) {
        struct lookup_entry *e = q->entries[i];
        if (e->done)
            continue;
        /* An entry other queries still ask for waits for them, or for its grace period. */
        if (e->inflight == 0 && e->found && ((relays_done && e->outstanding == 1) || now >= e->grace_at)) {
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
    if (all_done || (relays_done && q->inflight == 0)) {
        end_query(q, false);
        return;
    }
    uv_timer_start(&q->timer, on_query_timer, next > now ? next - now : 0, 0);
}

static void start_query(struct lookup *lk, struct lookup_query *q)
{
    h2o_linklist_insert(&lk->running, &q->link);
    if (q->outbox)
        lk->stats.outbox_queries++;
    else
        lk->nrunning++, lk->stats.queries++;
    q->started_at = uv_now(lk->loop);
    q->deadline = q->started_at + lk->opt.timeout_ms;
    for (size_t i = 0; i < q->nparts; i++)
        send_req(q, &q->parts[i]);
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

/*
 * A query of `entries` (which it takes) of `relay`, or when NULL of the upstream relays of their stage: the
 * cluster's other nodes, or the others.
 */
static struct lookup_query *new_query(struct lookup *lk, uint32_t kind, struct lookup_entry **entries, size_t n,
                                      struct upstream_relay *relay)
{
    struct lookup_query *q = calloc(1, sizeof(*q));
    size_t nup = upstream_count(lk->up) - lk->opt.npeers;
    bool peers = relay == NULL && entries[0]->stage == STAGE_PEERS;
    size_t first = peers ? nup : 0, nparts = relay != NULL ? 1 : peers ? lk->opt.npeers : nup;

    if (q == NULL || (q->parts = calloc(nparts + 1, sizeof(*q->parts))) == NULL)
        abort();
    q->nparts = nparts;
    if (relay != NULL) {
        q->outbox = true;
        q->parts[0].r = relay;
        upstream_relay_hold(relay);
    } else {
        for (size_t i = 0; i < q->nparts; i++)
            q->parts[i].r = upstream_relay(lk->up, first + i);
    }
    q->lk = lk;
    q->with_lists = relay == NULL && !peers && outbox_enabled(lk) && lk->opt.max_outbox_relays > 0 &&
                    outbox_kind(kind) && kind != 10002;
    q->id = ++lk->next_query_id;
    snprintf(q->subid, sizeof(q->subid), "pfp%llu", (unsigned long long)q->id);
    q->kind = kind;
    q->entries = entries;
    q->n = n;
    q->refs = 1;
    qsort(entries, n, sizeof(*entries), cmp_entry);
    for (size_t i = 0; i < n; i++) {
        entries[i]->refs++;
        entries[i]->outstanding++;
    }
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
        enum stage stage = H2O_STRUCT_FROM_MEMBER(struct lookup_entry, link, lk->batch.next)->stage;
        struct lookup_entry **group = malloc(MAX_AUTHORS * sizeof(*group));
        size_t n = 0;

        if (group == NULL)
            abort();
        /* Takes up to MAX_AUTHORS entries of this kind and stage out of the batch, in order. */
        for (h2o_linklist_t *l = lk->batch.next, *next; l != &lk->batch && n < MAX_AUTHORS; l = next) {
            struct lookup_entry *e = H2O_STRUCT_FROM_MEMBER(struct lookup_entry, link, l);
            next = l->next;
            if (e->kind == kind && e->stage == stage) {
                h2o_linklist_unlink(l);
                group[n++] = e;
            }
        }
        h2o_linklist_insert(&lk->queued, &new_query(lk, kind, group, n, NULL)->link);
    }
    start_queued(lk);
}

/* `e` goes in the next batch of queries, which leaves batch_ms after the first entry. */
static void batch_add(struct lookup *lk, struct lookup_entry *e)
{
    h2o_linklist_insert(&lk->batch, &e->link);
    if (lk->nbatch++ == 0)
        uv_timer_start(&lk->batch_timer, on_batch_timer, lk->opt.batch_ms, 0);
}

/* --- the outbox stage ---------------------------------------------------------------------------------------- */

static bool has_hints(const struct lookup *lk, const uint8_t pubkey[32], uint32_t kind)
{
    const char *const *urls;
    return outbox_enabled(lk) && outbox_kind(kind) && hints_get(lk->hints, pubkey, &urls) > 0;
}

static bool is_configured(const struct lookup *lk, const char *url)
{
    for (size_t i = 0; i < lk->nconfigured; i++) {
        if (lk->configured[i] != NULL && strcmp(lk->configured[i], url) == 0)
            return true;
    }
    return false;
}

void lookup_hint(struct lookup *lk, const uint8_t pubkey[32], const char *url)
{
    char canon[NIP65_MAX_URL];
    uint8_t key[36];

    if (!outbox_enabled(lk) || nip65_canonical(url, canon, sizeof(canon)) != 0 || is_configured(lk, canon))
        return;
    if (!hints_add(lk->hints, pubkey, canon))
        return;
    /* A miss remembered before this hint was known says nothing about the relay it names. */
    for (size_t i = 0; i < sizeof(OUTBOX_KINDS) / sizeof(OUTBOX_KINDS[0]); i++) {
        struct lookup_negative *n;
        make_key(key, pubkey, OUTBOX_KINDS[i]);
        if ((n = keymap_del(lk->negative, key)) != NULL) {
            h2o_linklist_unlink(&n->link);
            free(n);
        }
    }
}

void lookup_hint_to(void *lk, const uint8_t pubkey[32], const char *url)
{
    lookup_hint(lk, pubkey, url);
}

static bool has_candidate(const struct candidate *c, size_t n, const char *url)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(c[i].url, url) == 0)
            return true;
    }
    return false;
}

static void add_candidate(struct lookup_entry *e, const char *url, bool hint)
{
    if ((e->cands[e->ncands].url = strdup(url)) == NULL)
        abort();
    e->cands[e->ncands++].hint = hint;
}

static void on_outbox_timer(uv_timer_t *t);

/*
 * Chooses the relays to ask for `e`: up to max_outbox_relays of the write relays of `list` (its kind 10002, or
 * NULL), the healthiest first, and its hints; none that is an upstream relay, or skipped for its record.
 */
static void plan(struct lookup *lk, struct lookup_entry *e, const struct event_view *list)
{
    struct nip65_list *rl = calloc(1, sizeof(*rl));
    const char *writes[NIP65_MAX_RELAYS];
    const char *const *hinted;
    size_t nh = hints_get(lk->hints, e->pubkey, &hinted);
    int64_t now = time(NULL);
    size_t nw = 0;

    if (rl == NULL)
        abort();
    if (list != NULL) {
        json_t *ev = json_loadb(list->json, list->json_len, 0, NULL);
        nip65_parse(json_object_get(ev, "tags"), rl);
        json_decref(ev);
    }
    for (size_t i = 0; i < rl->n; i++) {
        if (!rl->relays[i].write || is_configured(lk, rl->relays[i].url))
            continue;
        if (relaybook_backing_off(lk->opt.book, rl->relays[i].url, now)) {
            lk->stats.skipped_backoff++;
            continue;
        }
        writes[nw++] = rl->relays[i].url;
    }
    relaybook_rank(lk->opt.book, writes, nw);
    if (nw > lk->opt.max_outbox_relays)
        nw = lk->opt.max_outbox_relays;
    if ((e->cands = calloc(nw + nh, sizeof(*e->cands))) == NULL)
        abort();
    for (size_t i = 0; i < nw; i++)
        add_candidate(e, writes[i], false);
    for (size_t i = 0; i < nh; i++) {
        if (has_candidate(e->cands, e->ncands, hinted[i]))
            continue;
        if (relaybook_backing_off(lk->opt.book, hinted[i], now)) {
            lk->stats.skipped_backoff++;
            continue;
        }
        add_candidate(e, hinted[i], true);
    }
    free(rl);
    if (e->ncands == 0) {
        finish_miss(lk, e);
        return;
    }
    e->stage = STAGE_OUTBOX;
    h2o_linklist_insert(&lk->outbox_batch, &e->link);
    if (!uv_is_active((uv_handle_t *)&lk->outbox_timer))
        uv_timer_start(&lk->outbox_timer, on_outbox_timer, lk->opt.batch_ms, 0);
}

static void on_relay_list(struct lookup_waiter *w, const struct event_view *ev)
{
    struct lookup_entry *e = H2O_STRUCT_FROM_MEMBER(struct lookup_entry, relays_wait, w);
    struct lookup *lk = e->lk;

    if (lk->closing)
        finish_miss(lk, e);
    else
        plan(lk, e, ev);
}

/* Nothing from the upstream relays: the pubkey's own relays and hints are asked next, if it has any. */
static void next_stage(struct lookup *lk, struct lookup_entry *e)
{
    struct event_view ev;
    void *copy;

    /* What the other nodes did not have is asked of the upstream relays, in the next batch. */
    if (e->stage == STAGE_PEERS) {
        e->stage = STAGE_UPSTREAM;
        if (!lk->closing && upstream_count(lk->up) > lk->opt.npeers) {
            batch_add(lk, e);
            return;
        }
    }
    if (lk->closing || !outbox_enabled(lk) || !outbox_kind(e->kind) || e->stage != STAGE_UPSTREAM) {
        finish_miss(lk, e);
        return;
    }
    e->stage = STAGE_RELAYS;
    /* A relay list is looked for with hints only: its own write relays are what it would tell. */
    if (e->kind == 10002) {
        plan(lk, e, NULL);
        return;
    }
    if (store_get_latest_copy(lk->store, e->pubkey, 10002, &ev, &copy) == 0) {
        plan(lk, e, &ev);
        free(copy);
        return;
    }
    /* The upstream relays were asked for it with the event: only its hints are left. */
    if (upstream_count(lk->up) > 0) {
        plan(lk, e, NULL);
        return;
    }
    e->relays_wait.cb = on_relay_list;
    lookup_get(lk, e->pubkey, 10002, &e->relays_wait);
}

/* Where a relay of the query stands among the query's parts. */
static size_t part_of(const struct lookup_query *q, const struct upstream_relay *r)
{
    for (size_t i = 0; i < q->nparts; i++) {
        if (q->parts[i].r == r)
            return i;
    }
    return SIZE_MAX;
}

/* One query per relay and kind, of up to MAX_AUTHORS entries: each entry in the query of each of its relays. */
static void on_outbox_timer(uv_timer_t *t)
{
    struct lookup *lk = t->data;
    struct lookup_query **qs = NULL;
    size_t nq = 0, cap = 0;
    char err[160];

    while (!h2o_linklist_is_empty(&lk->outbox_batch)) {
        struct lookup_entry *e = H2O_STRUCT_FROM_MEMBER(struct lookup_entry, link, lk->outbox_batch.next);
        h2o_linklist_unlink(&e->link);
        for (size_t c = 0; c < e->ncands && !lk->closing; c++) {
            struct upstream_relay *r = upstream_discover(lk->up, e->cands[c].url, err, sizeof(err));
            struct lookup_query *q = NULL;

            if (r == NULL) {
                log_debug("lookup: %s not asked: %s", e->cands[c].url, err);
                continue;
            }
            for (size_t i = 0; i < nq && q == NULL; i++) {
                if (qs[i]->parts[0].r == r && qs[i]->kind == e->kind && qs[i]->n < MAX_AUTHORS)
                    q = qs[i];
            }
            if (q == NULL) {
                struct lookup_entry **group = malloc(MAX_AUTHORS * sizeof(*group));
                if (group == NULL)
                    abort();
                if (nq == cap && (qs = realloc(qs, (cap = cap ? cap * 2 : 16) * sizeof(*qs))) == NULL)
                    abort();
                q = qs[nq++] = new_query(lk, e->kind, group, 0, r);
            }
            q->entries[q->n++] = e;
            e->refs++;
            e->outstanding++;
        }
        /* No relay could be asked: the entry is answered now (from the loop, in this timer). */
        if (e->outstanding == 0)
            finish_miss(lk, e);
    }
    for (size_t i = 0; i < nq; i++) {
        qsort(qs[i]->entries, qs[i]->n, sizeof(*qs[i]->entries), cmp_entry);
        start_query(lk, qs[i]);
    }
    free(qs);
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
    /* Without upstream relays, only a pubkey with hints has somewhere to be asked. */
    if (lk->closing || (upstream_count(lk->up) == 0 && !has_hints(lk, pubkey, kind))) {
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
        e->lk = lk;
        memcpy(e->pubkey, pubkey, 32);
        e->kind = kind;
        e->refs = 1;
        e->stage = lk->opt.npeers > 0 ? STAGE_PEERS : STAGE_UPSTREAM;
        e->tier = LOOKUP_TIER_UPSTREAM;
        e->started_ns = clock_mono_ns();
        h2o_linklist_init_anchor(&e->waiters);
        keymap_put(lk->active, key, e);
        batch_add(lk, e);
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

/* Which tier a relay of a query is for `e`. */
static enum lookup_tier tier_of(const struct lookup_query *q, const struct lookup_entry *e,
                                const struct upstream_relay *r)
{
    if (!q->outbox)
        return LOOKUP_TIER_UPSTREAM;
    for (size_t i = 0; i < e->ncands; i++) {
        if (e->cands[i].hint && strcmp(e->cands[i].url, upstream_relay_url(r)) == 0)
            return LOOKUP_TIER_HINT;
    }
    return LOOKUP_TIER_OUTBOX;
}

/* A verified version of `e`'s event is stored; it came from `tier`. */
static void found(struct lookup *lk, struct lookup_entry *e, int64_t created_at, const uint8_t id[32],
                  enum lookup_tier tier)
{
    if (beats_best(e, created_at, id)) {
        e->tier = tier;
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
    q->inflight--;
    /* A forged copy changes nothing: only verified events count as the best in hand. */
    if (status == -EKEYREJECTED)
        upstream_dropped(in->relay, "event with a bad signature");
    else if (status >= 0 && status != INGEST_EPHEMERAL && !in->list)
        found(q->lk, in->e, ev->created_at, ev->id, in->tier);
    if (upstream_relay_discovered(in->relay))
        upstream_relay_release(in->relay);
    free(in);
    check_query(q);
    query_unref(q);
}

/* An author's relay list, asked with its event: stored (the entry waits for it, to read it if it goes on). */
static void submit_list(struct lookup *lk, struct lookup_query *q, struct lookup_entry *e, struct upstream_relay *r,
                        const struct event *ev)
{
    struct incoming *in = calloc(1, sizeof(*in));

    if (in == NULL)
        abort();
    in->job.done = on_ingested;
    in->list = true;
    in->q = q;
    in->e = e;
    in->relay = r;
    if (ingest_submit(lk->ingest, ev, &in->job) == INGEST_DUPLICATE) {
        free(in);
        return;
    }
    e->inflight++;
    q->inflight++;
    q->refs++;
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
    e = query_entry(q, ev.pubkey);
    if (e != NULL && q->with_lists && ev.kind == 10002 && part_of(q, r) != SIZE_MAX) {
        submit_list(lk, q, e, r, &ev);
    } else if (ev.kind != q->kind || e == NULL || part_of(q, r) == SIZE_MAX) {
        upstream_dropped(r, "event of a kind or author not asked for");
    } else if (!e->done && beats_best(e, ev.created_at, ev.id)) {
        /* Stored through the same path as a client's EVENT: the relay's subscribers and listeners hear of it. */
        if ((in = calloc(1, sizeof(*in))) == NULL)
            abort();
        in->job.done = on_ingested;
        in->q = q;
        in->e = e;
        in->relay = r;
        in->tier = tier_of(q, e, r);
        if (ingest_submit(lk->ingest, &ev, &in->job) == INGEST_DUPLICATE) {
            found(lk, e, ev.created_at, ev.id, in->tier);
            free(in);
            check_query(q);
        } else {
            e->inflight++;
            q->inflight++;
            q->refs++;
            if (upstream_relay_discovered(r))
                upstream_relay_hold(r);
        }
    }
    /* Otherwise already answered, or not newer than a verified version: nothing to check. */
    event_free(&ev);
}

/* A relay has said all it will for `q`: EOSE, CLOSED, or its connection went. */
static void relay_finished(struct lookup_query *q, size_t i, bool answered)
{
    struct part *p = &q->parts[i];

    if (i == SIZE_MAX || p->state != PART_OPEN)
        return;
    p->state = PART_DONE;
    q->finished++;
    q->answered |= answered;
    if (answered && upstream_relay_discovered(p->r) && q->lk->opt.book != NULL)
        relaybook_success(q->lk->opt.book, upstream_relay_url(p->r), (uint32_t)(uv_now(q->lk->loop) - q->started_at),
                          time(NULL));
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
        relay_finished(q, part_of(q, r), verb[0] == 'E');
    } else if (strcmp(verb, "NOTICE") != 0 && strcmp(verb, "OK") != 0 && strcmp(verb, "AUTH") != 0) {
        upstream_dropped(r, "unknown message type");
    }
}

/* A relay that connects while queries are running joins them. */
static void on_connected(void *data, struct upstream_relay *r)
{
    struct lookup *lk = data;

    for (h2o_linklist_t *l = lk->running.next; l != &lk->running; l = l->next) {
        struct lookup_query *q = H2O_STRUCT_FROM_MEMBER(struct lookup_query, link, l);
        size_t i = part_of(q, r);
        if (!q->over && i != SIZE_MAX && q->parts[i].state == PART_NONE)
            send_req(q, &q->parts[i]);
    }
}

static void on_disconnected(void *data, struct upstream_relay *r)
{
    struct lookup *lk = data;
    struct lookup_query **qs = NULL;
    size_t n = 0, cap = 0;

    /*
     * The queries that asked it are taken first and held: settling one may end others (its entries' callbacks
     * start queries, which may end at once), so the list cannot be walked meanwhile.
     */
    for (h2o_linklist_t *l = lk->running.next; l != &lk->running; l = l->next) {
        struct lookup_query *q = H2O_STRUCT_FROM_MEMBER(struct lookup_query, link, l);
        size_t i = part_of(q, r);
        if (i == SIZE_MAX || q->parts[i].state == PART_DONE)
            continue;
        if (n == cap && (qs = realloc(qs, (cap = cap ? cap * 2 : 8) * sizeof(*qs))) == NULL)
            abort();
        q->refs++;
        qs[n++] = q;
    }
    for (size_t k = 0; k < n; k++) {
        struct lookup_query *q = qs[k];
        size_t i = part_of(q, r);
        if (q->parts[i].state == PART_OPEN) {
            relay_finished(q, i, false);
        } else {
            /* A discovered relay is not re-opened for this query: it failed to connect. */
            if (upstream_relay_discovered(r))
                q->parts[i].state = PART_DONE;
            check_query(q);
        }
        query_unref(q);
    }
    free(qs);
    /* A discovered relay that failed while it was asked is skipped for a while. */
    if (n > 0 && upstream_relay_discovered(r) && lk->opt.book != NULL && !lk->closing)
        relaybook_failure(lk->opt.book, upstream_relay_url(r), upstream_relay_error(r), time(NULL));
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
    h2o_linklist_init_anchor(&lk->outbox_batch);
    lk->hints = hints_new(HINTS_MAX);
    lk->nconfigured = upstream_count(up);
    if ((lk->configured = calloc(lk->nconfigured + 1, sizeof(*lk->configured))) == NULL)
        abort();
    for (size_t i = 0; i < lk->nconfigured; i++) {
        char canon[NIP65_MAX_URL];
        if (nip65_canonical(upstream_relay_url(upstream_relay(up, i)), canon, sizeof(canon)) == 0 &&
            (lk->configured[i] = strdup(canon)) == NULL)
            abort();
    }
    uv_timer_init(loop, &lk->batch_timer);
    uv_timer_init(loop, &lk->ready_timer);
    uv_timer_init(loop, &lk->outbox_timer);
    lk->batch_timer.data = lk->ready_timer.data = lk->outbox_timer.data = lk;
    upstream_add_handler(up, &upstream_handler, lk);
    *out = lk;
    return 0;
}

bool lookup_enabled(const struct lookup *lk)
{
    return upstream_count(lk->up) > 0 || outbox_enabled(lk);
}

void lookup_count_local(struct lookup *lk)
{
    if (lk != NULL)
        lk->stats.by_tier[LOOKUP_TIER_LOCAL]++;
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
    /* Entries whose relays were chosen are answered without asking them. */
    uv_timer_stop(&lk->outbox_timer);
    on_outbox_timer(&lk->outbox_timer);
    on_ready(&lk->ready_timer);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct lookup *lk = h->data;

    if (--lk->timers_open > 0)
        return;
    keymap_free(lk->active, NULL);
    keymap_free(lk->negative, free);
    hints_free(lk->hints);
    /* The upstream may be gone by now: the count is the lookup's own. */
    for (size_t i = 0; i < lk->nconfigured; i++)
        free(lk->configured[i]);
    free(lk->configured);
    free(lk);
}

void lookup_free(struct lookup *lk)
{
    lk->timers_open = 3;
    uv_close((uv_handle_t *)&lk->batch_timer, on_timer_closed);
    uv_close((uv_handle_t *)&lk->ready_timer, on_timer_closed);
    uv_close((uv_handle_t *)&lk->outbox_timer, on_timer_closed);
}
