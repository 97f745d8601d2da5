/* upstream.c -- one persistent connection per upstream relay, re-opened with back-off, messages handed on parsed. */
#include "upstream.h"

#include <assert.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keymap.h"
#include "log.h"
#include "url.h"
#include "ws.h"
#include "wsdial.h"

#define DIAL_TIMEOUT_MS  10000
#define PING_INTERVAL_MS 30000
#define BACKOFF_BASE_MS  1000
#define BACKOFF_MAX_MS   60000
/* A connection that lasted this long counts as a success: the back-off starts over. */
#define STABLE_MS 30000
/* Unusable messages a connection may send before it is closed. */
#define MAX_DROPPED 50
/* Messages from relays may be larger than those clients send: contact lists of thousands grow big. */
#define MIN_MAX_MESSAGE (4 * 1024 * 1024)

struct upstream_relay {
    struct upstream *up;
    const char *url; /* the options', or a discovered relay's own */
    struct ws_url parsed;
    enum upstream_state state;
    struct ws_conn *ws;
    struct wsdial *dial;
    uv_timer_t retry;
    unsigned failures;     /* connections in a row that did not last, for the back-off */
    uint64_t connected_at; /* uv_now() */
    unsigned dropped;      /* unusable messages on the current connection */
    char last_error[160];
    uint64_t connects, reconnects, invalid, notices;
    size_t queue_peak;
    /* Discovered relays only: opened on demand, closed when idle, never retried by themselves. */
    bool discovered;
    bool closing;         /* closed for idleness or to make room: no longer counted as open */
    unsigned holds;       /* users (lookups under way) that keep it */
    unsigned in_callback; /* handler calls under way: it is freed after them */
    uint64_t idle_since;  /* uv_now() when its last user let go */
    uint8_t key[32];      /* SHA-256 of its URL, in up->discovered_map */
    h2o_linklist_t dlink; /* in up->discovered */
};

struct upstream {
    uv_loop_t *loop;
    SSL_CTX *ssl_ctx;
    struct upstream_relay *relays;
    size_t nrelays;
    size_t max_message;
    size_t max_queue;
    struct {
        const struct upstream_handler *h;
        void *data;
    } handlers[UPSTREAM_MAX_HANDLERS];
    size_t nhandlers;
    bool closing;
    size_t timers_open; /* while upstream_free() waits for close callbacks */
    /* Relays found through the outbox model and hints. */
    struct netguard guard; /* what their addresses may be */
    size_t max_discovered;
    uint64_t idle_ms, discovered_dial_ms;
    struct keymap *discovered_map;
    h2o_linklist_t discovered;
    uv_timer_t idle_timer;
    struct upstream_discovery_stats dstats;
};

static void connect_relay(struct upstream_relay *r);

/* A discovered relay goes once nobody holds it, it has no connection and no handler call is under way. */
static void maybe_destroy(struct upstream_relay *r)
{
    if (!r->discovered || r->holds > 0 || r->ws != NULL || r->dial != NULL || r->in_callback > 0)
        return;
    keymap_del(r->up->discovered_map, r->key);
    h2o_linklist_unlink(&r->dlink);
    free((char *)r->url);
    free(r);
}

/* 2^failures seconds up to a minute, then a random point in its upper half, so relays are not retried in step. */
static uint64_t backoff_ms(unsigned failures)
{
    uint64_t d = BACKOFF_BASE_MS << (failures < 6 ? failures : 6);
    uint32_t rnd = 0;

    if (d > BACKOFF_MAX_MS)
        d = BACKOFF_MAX_MS;
    RAND_bytes((unsigned char *)&rnd, sizeof(rnd));
    return d / 2 + rnd % (d / 2 + 1);
}

static void on_retry(uv_timer_t *t)
{
    connect_relay(t->data);
}

static void schedule_retry(struct upstream_relay *r)
{
    uint64_t delay;

    if (r->up->closing)
        return;
    delay = backoff_ms(r->failures);
    log_info("upstream %s: %s, retrying in %.1f s", r->url, r->last_error, (double)delay / 1000);
    uv_timer_start(&r->retry, on_retry, delay, 0);
}

/* Each handler hears, in the order they were added; a handler may leave out what it does not need. */
static void tell_connected(struct upstream_relay *r)
{
    for (size_t i = 0; i < r->up->nhandlers; i++)
        if (r->up->handlers[i].h->on_connected != NULL)
            r->up->handlers[i].h->on_connected(r->up->handlers[i].data, r);
}

static void tell_disconnected(struct upstream_relay *r)
{
    for (size_t i = 0; i < r->up->nhandlers; i++)
        if (r->up->handlers[i].h->on_disconnected != NULL)
            r->up->handlers[i].h->on_disconnected(r->up->handlers[i].data, r);
}

static void tell_message(struct upstream_relay *r, json_t *msg)
{
    for (size_t i = 0; i < r->up->nhandlers; i++)
        if (r->up->handlers[i].h->on_message != NULL)
            r->up->handlers[i].h->on_message(r->up->handlers[i].data, r, msg);
}

void upstream_receive(struct upstream_relay *r, const uint8_t *data, size_t len, bool binary)
{
    json_error_t err;
    json_t *msg;

    if (binary) {
        upstream_dropped(r, "binary message");
        return;
    }
    msg = json_loadb((const char *)data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &err);
    if (msg == NULL || !json_is_array(msg) || !json_is_string(json_array_get(msg, 0))) {
        upstream_dropped(r, "malformed message");
        json_decref(msg);
        return;
    }
    if (strcmp(json_string_value(json_array_get(msg, 0)), "NOTICE") == 0) {
        r->notices++;
        log_debug("upstream %s: NOTICE %s", r->url, json_string_value(json_array_get(msg, 1)));
    }
    r->in_callback++;
    tell_message(r, msg);
    r->in_callback--;
    json_decref(msg);
    maybe_destroy(r);
}

static void on_ws_message(struct ws_conn *ws, const uint8_t *data, size_t len, bool binary)
{
    upstream_receive(ws_data(ws), data, len, binary);
}

static void on_ws_close(struct ws_conn *ws)
{
    struct upstream_relay *r = ws_data(ws);
    uint64_t lasted = uv_now(r->up->loop) - r->connected_at;

    r->ws = NULL;
    r->state = UPSTREAM_DISCONNECTED;
    if (r->last_error[0] == '\0')
        snprintf(r->last_error, sizeof(r->last_error), "connection closed");
    r->failures = lasted >= STABLE_MS ? 0 : r->failures + 1;
    if (!r->discovered) {
        tell_disconnected(r);
        schedule_retry(r);
        return;
    }
    r->closing = false;
    r->in_callback++;
    tell_disconnected(r);
    r->in_callback--;
    maybe_destroy(r);
}

static void on_ws_overflow(struct ws_conn *ws, size_t queued)
{
    struct upstream_relay *r = ws_data(ws);

    snprintf(r->last_error, sizeof(r->last_error), "closed: it did not read, and %zu bytes were waiting for it",
             queued);
    log_warn("upstream %s: %s", r->url, r->last_error);
}

static const struct ws_handler relay_ws_handler = {
    .on_message = on_ws_message,
    .on_overflow = on_ws_overflow,
    .on_close = on_ws_close,
};

static void on_dialed(void *data, h2o_socket_t *sock, const char *err)
{
    struct upstream_relay *r = data;
    struct ws_options opt = {.max_message = r->up->max_message,
                             .low_water = 64 * 1024,
                             .ping_interval = PING_INTERVAL_MS,
                             .max_queue = r->up->max_queue};

    r->dial = NULL;
    if (sock == NULL) {
        r->state = UPSTREAM_DISCONNECTED;
        snprintf(r->last_error, sizeof(r->last_error), "cannot connect: %s", err);
        r->failures++;
        if (!r->discovered) {
            schedule_retry(r);
            return;
        }
        if (strncmp(err, "refused address", 15) == 0)
            r->up->dstats.refused++;
        log_info("upstream %s: %s", r->url, r->last_error);
        r->in_callback++;
        tell_disconnected(r);
        r->in_callback--;
        maybe_destroy(r);
        return;
    }
    r->state = UPSTREAM_CONNECTED;
    r->connected_at = uv_now(r->up->loop);
    r->dropped = 0;
    r->last_error[0] = '\0';
    r->connects++;
    r->ws = ws_client(sock, &relay_ws_handler, r, &opt);
    log_info("upstream %s: connected", r->url);
    r->in_callback++;
    tell_connected(r);
    r->in_callback--;
    maybe_destroy(r);
}

static void connect_relay(struct upstream_relay *r)
{
    if (r->up->closing || r->state != UPSTREAM_DISCONNECTED)
        return;
    if (r->connects > 0 || r->failures > 0)
        r->reconnects++;
    r->state = UPSTREAM_CONNECTING;
    if (r->discovered)
        r->up->dstats.opened++;
    r->dial = wsdial_start(r->up->loop, &r->parsed, r->up->ssl_ctx, r->discovered ? &r->up->guard : NULL,
                           r->discovered ? r->up->discovered_dial_ms : DIAL_TIMEOUT_MS, on_dialed, r);
}

int upstream_send(struct upstream_relay *r, const char *msg, size_t len)
{
    size_t queued;

    if (r->state != UPSTREAM_CONNECTED || r->ws == NULL || ws_send_text(r->ws, msg, len) != 0)
        return -ENOTCONN;
    if ((queued = ws_queued(r->ws)) > r->queue_peak)
        r->queue_peak = queued;
    return 0;
}

void upstream_dropped(struct upstream_relay *r, const char *why)
{
    r->invalid++;
    log_debug("upstream %s: dropped a message: %s", r->url, why);
    if (++r->dropped == MAX_DROPPED && r->ws != NULL) {
        snprintf(r->last_error, sizeof(r->last_error), "closed after %d unusable messages (last: %s)", MAX_DROPPED,
                 why);
        log_warn("upstream %s: %s", r->url, r->last_error);
        ws_close(r->ws, 1008, "too many invalid messages");
    }
}

/* --- discovered relays --------------------------------------------------------------------------------------- */

static bool is_open(const struct upstream_relay *r)
{
    return (r->ws != NULL || r->dial != NULL) && !r->closing;
}

static size_t discovered_open(const struct upstream *up)
{
    size_t n = 0;
    for (h2o_linklist_t *l = up->discovered.next; l != &up->discovered; l = l->next)
        n += is_open(H2O_STRUCT_FROM_MEMBER(struct upstream_relay, dlink, l));
    return n;
}

static void close_idle(struct upstream_relay *r, const char *why)
{
    r->closing = true;
    snprintf(r->last_error, sizeof(r->last_error), "%s", why);
    ws_close(r->ws, 1000, why);
}

/* Closes the connection idle the longest, to make room. Returns whether there was one. */
static bool close_oldest_idle(struct upstream *up)
{
    struct upstream_relay *oldest = NULL;

    for (h2o_linklist_t *l = up->discovered.next; l != &up->discovered; l = l->next) {
        struct upstream_relay *r = H2O_STRUCT_FROM_MEMBER(struct upstream_relay, dlink, l);
        if (r->holds == 0 && r->ws != NULL && !r->closing && (oldest == NULL || r->idle_since < oldest->idle_since))
            oldest = r;
    }
    if (oldest == NULL)
        return false;
    close_idle(oldest, "closed to make room for another relay");
    return true;
}

static void on_idle_timer(uv_timer_t *t)
{
    struct upstream *up = t->data;
    uint64_t now = uv_now(up->loop);

    for (h2o_linklist_t *l = up->discovered.next, *next; l != &up->discovered; l = next) {
        struct upstream_relay *r = H2O_STRUCT_FROM_MEMBER(struct upstream_relay, dlink, l);
        next = l->next;
        if (r->holds == 0 && r->ws != NULL && !r->closing && now - r->idle_since >= up->idle_ms)
            close_idle(r, "closed after discovery_idle_seconds unused");
    }
}

struct upstream_relay *upstream_discover(struct upstream *up, const char *url, char *err, size_t errlen)
{
    struct upstream_relay *r;
    uint8_t key[32];

    if (up->closing) {
        snprintf(err, errlen, "shutting down");
        return NULL;
    }
    SHA256((const unsigned char *)url, strlen(url), key);
    if ((r = keymap_get(up->discovered_map, key)) != NULL && is_open(r))
        return r;
    if (discovered_open(up) >= up->max_discovered && !close_oldest_idle(up)) {
        up->dstats.skipped_limit++;
        snprintf(err, errlen, "max_discovery_connections (%zu) are open and in use", up->max_discovered);
        return NULL;
    }
    if (r == NULL) {
        if ((r = calloc(1, sizeof(*r))) == NULL || (r->url = strdup(url)) == NULL)
            abort();
        if (url_parse_ws(r->url, &r->parsed) != 0) {
            snprintf(err, errlen, "not a ws:// or wss:// URL");
            free((char *)r->url);
            free(r);
            return NULL;
        }
        r->up = up;
        r->discovered = true;
        r->idle_since = uv_now(up->loop);
        memcpy(r->key, key, 32);
        keymap_put(up->discovered_map, key, r);
        h2o_linklist_insert(&up->discovered, &r->dlink);
    }
    /* A relay still closing is opened afresh once it has closed: a new connection is made now only when none is left.
     */
    if (r->ws == NULL && r->dial == NULL)
        connect_relay(r);
    else
        r->closing = false;
    return r;
}

void upstream_relay_hold(struct upstream_relay *r)
{
    r->holds++;
}

void upstream_relay_release(struct upstream_relay *r)
{
    assert(r->holds > 0);
    if (--r->holds == 0) {
        r->idle_since = uv_now(r->up->loop);
        maybe_destroy(r);
    }
}

bool upstream_relay_discovered(const struct upstream_relay *r)
{
    return r->discovered;
}

enum upstream_state upstream_relay_state(const struct upstream_relay *r)
{
    return r->state;
}

const char *upstream_relay_error(const struct upstream_relay *r)
{
    return r->last_error;
}

void upstream_discovery_stats(const struct upstream *up, struct upstream_discovery_stats *out)
{
    *out = up->dstats;
    out->open = discovered_open(up);
}

bool upstream_connecting(const struct upstream *up)
{
    for (size_t i = 0; i < up->nrelays; i++) {
        if (up->relays[i].state == UPSTREAM_CONNECTING)
            return true;
    }
    return false;
}

int upstream_init(struct upstream **out, uv_loop_t *loop, const struct upstream_options *opt, char *err, size_t errlen)
{
    struct upstream *up = calloc(1, sizeof(*up));

    if (up == NULL)
        abort();
    up->loop = loop;
    if (netguard_init(&up->guard, &opt->discovery_guard, err, errlen) != 0) {
        free(up);
        return -EINVAL;
    }
    up->max_discovered = opt->max_discovered;
    up->idle_ms = opt->discovered_idle_ms > 0 ? opt->discovered_idle_ms : 1;
    up->discovered_dial_ms = opt->discovered_dial_ms > 0 && opt->discovered_dial_ms < DIAL_TIMEOUT_MS
                                 ? opt->discovered_dial_ms
                                 : DIAL_TIMEOUT_MS;
    up->discovered_map = keymap_new(32);
    h2o_linklist_init_anchor(&up->discovered);
    up->max_message = opt->max_message > MIN_MAX_MESSAGE ? opt->max_message : MIN_MAX_MESSAGE;
    up->max_queue = opt->max_queue;
    if ((up->ssl_ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
        snprintf(err, errlen, "cannot create a TLS context");
        netguard_free(&up->guard);
        keymap_free(up->discovered_map, NULL);
        free(up);
        return -ENOMEM;
    }
    SSL_CTX_set_min_proto_version(up->ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(up->ssl_ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_default_verify_paths(up->ssl_ctx);
    SSL_CTX_set_alpn_protos(up->ssl_ctx, (const unsigned char *)"\x08http/1.1", 9);
    if (opt->ca_file != NULL && opt->ca_file[0] != '\0' &&
        SSL_CTX_load_verify_locations(up->ssl_ctx, opt->ca_file, NULL) != 1) {
        ERR_error_string_n(ERR_get_error(), err, errlen);
        ERR_clear_error();
        SSL_CTX_free(up->ssl_ctx);
        netguard_free(&up->guard);
        keymap_free(up->discovered_map, NULL);
        free(up);
        return -EINVAL;
    }

    up->nrelays = opt->nurls;
    if ((up->relays = calloc(up->nrelays + 1, sizeof(*up->relays))) == NULL)
        abort();
    for (size_t i = 0; i < up->nrelays; i++) {
        struct upstream_relay *r = &up->relays[i];
        r->up = up;
        r->url = opt->urls[i];
        url_parse_ws(r->url, &r->parsed); /* the caller checked it */
        uv_timer_init(loop, &r->retry);
        r->retry.data = r;
    }
    uv_timer_init(loop, &up->idle_timer);
    up->idle_timer.data = up;
    *out = up;
    return 0;
}

void upstream_add_handler(struct upstream *up, const struct upstream_handler *h, void *data)
{
    assert(up->nhandlers < UPSTREAM_MAX_HANDLERS);
    up->handlers[up->nhandlers].h = h;
    up->handlers[up->nhandlers++].data = data;
}

void upstream_start(struct upstream *up)
{
    assert(up->nhandlers > 0);
    for (size_t i = 0; i < up->nrelays; i++)
        connect_relay(&up->relays[i]);
    /* Idle connections are closed within half discovery_idle_seconds of the deadline. */
    uint64_t sweep = up->idle_ms / 2 < 100 ? 100 : up->idle_ms / 2 > 5000 ? 5000 : up->idle_ms / 2;
    uv_timer_start(&up->idle_timer, on_idle_timer, sweep, sweep);
}

size_t upstream_count(const struct upstream *up)
{
    return up->nrelays;
}

struct upstream_relay *upstream_relay(struct upstream *up, size_t i)
{
    assert(i < up->nrelays);
    return &up->relays[i];
}

size_t upstream_relay_index(const struct upstream_relay *r)
{
    return r->discovered ? SIZE_MAX : (size_t)(r - r->up->relays);
}

const char *upstream_relay_url(const struct upstream_relay *r)
{
    return r->url;
}

void upstream_relay_stats(const struct upstream *up, size_t i, struct upstream_relay_stats *out)
{
    const struct upstream_relay *r = &up->relays[i];

    assert(i < up->nrelays);
    out->url = r->url;
    out->state = r->state;
    memcpy(out->last_error, r->last_error, sizeof(out->last_error));
    out->connected_ms = r->state == UPSTREAM_CONNECTED ? uv_now(up->loop) - r->connected_at : 0;
    out->connects = r->connects;
    out->reconnects = r->reconnects;
    out->invalid = r->invalid;
    out->notices = r->notices;
    out->queue_bytes = r->ws != NULL ? ws_queued(r->ws) : 0;
    out->queue_peak_bytes = r->queue_peak;
}

/* Abandons a dial under way and closes the connection, for shutdown. */
static void stop_relay(struct upstream_relay *r)
{
    if (r->dial != NULL) {
        wsdial_cancel(r->dial);
        r->dial = NULL;
        r->state = UPSTREAM_DISCONNECTED;
    }
    if (r->ws != NULL)
        ws_close(r->ws, 1001, "going away");
}

void upstream_shutdown(struct upstream *up)
{
    up->closing = true;
    for (size_t i = 0; i < up->nrelays; i++) {
        uv_timer_stop(&up->relays[i].retry);
        stop_relay(&up->relays[i]);
    }
    uv_timer_stop(&up->idle_timer);
    for (h2o_linklist_t *l = up->discovered.next, *next; l != &up->discovered; l = next) {
        struct upstream_relay *r = H2O_STRUCT_FROM_MEMBER(struct upstream_relay, dlink, l);
        bool connected = r->ws != NULL;
        next = l->next;
        stop_relay(r);
        /* A connection closing frees its relay from its close callback. */
        if (!connected)
            maybe_destroy(r);
    }
}

SSL_CTX *upstream_ssl_ctx(struct upstream *up)
{
    return up->ssl_ctx;
}

size_t upstream_open_count(const struct upstream *up)
{
    size_t n = 0;
    for (size_t i = 0; i < up->nrelays; i++)
        n += up->relays[i].ws != NULL || up->relays[i].dial != NULL;
    for (h2o_linklist_t *l = up->discovered.next; l != &up->discovered; l = l->next) {
        const struct upstream_relay *r = H2O_STRUCT_FROM_MEMBER(struct upstream_relay, dlink, l);
        n += r->ws != NULL || r->dial != NULL;
    }
    return n;
}

/* The memory, once no connection or timer is left to call back into it. */
static void release_all(struct upstream *up)
{
    while (!h2o_linklist_is_empty(&up->discovered)) {
        struct upstream_relay *r = H2O_STRUCT_FROM_MEMBER(struct upstream_relay, dlink, up->discovered.next);
        h2o_linklist_unlink(&r->dlink);
        free((char *)r->url);
        free(r);
    }
    keymap_free(up->discovered_map, NULL);
    netguard_free(&up->guard);
    free(up->relays);
    free(up);
}

static void on_idle_closed(uv_handle_t *h)
{
    struct upstream *up = h->data;

    if (--up->timers_open == 0)
        release_all(up);
}

static void on_retry_closed(uv_handle_t *h)
{
    struct upstream_relay *r = h->data;
    struct upstream *up = r->up;

    if (--up->timers_open == 0)
        release_all(up);
}

void upstream_free(struct upstream *up)
{
    /* A connection still closing will call back into its relay: keep them all then. */
    bool keep = upstream_open_count(up) != 0;

    SSL_CTX_free(up->ssl_ctx);
    up->ssl_ctx = NULL;
    up->timers_open = up->nrelays + 1;
    for (size_t i = 0; i < up->nrelays; i++)
        uv_close((uv_handle_t *)&up->relays[i].retry, keep ? NULL : on_retry_closed);
    up->idle_timer.data = up;
    uv_close((uv_handle_t *)&up->idle_timer, keep ? NULL : on_idle_closed);
}
