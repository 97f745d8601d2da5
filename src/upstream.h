/* upstream.h -- one persistent connection per upstream relay, re-opened with back-off, messages handed on parsed. */
#ifndef PFP_UPSTREAM_H
#define PFP_UPSTREAM_H

#include <jansson.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "url.h"

struct ws_conn;
struct wsdial;

enum upstream_state { UPSTREAM_DISCONNECTED, UPSTREAM_CONNECTING, UPSTREAM_CONNECTED };

struct upstream_relay_stats {
    uint64_t connects;   /* connections opened */
    uint64_t reconnects; /* attempts after the first */
    uint64_t queries;    /* REQs sent */
    uint64_t events_received;
    uint64_t invalid_events; /* forged, malformed, unasked-for: dropped */
    uint64_t notices;
};

struct upstream_relay {
    struct upstream *up;
    const char *url; /* as configured; the config owns it */
    struct ws_url parsed;
    enum upstream_state state;
    struct ws_conn *ws;
    struct wsdial *dial;
    uv_timer_t retry;
    unsigned failures;     /* connections in a row that did not last, for the back-off */
    uint64_t connected_at; /* uv_now() */
    unsigned dropped;      /* unusable messages on the current connection */
    char last_error[160];
    struct upstream_relay_stats stats;
};

/* What the user of the connections hears, on the loop thread. */
struct upstream_handler {
    void (*on_connected)(void *data, struct upstream_relay *r);
    /* Called whenever a connection is lost or closed; nothing sent before it will be answered. */
    void (*on_disconnected)(void *data, struct upstream_relay *r);
    /* A JSON array whose first element is a string; valid only during the call. */
    void (*on_message)(void *data, struct upstream_relay *r, json_t *msg);
};

struct upstream {
    uv_loop_t *loop;
    SSL_CTX *ssl_ctx;
    struct upstream_relay *relays;
    size_t nrelays;
    size_t max_message;
    const struct upstream_handler *h;
    void *data;
    bool closing;
    size_t timers_open; /* while upstream_free() waits for close callbacks */
};

/*
 * Prepares a connection per relay in cfg->upstream_relays (config must outlive
 * the upstream) and the TLS context for wss://: the system's trust store plus
 * `upstream_ca_file`. Returns 0, or -EINVAL with a message naming the key at
 * fault in `err`.
 */
int upstream_init(struct upstream *up, uv_loop_t *loop, const struct config *cfg, char *err, size_t errlen);

/* Opens every connection; from then on `h` hears of them. */
void upstream_start(struct upstream *up, const struct upstream_handler *h, void *data);

/* Sends a text message. Returns 0, or -ENOTCONN when the relay is not connected. */
int upstream_send(struct upstream_relay *r, const char *msg, size_t len);

/*
 * Counts a message from `r` that could not be used (forged, malformed, not asked
 * for). A relay that keeps sending them is disconnected and tried again later.
 */
void upstream_dropped(struct upstream_relay *r, const char *why);

/* Whether a connection attempt is under way to some relay. */
bool upstream_connecting(const struct upstream *up);

/* Closes every connection and stops reconnecting. */
void upstream_shutdown(struct upstream *up);

/* Connections still open or being opened; upstream_free() waits until there are none. */
size_t upstream_open(const struct upstream *up);

/* Releases what is left once upstream_open() is 0; the memory goes when the loop has run the close callbacks. */
void upstream_free(struct upstream *up);

#endif
