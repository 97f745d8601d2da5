/* relay.c -- the Nostr relay: NIP-01 over WebSocket and NIP-11. */
#include "relay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "event.h"
#include "filter.h"
#include "hex.h"
#include "log.h"
#include "ws.h"

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
    struct sub *next;
    struct relay_conn *conn;
    struct sub_wait *waits; /* upstream lookups to finish before the stored matches go out */
    size_t nwaits, waiting;
    char *id; /* owned, NUL-terminated */
    size_t id_len;
    struct filter *filters;
    size_t nfilters;
    struct store_hit *pending; /* stored matches still to send, newest first */
    size_t npending, sent;
    bool eose_sent;
};

struct relay_conn {
    struct relay *relay;
    struct ws_conn *ws; /* NULL once the connection is gone */
    struct sub *subs;
    size_t nsubs;
    size_t inflight;
    size_t looking; /* upstream lookups its subscriptions wait for */
    unsigned refs;  /* one for the connection, one per event in flight */
    struct relay_conn *prev, *next;
};

/* An EVENT on its way: verified on the pool, then written by the store. */
struct ingest {
    struct work work;
    struct store_event_write ew;
    struct relay_conn *conn;
    uint8_t pubkey[32];
    uint8_t sig[64];
    uint32_t kind;
    bool sig_ok;
};

static bool kind_accepted(const struct config *cfg, uint32_t kind)
{
    for (size_t i = 0; i < cfg->accepted_kinds.count; i++) {
        if (cfg->accepted_kinds.items[i] == (int64_t)kind)
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
 * is disconnected instead, so a connection holds at most that plus one message.
 */
static void conn_send(struct relay_conn *c, const struct buf *msg)
{
    struct relay *r = c->relay;

    if (c->ws == NULL)
        return;
    if (ws_queued(c->ws) > (size_t)r->cfg->max_client_queue_bytes) {
        log_info("relay: closing a client that is not reading (%zu bytes queued)", ws_queued(c->ws));
        r->stats.slow_clients_closed++;
        ws_close(c->ws, 1008, "slow consumer: too many bytes queued");
        return;
    }
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

static void send_ok(struct relay_conn *c, const uint8_t id[32], bool ok, const char *msg)
{
    struct buf b = BUF_INIT;
    char hex[64];

    hex_encode(id, 32, hex);
    buf_appends(&b, "[\"OK\",\"");
    buf_append(&b, hex, 64);
    buf_appends(&b, ok ? "\",true," : "\",false,");
    buf_json_string(&b, msg, strlen(msg), BUF_JSON_WIRE);
    buf_appendc(&b, ']');
    conn_send(c, &b);
    buf_free(&b);
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

    for (struct sub *s = c->subs; s != NULL && c->ws != NULL; s = s->next) {
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

static struct sub **find_sub(struct relay_conn *c, const char *id, size_t len)
{
    for (struct sub **p = &c->subs; *p != NULL; p = &(*p)->next) {
        if ((*p)->id_len == len && memcmp((*p)->id, id, len) == 0)
            return p;
    }
    return NULL;
}

static void remove_sub(struct relay_conn *c, struct sub **p)
{
    struct sub *s = *p;
    *p = s->next;
    c->nsubs--;
    sub_free(s);
}

/* Finds the stored matches of a subscription and starts sending them. */
static void run_query(struct relay_conn *c, struct sub *s)
{
    struct sub **p;

    if (store_query(c->relay->store, s->filters, s->nfilters, SCAN_BUDGET, &s->pending, &s->npending) != 0) {
        send_closed(c, s->id, s->id_len, "error: could not read the database");
        if ((p = find_sub(c, s->id, s->id_len)) != NULL)
            remove_sub(c, p);
        return;
    }
    pump(c);
}

static void on_looked_up(struct lookup_waiter *w, const struct event_view *ev)
{
    struct sub *s = ((struct sub_wait *)w)->sub;

    (void)ev; /* what was found is stored by now, so the query finds it */
    s->conn->looking--;
    if (--s->waiting == 0)
        run_query(s->conn, s);
}

static bool lookup_kind(const struct config *cfg, uint32_t kind)
{
    return (kind == 0 || kind == 3 || kind == 10002) && kind_accepted(cfg, kind);
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

    /* Past its share, a connection's REQs are answered from what is stored here. */
    if (s->conn->looking + cap > MAX_LOOKUPS_PER_CONN)
        cap = MAX_LOOKUPS_PER_CONN - s->conn->looking;
    if (cap == 0 || r->lookup == NULL || r->lookup->up->nrelays == 0 || store_read_begin(r->store, &txn) != 0)
        return 0;
    for (size_t f = 0; f < s->nfilters; f++) {
        const struct filter *fl = &s->filters[f];
        if (!fl->has_authors || !fl->has_kinds || fl->has_ids || fl->limit == 0)
            continue;
        for (size_t k = 0; k < fl->nkinds; k++) {
            if (!lookup_kind(r->cfg, fl->kinds[k]))
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
    const struct config *cfg = r->cfg;
    size_t nfilters = json_array_size(msg) - 2, id_len;
    json_t *jid = json_array_get(msg, 1);
    const char *id;
    struct sub *s, **existing;
    char reason[256], closed[320];

    if (!json_is_string(jid)) {
        send_notice(c, "invalid: REQ needs a subscription id string: [\"REQ\", <id>, <filter>, ...]");
        return;
    }
    id = json_string_value(jid);
    id_len = json_string_length(jid);
    if (id_len == 0 || id_len > (size_t)cfg->max_subid_length) {
        snprintf(closed, sizeof(closed), "invalid: subscription id must be 1 to %lld characters",
                 (long long)cfg->max_subid_length);
        send_closed(c, id, id_len, closed);
        return;
    }
    if (json_array_size(msg) < 3) {
        send_closed(c, id, id_len, "invalid: REQ needs at least one filter");
        return;
    }
    if (nfilters > (size_t)cfg->max_filters) {
        snprintf(closed, sizeof(closed), "invalid: too many filters (at most %lld)", (long long)cfg->max_filters);
        send_closed(c, id, id_len, closed);
        return;
    }
    existing = find_sub(c, id, id_len);
    if (existing == NULL && c->nsubs >= (size_t)cfg->max_subscriptions) {
        snprintf(closed, sizeof(closed), "rate-limited: too many subscriptions (at most %lld per connection)",
                 (long long)cfg->max_subscriptions);
        send_closed(c, id, id_len, closed);
        return;
    }

    if ((s = calloc(1, sizeof(*s))) == NULL || (s->filters = calloc(nfilters, sizeof(*s->filters))) == NULL ||
        (s->id = malloc(id_len + 1)) == NULL)
        abort();
    memcpy(s->id, id, id_len + 1);
    s->id_len = id_len;
    for (size_t i = 0; i < nfilters; i++) {
        if (filter_parse(json_array_get(msg, i + 2), (uint32_t)cfg->max_limit, &s->filters[i], reason,
                         sizeof(reason)) != 0) {
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
    s->next = c->subs;
    c->subs = s;
    c->nsubs++;
    r->stats.subscriptions_total++;
    log_debug("relay: REQ \"%s\" with %zu filter(s)", s->id, s->nfilters);
    if (start_lookups(r, s) == 0)
        run_query(c, s);
}

static void handle_close(struct relay_conn *c, json_t *msg)
{
    json_t *jid = json_array_get(msg, 1);
    struct sub **p;

    if (json_array_size(msg) != 2 || !json_is_string(jid)) {
        send_notice(c, "invalid: CLOSE must be [\"CLOSE\", <subscription id>]");
        return;
    }
    if ((p = find_sub(c, json_string_value(jid), json_string_length(jid))) != NULL)
        remove_sub(c, p);
}

/* Sends a newly stored (or ephemeral) event to every subscription it matches. */
static void broadcast(struct relay *r, const struct event_view *ev)
{
    for (struct relay_conn *c = r->conns, *next; c != NULL; c = next) {
        next = c->next;
        for (struct sub *s = c->subs; s != NULL && c->ws != NULL; s = s->next) {
            /* A subscription still waiting for lookups sends its stored matches later, these included. */
            if (s->waiting > 0)
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

static void on_event_stored(void *data, const struct event_view *ev)
{
    struct relay *r = data;
    r->stats.events_stored++;
    broadcast(r, ev);
}

static void ingest_finish(struct ingest *in, bool ok, const char *msg)
{
    struct relay_conn *c = in->conn;

    if (c->ws != NULL) {
        send_ok(c, in->ew.id, ok, msg);
        c->inflight--;
        if (c->inflight == INFLIGHT_PAUSE / 2)
            ws_pause(c->ws, false);
    }
    free(in->ew.rec);
    free(in);
    conn_unref(c);
}

static void on_ingest_stored(struct store_event_write *ew)
{
    struct ingest *in = (struct ingest *)((char *)ew - offsetof(struct ingest, ew));
    struct relay *r = in->conn->relay;

    if (ew->w.status == -ENOSPC) {
        log_error("relay: the database is full; raise database_max_size_mb");
        ingest_finish(in, false, "error: the relay's database is full");
    } else if (ew->w.status != 0) {
        ingest_finish(in, false, "error: could not store the event");
    } else if (ew->result == STORE_DUPLICATE) {
        r->stats.events_duplicate++;
        ingest_finish(in, true, "duplicate: already have this event");
    } else if (ew->result == STORE_SUPERSEDED) {
        r->stats.events_duplicate++;
        ingest_finish(in, true, "duplicate: a newer version of this event is stored");
    } else {
        ingest_finish(in, true, "");
    }
}

static void verify_run(struct work *w)
{
    struct ingest *in = (struct ingest *)w;
    in->sig_ok = event_verify_sig(in->ew.id, in->pubkey, in->sig);
}

static void verify_done(struct work *w)
{
    struct ingest *in = (struct ingest *)w;
    struct relay *r = in->conn->relay;

    if (!in->sig_ok) {
        r->stats.events_rejected++;
        ingest_finish(in, false, "invalid: bad signature");
        return;
    }
    if (event_kind_class(in->kind) == EVENT_EPHEMERAL) {
        struct event_view ev;
        event_view_decode(in->ew.id, in->ew.rec, in->ew.rec_len, &ev);
        broadcast(r, &ev);
        ingest_finish(in, true, "");
        return;
    }
    in->ew.done = on_ingest_stored;
    store_put_event(r->store, &in->ew);
}

static void handle_event(struct relay_conn *c, json_t *msg)
{
    struct relay *r = c->relay;
    json_t *obj = json_array_get(msg, 1), *jid;
    struct event ev;
    struct ingest *in;
    uint8_t id[32];
    char reason[200], text[300];
    MDB_txn *txn;
    bool known;

    r->stats.events_received++;
    if (json_array_size(msg) != 2 || !json_is_object(obj)) {
        send_notice(c, "invalid: EVENT must be [\"EVENT\", <event object>]");
        return;
    }
    if (event_parse(obj, &ev, reason, sizeof(reason)) != 0) {
        r->stats.events_rejected++;
        /* OK needs the event id; when even that is unusable, only a NOTICE can answer. */
        jid = json_object_get(obj, "id");
        snprintf(text, sizeof(text), "invalid: %s", reason);
        if (json_is_string(jid) && hex_decode(json_string_value(jid), json_string_length(jid), id, 32) == 0)
            send_ok(c, id, false, text);
        else
            send_notice(c, text);
        return;
    }

    if (!event_id_valid(&ev)) {
        r->stats.events_rejected++;
        send_ok(c, ev.id, false, "invalid: the id is not the hash of the event");
        goto out;
    }
    if (!kind_accepted(r->cfg, ev.kind)) {
        r->stats.events_rejected++;
        snprintf(text, sizeof(text), "blocked: kind %u is not accepted by this relay", ev.kind);
        send_ok(c, ev.id, false, text);
        goto out;
    }
    if (ev.created_at > (int64_t)time(NULL) + r->cfg->max_future_seconds) {
        r->stats.events_rejected++;
        snprintf(text, sizeof(text), "invalid: created_at is more than %lld seconds in the future",
                 (long long)r->cfg->max_future_seconds);
        send_ok(c, ev.id, false, text);
        goto out;
    }
    if (c->inflight >= INFLIGHT_MAX) {
        send_ok(c, ev.id, false, "rate-limited: too many events awaiting their OK on this connection");
        goto out;
    }
    /* A known event skips the signature check: its answer is already decided. */
    known = store_read_begin(r->store, &txn) == 0;
    if (known) {
        struct event_view stored;
        known = store_get_event(r->store, txn, ev.id, &stored) == 0;
        store_read_end(r->store, txn);
    }
    if (known) {
        r->stats.events_duplicate++;
        send_ok(c, ev.id, true, "duplicate: already have this event");
        goto out;
    }

    if ((in = calloc(1, sizeof(*in))) == NULL)
        abort();
    in->conn = c;
    memcpy(in->ew.id, ev.id, 32);
    memcpy(in->pubkey, ev.pubkey, 32);
    memcpy(in->sig, ev.sig, 64);
    in->kind = ev.kind;
    in->ew.rec = event_record_build(&ev, &in->ew.rec_len);
    in->work.run = verify_run;
    in->work.done = verify_done;
    c->refs++;
    if (++c->inflight == INFLIGHT_PAUSE)
        ws_pause(c->ws, true);
    workpool_submit(r->verify, &in->work);

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
    } else {
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

static void on_ws_close(struct ws_conn *ws)
{
    struct relay_conn *c = ws_data(ws);
    struct relay *r = c->relay;

    c->ws = NULL;
    while (c->subs != NULL)
        remove_sub(c, &c->subs);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        r->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    r->nconns--;
    conn_unref(c);
}

static const struct ws_handler ws_handler = {
    .on_message = on_ws_message,
    .on_drain = on_ws_drain,
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
        .max_message = (size_t)r->cfg->max_message_length,
        .low_water = STREAM_LOW_WATER,
        .ping_interval = PING_INTERVAL_MS,
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
        if ((c->ws = ws_accept(req, &ws_handler, c, &opt)) == NULL) {
            free(c);
            http_reply_error(req, 400, "malformed WebSocket handshake");
            return;
        }
        c->next = r->conns;
        if (r->conns != NULL)
            r->conns->prev = c;
        r->conns = c;
        r->nconns++;
        r->stats.connections_total++;
        return;
    }
    if (wants_nip11(req)) {
        http_reply_json_as(req, 200, "application/nostr+json", r->info);
        return;
    }
    r->fallback(r->fallback_data, req, param);
}

static json_t *build_info(const struct config *cfg)
{
    json_t *info =
        json_pack("{s:s, s:s, s:[i, i], s:s, s:s}", "name", cfg->relay_name, "description", cfg->relay_description,
                  "supported_nips", 1, 11, "software", "pfpcache-relay", "version", PFP_VERSION);
    if (cfg->relay_pubkey[0] != '\0')
        json_object_set_new(info, "pubkey", json_string(cfg->relay_pubkey));
    if (cfg->relay_contact[0] != '\0')
        json_object_set_new(info, "contact", json_string(cfg->relay_contact));
    json_object_set_new(info, "limitation",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b, s:b, s:b}", "max_message_length",
                                  (json_int_t)cfg->max_message_length, "max_subscriptions",
                                  (json_int_t)cfg->max_subscriptions, "max_filters", (json_int_t)cfg->max_filters,
                                  "max_limit", (json_int_t)cfg->max_limit, "max_subid_length",
                                  (json_int_t)cfg->max_subid_length, "default_limit", (json_int_t)cfg->max_limit,
                                  "created_at_upper_limit", (json_int_t)cfg->max_future_seconds, "auth_required", 0,
                                  "payment_required", 0, "restricted_writes", 1));
    return info;
}

void relay_init(struct relay *r, const struct config *cfg, struct store *store, struct workpool *verify,
                struct lookup *lookup)
{
    memset(r, 0, sizeof(*r));
    r->cfg = cfg;
    r->store = store;
    r->verify = verify;
    r->lookup = lookup;
    r->info = build_info(cfg);
    store_add_listener(store, on_event_stored, r);
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
    for (struct relay_conn *c = r->conns, *next; c != NULL; c = next) {
        next = c->next;
        if (c->ws != NULL)
            ws_close(c->ws, 1001, "the relay is shutting down");
    }
}

void relay_free(struct relay *r)
{
    json_decref(r->info);
    r->info = NULL;
}
