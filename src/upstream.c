/* upstream.c -- one persistent connection per upstream relay, re-opened with back-off, messages handed on parsed. */
#include "upstream.h"

#include <assert.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    const char *url; /* the options' */
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
};

struct upstream {
    uv_loop_t *loop;
    SSL_CTX *ssl_ctx;
    struct upstream_relay *relays;
    size_t nrelays;
    size_t max_message;
    size_t max_queue;
    const struct upstream_handler *h;
    void *data;
    bool closing;
    size_t timers_open; /* while upstream_free() waits for close callbacks */
};

static void connect_relay(struct upstream_relay *r);

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
    r->up->h->on_message(r->up->data, r, msg);
    json_decref(msg);
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
    r->up->h->on_disconnected(r->up->data, r);
    schedule_retry(r);
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
        schedule_retry(r);
        return;
    }
    r->state = UPSTREAM_CONNECTED;
    r->connected_at = uv_now(r->up->loop);
    r->dropped = 0;
    r->last_error[0] = '\0';
    r->connects++;
    r->ws = ws_client(sock, &relay_ws_handler, r, &opt);
    log_info("upstream %s: connected", r->url);
    r->up->h->on_connected(r->up->data, r);
}

static void connect_relay(struct upstream_relay *r)
{
    if (r->up->closing || r->state != UPSTREAM_DISCONNECTED)
        return;
    if (r->connects > 0 || r->failures > 0)
        r->reconnects++;
    r->state = UPSTREAM_CONNECTING;
    r->dial = wsdial_start(r->up->loop, &r->parsed, r->up->ssl_ctx, DIAL_TIMEOUT_MS, on_dialed, r);
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
    up->max_message = opt->max_message > MIN_MAX_MESSAGE ? opt->max_message : MIN_MAX_MESSAGE;
    up->max_queue = opt->max_queue;
    if ((up->ssl_ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
        snprintf(err, errlen, "cannot create a TLS context");
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
    *out = up;
    return 0;
}

void upstream_set_handler(struct upstream *up, const struct upstream_handler *h, void *data)
{
    up->h = h;
    up->data = data;
}

void upstream_start(struct upstream *up)
{
    assert(up->h != NULL);
    for (size_t i = 0; i < up->nrelays; i++)
        connect_relay(&up->relays[i]);
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
    return (size_t)(r - r->up->relays);
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

void upstream_shutdown(struct upstream *up)
{
    up->closing = true;
    for (size_t i = 0; i < up->nrelays; i++) {
        struct upstream_relay *r = &up->relays[i];
        uv_timer_stop(&r->retry);
        if (r->dial != NULL) {
            wsdial_cancel(r->dial);
            r->dial = NULL;
            r->state = UPSTREAM_DISCONNECTED;
        }
        if (r->ws != NULL)
            ws_close(r->ws, 1001, "going away");
    }
}

size_t upstream_open_count(const struct upstream *up)
{
    size_t n = 0;
    for (size_t i = 0; i < up->nrelays; i++)
        n += up->relays[i].ws != NULL || up->relays[i].dial != NULL;
    return n;
}

static void on_retry_closed(uv_handle_t *h)
{
    struct upstream_relay *r = h->data;
    struct upstream *up = r->up;

    if (--up->timers_open == 0) {
        free(up->relays);
        free(up);
    }
}

void upstream_free(struct upstream *up)
{
    /* A connection still closing will call back into its relay: keep them all then. */
    bool keep = upstream_open_count(up) != 0;

    SSL_CTX_free(up->ssl_ctx);
    up->ssl_ctx = NULL;
    if (up->nrelays == 0) {
        free(up->relays);
        free(up);
        return;
    }
    up->timers_open = up->nrelays;
    for (size_t i = 0; i < up->nrelays; i++)
        uv_close((uv_handle_t *)&up->relays[i].retry, keep ? NULL : on_retry_closed);
}
