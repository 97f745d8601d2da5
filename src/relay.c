/* relay.c -- the Nostr relay: NIP-01 over WebSocket and NIP-11. */
#include "relay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "event.h"
#include "filter.h"
#include "hex.h"
#include "log.h"
#include "negserve.h"
#include "ws.h"

#include <h2o/linklist.h>
#include <h2o/memory.h>

/* Stored results are sent while less than this is queued, the rest as the client reads. */
#define STREAM_HIGH_WATER (256 * 1024)
#define STREAM_LOW_WATER  (64 * 1024)
/* Reading pauses while this many of a connection's events are in flight, and resumes at half. */
#define INFLIGHT_PAUSE 512
/* Past this, events are refused: frames already read when the pause began can still arrive. */
#define INFLIGHT_MAX 2048
/* Index entries a single REQ may examine. */
#define SCAN_BUDGET      200000
#define PING_INTERVAL_MS 60000
/* Pairs of author and kind one REQ, and one connection at a time, may have looked up upstream. */
#define MAX_LOOKUPS_PER_REQ  5000
#define MAX_LOOKUPS_PER_CONN 10000

struct sub;

/* One lookup a subscription waits for. */
struct sub_wait {
    struct lookup_waiter w;
    struct sub *sub;
};

struct sub {
    h2o_linklist_t link; /* in conn->subs */
    struct relay_conn *conn;
    struct sub_wait *waits; /* upstream lookups to finish before the stored matches go out */
    size_t nwaits, waiting;
    char *id; /* owned, NUL-terminated */
    size_t id_len;
    struct filter *filters;
    size_t nfilters;
    struct store_hit *pending; /* stored matches still to send, newest first */
    uint64_t snapshot;         /* the last commit its query saw: later ones are sent live */
    size_t npending, sent;
    bool eose_sent;
};

struct relay_conn {
    struct relay *relay;
    struct ws_conn *ws;  /* NULL once the connection is gone */
    h2o_linklist_t subs; /* struct sub */
    size_t nsubs;
    size_t inflight;
    size_t looking;            /* upstream lookups its subscriptions wait for */
    unsigned refs;             /* one for the connection, one per event in flight */
    struct negserve_peer *neg; /* its NIP-77 sessions */
    bool peer;                 /* another node of the cluster */
    h2o_linklist_t link;       /* in relay->conns */
};

struct relay {
    struct relay_options opt; /* accepted_kinds points to the relay's copy; the strings are not kept */
    struct store *store;
    struct ingest *ingest;
    struct lookup *lookup; /* profiles, contact lists and relay lists missing here */
    struct negserve *neg;  /* NIP-77 */
    json_t *info;          /* the NIP-11 document */
    h2o_linklist_t conns;  /* struct relay_conn */
    bool closing;
    http_handler_fn fallback; /* GET / that is neither a WebSocket nor a NIP-11 request */
    void *fallback_data;
    struct ws_budget budget; /* what waits for all clients together */
    struct relay_stats stats;
};

/* A client's EVENT in the ingest pipeline. */
struct client_event {
    struct ingest_job job;
    struct relay_conn *conn;
};

static bool kind_accepted(const struct relay *r, uint32_t kind)
{
    for (size_t i = 0; i < r->opt.naccepted_kinds; i++) {
        if (r->opt.accepted_kinds[i] == (int64_t)kind)
            return true;
    }
    return false;
}

static void conn_unref(struct relay_conn *c)
{
    if (--c->refs == 0)
        free(c);
}

static void sub_free(struct sub *s)
{
    if (s->waiting > 0)
        s->conn->looking -= s->waiting;
    for (size_t i = 0; i < s->nwaits && s->waiting > 0; i++)
        lookup_cancel(s->conn->relay->lookup, &s->waits[i].w);
    free(s->waits);
    for (size_t i = 0; i < s->nfilters; i++)
        filter_free(&s->filters[i]);
    free(s->filters);
    free(s->pending);
    free(s->id);
    free(s);
}

/*
 * Queues a message. A client whose backlog is already past max_client_queue_bytes
 * (or past its share of max_total_queue_bytes, when that is spent) is disconnected
 * instead, so a connection holds at most that plus one message; on_ws_overflow
 * tells of it once.
 */
static void conn_send(struct relay_conn *c, const struct buf *msg)
{
    if (c->ws != NULL)
        ws_send_text(c->ws, msg->data, msg->len);
}

static void send_notice(struct relay_conn *c, const char *msg)
{
    struct buf b = BUF_INIT;
    buf_appends(&b, "[\"NOTICE\",");
    buf_json_string(&b, msg, strlen(msg), BUF_JSON_WIRE);
    buf_appendc(&b, ']');
    conn_send(c, &b);
    buf_free(&b);
}

/* An OK naming the event by `id`, `len` bytes of whatever the client sent as its id. */
static void send_ok_as(struct relay_conn *c, const char *id, size_t len, bool ok, const char *msg)
{
    struct buf b = BUF_INIT;

    buf_appends(&b, "[\"OK\",");
    buf_json_string(&b, id, len, BUF_JSON_WIRE);
    buf_appends(&b, ok ? ",true," : ",false,");
    buf_json_string(&b, msg, strlen(msg), BUF_JSON_WIRE);
    buf_appendc(&b, ']');
    conn_send(c, &b);
    buf_free(&b);
}

static void send_ok(struct relay_conn *c, const uint8_t id[32], bool ok, const char *msg)
{
    char hex[64];

    hex_encode(id, 32, hex);
    send_ok_as(c, hex, 64, ok, msg);
}

/*
 * Refuses an EVENT whose event could not be parsed, naming it as the client did:
 * its "id" as sent when that is a string, the JSON text of any other value, ""
 * when there is none, so that every EVENT gets its OK.
 */
static void refuse_unparsed(struct relay_conn *c, json_t *obj, const char *msg)
{
    json_t *jid = json_is_object(obj) ? json_object_get(obj, "id") : NULL;
    char *text;

    if (json_is_string(jid)) {
        send_ok_as(c, json_string_value(jid), json_string_length(jid), false, msg);
    } else if (jid != NULL && (text = json_dumps(jid, JSON_COMPACT | JSON_ENCODE_ANY)) != NULL) {
        send_ok_as(c, text, strlen(text), false, msg);
        free(text);
    } else {
        send_ok_as(c, "", 0, false, msg);
    }
}

static void send_closed(struct relay_conn *c, const char *subid, size_t len, const char *msg)
{
    struct buf b = BUF_INIT;
    buf_appends(&b, "[\"CLOSED\",");
    buf_json_string(&b, subid, len, BUF_JSON_WIRE);
    buf_appendc(&b, ',');
    buf_json_string(&b, msg, strlen(msg), BUF_JSON_WIRE);
    buf_appendc(&b, ']');
    conn_send(c, &b);
    buf_free(&b);
}

static void send_event(struct relay_conn *c, const struct sub *s, const char *json, size_t len)
{
    struct buf b = BUF_INIT;
    buf_reserve(&b, len + s->id_len + 16);
    buf_appends(&b, "[\"EVENT\",");
    buf_json_string(&b, s->id, s->id_len, BUF_JSON_WIRE);
    buf_appendc(&b, ',');
    buf_append(&b, json, len);
    buf_appendc(&b, ']');
    conn_send(c, &b);
    buf_free(&b);
}

/*
 * Sends stored matches of every subscription while the connection's backlog is
 * small, then EOSE once a subscription has none left; on_drain calls it again.
 */
static void pump(struct relay_conn *c)
{
    struct relay *r = c->relay;
    MDB_txn *txn;

    for (h2o_linklist_t *l = c->subs.next; l != &c->subs && c->ws != NULL; l = l->next) {
        struct sub *s = H2O_STRUCT_FROM_MEMBER(struct sub, link, l);
        if (s->eose_sent || s->waiting > 0)
            continue;
        if (s->sent < s->npending) {
            if (store_read_begin(r->store, &txn) != 0)
                return;
            while (s->sent < s->npending && c->ws != NULL && ws_queued(c->ws) < STREAM_HIGH_WATER) {
                struct event_view ev;
                /* An event replaced since the query ran is skipped. */
                if (store_get_event(r->store, txn, s->pending[s->sent].id, &ev) == 0)
                    send_event(c, s, ev.json, ev.json_len);
                s->sent++;
            }
            store_read_end(r->store, txn);
        }
        if (s->sent < s->npending)
            return;
        if (c->ws != NULL) {
            struct buf b = BUF_INIT;
            buf_appends(&b, "[\"EOSE\",");
            buf_json_string(&b, s->id, s->id_len, BUF_JSON_WIRE);
            buf_appendc(&b, ']');
            conn_send(c, &b);
            buf_free(&b);
        }
        s->eose_sent = true;
        free(s->pending);
        s->pending = NULL;
        s->npending = s->sent = 0;
    }
}

static struct sub *find_sub(struct relay_conn *c, const char *id, size_t len)
{
    for (h2o_linklist_t *l = c->subs.next; l != &c->subs; l = l->next) {
        struct sub *s = H2O_STRUCT_FROM_MEMBER(struct sub, link, l);
        if (s->id_len == len && memcmp(s->id, id, len) == 0)
            return s;
    }
    return NULL;
}

static void remove_sub(struct relay_conn *c, struct sub *s)
{
    h2o_linklist_unlink(&s->link);
    c->nsubs--;
    sub_free(s);
}

/* Finds the stored matches of a subscription and starts sending them. */
static void run_query(struct relay_conn *c, struct sub *s)
{
    if (store_query(c->relay->store, s->filters, s->nfilters, SCAN_BUDGET, &s->pending, &s->npending, &s->snapshot) !=
        0) {
        send_closed(c, s->id, s->id_len, "error: could not read the database");
        remove_sub(c, s);
        return;
    }
    pump(c);
}

static void on_looked_up(struct lookup_waiter *w, const struct event_view *ev)
{
    struct sub *s = H2O_STRUCT_FROM_MEMBER(struct sub_wait, w, w)->sub;

    (void)ev; /* what was found is stored by now, so the query finds it */
    s->conn->looking--;
    if (--s->waiting == 0)
        run_query(s->conn, s);
}

static bool lookup_kind(const struct relay *r, uint32_t kind)
{
    return (kind == 0 || kind == 3 || kind == 10002) && kind_accepted(r, kind);
}

struct lookup_pair {
    const uint8_t *pubkey;
    uint32_t kind;
};

static int cmp_pair(const void *a, const void *b)
{
    const struct lookup_pair *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    return memcmp(x->pubkey, y->pubkey, 32);
}

/*
 * Starts upstream lookups for the (author, kind) pairs the subscription's
 * filters name that are not stored here. Returns how many it waits for.
 */
static size_t start_lookups(struct relay *r, struct sub *s)
{
    struct lookup_pair *pairs = NULL;
    size_t n = 0, cap = MAX_LOOKUPS_PER_REQ;
    MDB_txn *txn;

    if (s->conn->peer)
        return 0;
    /* Past its share, a connection's REQs are answered from what is stored here. */
    if (s->conn->looking + cap > MAX_LOOKUPS_PER_CONN)
        cap = MAX_LOOKUPS_PER_CONN - s->conn->looking;
    if (cap == 0 || r->lookup == NULL || !lookup_enabled(r->lookup) || store_read_begin(r->store, &txn) != 0)
        return 0;
    for (size_t f = 0; f < s->nfilters; f++) {
        const struct filter *fl = &s->filters[f];
        if (!fl->has_authors || !fl->has_kinds || fl->has_ids || fl->limit == 0)
            continue;
        for (size_t k = 0; k < fl->nkinds; k++) {
            if (!lookup_kind(r, fl->kinds[k]))
                continue;
            for (size_t a = 0; a < fl->nauthors && n < cap; a++) {
                struct event_view ev;
                if (store_get_latest(r->store, txn, fl->authors[a], fl->kinds[k], &ev) == 0)
                    continue;
                if (pairs == NULL && (pairs = calloc(MAX_LOOKUPS_PER_REQ, sizeof(*pairs))) == NULL)
                    abort();
                pairs[n].pubkey = fl->authors[a];
                pairs[n].kind = fl->kinds[k];
                n++;
            }
        }
    }
    store_read_end(r->store, txn);
    if (n == 0)
        return 0;
    /* Each pair once, so that the subscription never waits twice on one lookup. */
    qsort(pairs, n, sizeof(*pairs), cmp_pair);
    size_t unique = 0;
    for (size_t i = 0; i < n; i++) {
        if (unique == 0 || cmp_pair(&pairs[unique - 1], &pairs[i]) != 0)
            pairs[unique++] = pairs[i];
    }
    n = unique;

    if ((s->waits = calloc(n, sizeof(*s->waits))) == NULL)
        abort();
    s->nwaits = s->waiting = n;
    s->conn->looking += n;
    for (size_t i = 0; i < n; i++) {
        s->waits[i].sub = s;
        s->waits[i].w.cb = on_looked_up;
        lookup_get(r->lookup, pairs[i].pubkey, pairs[i].kind, &s->waits[i].w);
    }
    free(pairs);
    return n;
}

static void handle_req(struct relay_conn *c, json_t *msg)
{
    struct relay *r = c->relay;
    const struct relay_options *opt = &r->opt;
    size_t nfilters = json_array_size(msg) - 2, id_len;
    json_t *jid = json_array_get(msg, 1);
    const char *id;
    struct sub *s, *existing;
    char reason[256], closed[320];

    if (!json_is_string(jid)) {
        send_notice(c, "invalid: REQ needs a subscription id string: [\"REQ\", <id>, <filter>, ...]");
        return;
    }
    id = json_string_value(jid);
    id_len = json_string_length(jid);
    if (id_len == 0 || id_len > opt->max_subid_length) {
        snprintf(closed, sizeof(closed), "invalid: subscription id must be 1 to %zu characters", opt->max_subid_length);
        send_closed(c, id, id_len, closed);
        return;
    }
    if (json_array_size(msg) < 3) {
        send_closed(c, id, id_len, "invalid: REQ needs at least one filter");
        return;
    }
    if (nfilters > opt->max_filters) {
        snprintf(closed, sizeof(closed), "invalid: too many filters (at most %zu)", opt->max_filters);
        send_closed(c, id, id_len, closed);
        return;
    }
    existing = find_sub(c, id, id_len);
    if (existing == NULL && c->nsubs >= opt->max_subscriptions) {
        snprintf(closed, sizeof(closed), "rate-limited: too many subscriptions (at most %zu per connection)",
                 opt->max_subscriptions);
        send_closed(c, id, id_len, closed);
        return;
    }

    if ((s = calloc(1, sizeof(*s))) == NULL || (s->filters = calloc(nfilters, sizeof(*s->filters))) == NULL ||
        (s->id = malloc(id_len + 1)) == NULL)
        abort();
    memcpy(s->id, id, id_len + 1);
    s->id_len = id_len;
    for (size_t i = 0; i < nfilters; i++) {
        if (filter_parse(json_array_get(msg, i + 2), opt->max_limit, &s->filters[i], reason, sizeof(reason)) != 0) {
            snprintf(closed, sizeof(closed), "invalid: filter %zu: %s", i, reason);
            send_closed(c, id, id_len, closed);
            sub_free(s);
            return;
        }
        s->nfilters = i + 1;
    }
    /* A REQ with the id of an open subscription replaces it. */
    if (existing != NULL)
        remove_sub(c, existing);
    s->conn = c;
    h2o_linklist_insert(&c->subs, &s->link);
    c->nsubs++;
    r->stats.subscriptions_total++;
    log_debug("relay: REQ \"%s\" with %zu filter(s)", s->id, s->nfilters);
    if (start_lookups(r, s) == 0)
        run_query(c, s);
}

static void handle_close(struct relay_conn *c, json_t *msg)
{
    json_t *jid = json_array_get(msg, 1);
    struct sub *s;

    if (json_array_size(msg) != 2 || !json_is_string(jid)) {
        send_notice(c, "invalid: CLOSE must be [\"CLOSE\", <subscription id>]");
        return;
    }
    if ((s = find_sub(c, json_string_value(jid), json_string_length(jid))) != NULL)
        remove_sub(c, s);
}

/*
 * Sends a newly stored event (stored by `commit`), or an ephemeral one
 * (`commit` 0), to every subscription it matches, but for those whose query
 * already saw it: the writer commits before the loop hears of it.
 */
static void broadcast(struct relay *r, const struct event_view *ev, uint64_t commit)
{
    for (h2o_linklist_t *cl = r->conns.next, *next; cl != &r->conns; cl = next) {
        struct relay_conn *c = H2O_STRUCT_FROM_MEMBER(struct relay_conn, link, cl);
        next = cl->next;
        for (h2o_linklist_t *sl = c->subs.next; sl != &c->subs && c->ws != NULL; sl = sl->next) {
            struct sub *s = H2O_STRUCT_FROM_MEMBER(struct sub, link, sl);
            /* A subscription still waiting for lookups sends its stored matches later, these included. */
            if (s->waiting > 0 || (commit != 0 && commit <= s->snapshot))
                continue;
            for (size_t i = 0; i < s->nfilters; i++) {
                if (filter_match(&s->filters[i], ev)) {
                    send_event(c, s, ev->json, ev->json_len);
                    break;
                }
            }
        }
    }
}

static void on_event_stored(void *data, const struct event_view *ev, uint64_t commit)
{
    struct relay *r = data;
    r->stats.events_stored++;
    broadcast(r, ev, commit);
}

static void on_ingested(struct ingest_job *job, int status, const struct event_view *ev)
{
    struct client_event *ce = H2O_STRUCT_FROM_MEMBER(struct client_event, job, job);
    struct relay_conn *c = ce->conn;
    struct relay *r = c->relay;
    const char *msg = "";

    switch (status) {
    case INGEST_STORED:
        if (!c->peer && r->opt.on_accepted != NULL)
            r->opt.on_accepted(r->opt.accepted_ctx, ev);
        break;
    case INGEST_EPHEMERAL: broadcast(r, ev, 0); break;
    case INGEST_DUPLICATE:
        r->stats.events_duplicate++;
        msg = "duplicate: already have this event";
        break;
    case INGEST_SUPERSEDED:
        /* Neither stored nor served: a client whose clock is behind must not be told it was saved. */
        r->stats.events_rejected++;
        msg = "replaced: have newer event";
        break;
    case -EKEYREJECTED:
        r->stats.events_rejected++;
        msg = "invalid: bad signature";
        break;
    case -EFBIG:
        log_error("relay: the database is full; raise database_max_size_mb");
        msg = "error: the relay's database is full";
        break;
    case -ENOSPC:
        log_error("relay: the disk of database_path is full; free space on it");
        msg = "error: the relay's disk is full";
        break;
    default: msg = "error: could not store the event"; break;
    }
    if (c->ws != NULL) {
        send_ok(c, ev->id, status >= 0 && status != INGEST_SUPERSEDED, msg);
        c->inflight--;
        if (c->inflight == INFLIGHT_PAUSE / 2)
            ws_pause(c->ws, false);
    }
    free(ce);
    conn_unref(c);
}

static void handle_event(struct relay_conn *c, json_t *msg)
{
    struct relay *r = c->relay;
    json_t *obj = json_array_get(msg, 1);
    struct event ev;
    struct client_event *ce;
    char reason[200], text[300];
    int rc;

    r->stats.events_received++;
    if (json_array_size(msg) != 2 || !json_is_object(obj)) {
        r->stats.events_rejected++;
        refuse_unparsed(c, obj, "invalid: EVENT must be [\"EVENT\", <event object>]");
        return;
    }
    if ((rc = ingest_check(r->ingest, obj, &ev, reason, sizeof(reason))) != 0) {
        r->stats.events_rejected++;
        snprintf(text, sizeof(text), "invalid: %s", reason);
        if (rc == -EINVAL)
            refuse_unparsed(c, obj, text);
        else
            send_ok(c, ev.id, false, text);
        return;
    }
    if (!kind_accepted(r, ev.kind)) {
        r->stats.events_rejected++;
        snprintf(text, sizeof(text), "blocked: kind %u is not accepted by this relay", ev.kind);
        send_ok(c, ev.id, false, text);
        goto out;
    }
    if (c->inflight >= INFLIGHT_MAX) {
        send_ok(c, ev.id, false, "rate-limited: too many events awaiting their OK on this connection");
        goto out;
    }
    if ((ce = calloc(1, sizeof(*ce))) == NULL)
        abort();
    ce->job.done = on_ingested;
    ce->conn = c;
    if (ingest_submit(r->ingest, &ev, &ce->job) == INGEST_DUPLICATE) {
        free(ce);
        r->stats.events_duplicate++;
        send_ok(c, ev.id, true, "duplicate: already have this event");
        goto out;
    }
    c->refs++;
    if (++c->inflight == INFLIGHT_PAUSE)
        ws_pause(c->ws, true);

out:
    event_free(&ev);
}

static void on_ws_message(struct ws_conn *ws, const uint8_t *data, size_t len, bool binary)
{
    struct relay_conn *c = ws_data(ws);
    json_error_t err;
    json_t *msg;
    const char *verb;
    char text[300];

    if (binary) {
        send_notice(c, "error: binary messages are not supported; send JSON text");
        return;
    }
    if ((msg = json_loadb((const char *)data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &err)) ==
        NULL) {
        snprintf(text, sizeof(text), "error: could not parse the message as JSON: %s", err.text);
        send_notice(c, text);
        return;
    }
    if (!json_is_array(msg) || !json_is_string(json_array_get(msg, 0))) {
        send_notice(c, "error: a message must be a JSON array that starts with its type, such as [\"REQ\", ...]");
        goto out;
    }
    verb = json_string_value(json_array_get(msg, 0));
    if (strcmp(verb, "EVENT") == 0) {
        handle_event(c, msg);
    } else if (strcmp(verb, "REQ") == 0) {
        handle_req(c, msg);
    } else if (strcmp(verb, "CLOSE") == 0) {
        handle_close(c, msg);
    } else if (!negserve_handle(c->neg, verb, msg)) {
        snprintf(text, sizeof(text), "error: unknown message type \"%.40s\"", verb);
        send_notice(c, text);
    }
out:
    json_decref(msg);
}

static void on_ws_drain(struct ws_conn *ws)
{
    pump(ws_data(ws));
}

static void on_ws_overflow(struct ws_conn *ws, size_t queued)
{
    struct relay_conn *c = ws_data(ws);
    struct relay *r = c->relay;

    r->stats.slow_clients_closed++;
    log_info("relay: closing a client that does not read: %zu bytes were waiting for it (max_client_queue_bytes %zu, "
             "max_total_queue_bytes %zu)",
             queued, r->opt.max_client_queue_bytes, r->opt.max_total_queue_bytes);
}

static void on_ws_close(struct ws_conn *ws)
{
    struct relay_conn *c = ws_data(ws);
    struct relay *r = c->relay;

    c->ws = NULL;
    negserve_peer_free(c->neg);
    c->neg = NULL;
    while (!h2o_linklist_is_empty(&c->subs))
        remove_sub(c, H2O_STRUCT_FROM_MEMBER(struct sub, link, c->subs.next));
    h2o_linklist_unlink(&c->link);
    r->stats.connections--;
    conn_unref(c);
}

static void neg_send(void *ctx, const struct buf *msg)
{
    conn_send(ctx, msg);
}

static const struct ws_handler ws_handler = {
    .on_message = on_ws_message,
    .on_drain = on_ws_drain,
    .on_overflow = on_ws_overflow,
    .on_close = on_ws_close,
};

static bool wants_nip11(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT, -1);
    return i != -1 && h2o_strstr(req->headers.entries[i].value.base, req->headers.entries[i].value.len,
                                 H2O_STRLIT("application/nostr+json")) != SIZE_MAX;
}

static void on_root(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    struct relay *r = data;
    struct ws_options opt = {
        .max_message = r->opt.max_message_length,
        .low_water = STREAM_LOW_WATER,
        .ping_interval = PING_INTERVAL_MS,
        .max_queue = r->opt.max_client_queue_bytes,
        .budget = &r->budget,
    };
    struct relay_conn *c;
    int up = ws_is_upgrade(req);

    if (up < 0) {
        http_reply_error(req, 400, "malformed WebSocket handshake: Sec-WebSocket-Key must be 24 characters");
        return;
    }
    if (up == 1) {
        if (r->closing) {
            http_reply_error(req, 503, "the relay is shutting down");
            return;
        }
        if ((c = calloc(1, sizeof(*c))) == NULL)
            abort();
        c->relay = r;
        c->refs = 1;
        c->peer = http_query_param(req, RELAY_PEER_PARAM, &(h2o_iovec_t){NULL, 0});
        h2o_linklist_init_anchor(&c->subs);
        if ((c->ws = ws_accept(req, &ws_handler, c, &opt)) == NULL) {
            free(c);
            http_reply_error(req, 400, "malformed WebSocket handshake");
            return;
        }
        c->neg = negserve_peer_new(r->neg, neg_send, c);
        h2o_linklist_insert(&r->conns, &c->link);
        r->stats.connections++;
        r->stats.connections_total++;
        return;
    }
    if (wants_nip11(req)) {
        http_reply_json_as(req, 200, "application/nostr+json", r->info);
        return;
    }
    r->fallback(r->fallback_data, req, param);
}

static json_t *build_info(const struct relay_options *opt)
{
    json_t *info = json_pack("{s:s, s:s, s:[i, i, i], s:s, s:s}", "name", opt->name, "description", opt->description,
                             "supported_nips", 1, 11, 77, "software", "pfpcache-relay", "version", PFP_VERSION);
    if (opt->pubkey != NULL && opt->pubkey[0] != '\0')
        json_object_set_new(info, "pubkey", json_string(opt->pubkey));
    if (opt->contact != NULL && opt->contact[0] != '\0')
        json_object_set_new(info, "contact", json_string(opt->contact));
    json_object_set_new(info, "limitation",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:b}", "max_message_length",
                                  (json_int_t)opt->max_message_length, "max_subscriptions",
                                  (json_int_t)opt->max_subscriptions, "max_filters", (json_int_t)opt->max_filters,
                                  "max_limit", (json_int_t)opt->max_limit, "max_subid_length",
                                  (json_int_t)opt->max_subid_length, "default_limit", (json_int_t)opt->max_limit,
                                  "created_at_upper_limit", (json_int_t)opt->max_future_seconds, "auth_required", 0,
                                  "payment_required", 0, "restricted_writes", 1));
    return info;
}

int relay_init(struct relay **out, uv_loop_t *loop, const struct relay_options *opt, struct store *store,
               struct ingest *ingest, struct lookup *lookup, struct negserve *neg)
{
    struct relay *r = calloc(1, sizeof(*r));
    int64_t *kinds = calloc(opt->naccepted_kinds + 1, sizeof(*kinds));

    if (r == NULL || kinds == NULL)
        abort();
    memcpy(kinds, opt->accepted_kinds, opt->naccepted_kinds * sizeof(*kinds));
    r->opt = *opt;
    r->opt.accepted_kinds = kinds;
    r->opt.name = r->opt.description = r->opt.pubkey = r->opt.contact = NULL;
    r->store = store;
    r->ingest = ingest;
    r->lookup = lookup;
    r->neg = neg;
    r->info = build_info(opt);
    h2o_linklist_init_anchor(&r->conns);
    ws_budget_init(&r->budget, loop, opt->max_total_queue_bytes);
    store_add_listener(store, on_event_stored, r);
    *out = r;
    return 0;
}

int relay_route(struct relay *r, struct http_server *http, http_handler_fn fallback, void *fallback_data)
{
    r->fallback = fallback;
    r->fallback_data = fallback_data;
    return http_route(http, HTTP_GET, "/", on_root, r);
}

void relay_shutdown(struct relay *r)
{
    r->closing = true;
    for (h2o_linklist_t *l = r->conns.next, *next; l != &r->conns; l = next) {
        struct relay_conn *c = H2O_STRUCT_FROM_MEMBER(struct relay_conn, link, l);
        next = l->next;
        if (c->ws != NULL)
            ws_close(c->ws, 1001, "the relay is shutting down");
    }
}

void relay_stats(const struct relay *r, struct relay_stats *out)
{
    struct ws_budget_stats bs;

    ws_budget_stats(&r->budget, &bs);
    *out = r->stats;
    out->queue_bytes = bs.used;
    out->queue_peak_bytes = bs.peak;
    out->pings_coalesced = bs.pings_coalesced;
    out->memory_trims = bs.trims;
}

static void on_budget_closed(struct ws_budget *b)
{
    struct relay *r = H2O_STRUCT_FROM_MEMBER(struct relay, budget, b);

    json_decref(r->info);
    free((void *)r->opt.accepted_kinds);
    free(r);
}

void relay_free(struct relay *r)
{
    /* A connection still closing (shutdown's deadline passed) will call back into the relay: keep it then. */
    if (r->stats.connections > 0)
        return;
    ws_budget_close(&r->budget, on_budget_closed);
}
