/* upstream.h -- one persistent connection per upstream relay, re-opened with back-off, messages handed on parsed. */
#ifndef PFP_UPSTREAM_H
#define PFP_UPSTREAM_H

#include <jansson.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "netguard.h"

struct upstream;
struct upstream_relay; /* one relay's connection; lives as long as the upstream */

enum upstream_state { UPSTREAM_DISCONNECTED, UPSTREAM_CONNECTING, UPSTREAM_CONNECTED };

struct upstream_options {
    const char *const *urls; /* ws:// or wss:// URLs, already checked with url_parse_ws(); must outlive the upstream */
    size_t nurls;
    const char *ca_file; /* PEM certificates trusted besides the system's, or NULL */
    size_t max_message;  /* messages from relays may be larger, never smaller than 4 MiB */
    size_t max_queue;    /* what may wait for a relay that does not read before it is disconnected (ws.h) */
    /* Relays found through the outbox model (upstream_discover()): */
    struct netguard_options discovery_guard; /* the addresses they may have, as for downloads */
    size_t max_discovered;                   /* connections open at once (max_discovery_connections) */
    uint64_t discovered_idle_ms;             /* unused this long, a connection closes */
    uint64_t discovered_dial_ms;             /* connecting to one may take this long (at most 10 s) */
};

struct upstream_discovery_stats {
    uint64_t open;          /* connections to discovered relays open or being opened now */
    uint64_t opened;        /* ... attempted since start-up */
    uint64_t refused;       /* ... refused by the guard: no address the relay has may be reached */
    uint64_t skipped_limit; /* relays not asked because max_discovered were open and in use */
};

/* The most handlers an upstream has: the lookups', and the cluster's replication. */
#define UPSTREAM_MAX_HANDLERS 2

/* What a user of the connections hears, on the loop thread; a member left NULL is not called. */
struct upstream_handler {
    void (*on_connected)(void *data, struct upstream_relay *r);
    /* Called whenever a connection is lost or closed; nothing sent before it will be answered. */
    void (*on_disconnected)(void *data, struct upstream_relay *r);
    /* A JSON array whose first element is a string; valid only during the call. */
    void (*on_message)(void *data, struct upstream_relay *r, json_t *msg);
};

/* One relay's figures, copied out. */
struct upstream_relay_stats {
    const char *url; /* lives as long as the upstream */
    enum upstream_state state;
    char last_error[160];      /* why the last connection ended or failed; "" while none has */
    uint64_t connected_ms;     /* how long the connection has been open, when connected */
    uint64_t connects;         /* connections opened */
    uint64_t reconnects;       /* attempts after the first */
    uint64_t invalid;          /* unusable messages dropped: forged, malformed, unasked-for events */
    uint64_t notices;          /* NOTICE messages */
    uint64_t queue_bytes;      /* what waits for the relay to read, now */
    uint64_t queue_peak_bytes; /* ... at most, since start-up */
};

/*
 * Prepares, in `*out`, a connection per URL of `opt` (none is opened yet) and
 * the TLS context for wss://: the system's trust store plus `opt->ca_file`.
 * Returns 0; -EINVAL when `ca_file` cannot be loaded, with OpenSSL's reason in
 * `err`; -ENOMEM when no TLS context can be made, with a message in `err`. On
 * failure nothing is left to free.
 */
int upstream_init(struct upstream **out, uv_loop_t *loop, const struct upstream_options *opt, char *err, size_t errlen);

/*
 * Adds one who hears of the connections (before upstream_start(), at most UPSTREAM_MAX_HANDLERS); each hears in
 * the order added. `h` and `data` must outlive the upstream.
 */
void upstream_add_handler(struct upstream *up, const struct upstream_handler *h, void *data);

/* Opens every connection. */
void upstream_start(struct upstream *up);

/*
 * A relay that is not configured, named by a pubkey's relay list or a hint: the connection to `url` (canonical,
 * nip65_canonical()) that is open or being opened, shared by every user, or a new one. Its addresses are checked
 * by the discovery guard at connect time, and it is never re-opened by itself: a failure reaches the handler's
 * on_disconnected and that is all. Users hold it (upstream_relay_hold()) while they need it; one nobody holds is
 * closed after `discovered_idle_ms`, or sooner to make room. Returns NULL with `err` saying why when
 * `max_discovered` connections are open and in use, or after upstream_shutdown().
 */
struct upstream_relay *upstream_discover(struct upstream *up, const char *url, char *err, size_t errlen);
void upstream_relay_hold(struct upstream_relay *r);
/* Lets go of a discovered relay; one with no holder and no connection is freed. */
void upstream_relay_release(struct upstream_relay *r);
bool upstream_relay_discovered(const struct upstream_relay *r);
enum upstream_state upstream_relay_state(const struct upstream_relay *r);
/* Why its last connection ended or failed, "" while none has. */
const char *upstream_relay_error(const struct upstream_relay *r);
void upstream_discovery_stats(const struct upstream *up, struct upstream_discovery_stats *out);

/* The configured relays, numbered from 0 in the order of the options' URLs (discovered ones have SIZE_MAX). */
size_t upstream_count(const struct upstream *up);
struct upstream_relay *upstream_relay(struct upstream *up, size_t i);
size_t upstream_relay_index(const struct upstream_relay *r);
const char *upstream_relay_url(const struct upstream_relay *r);

/*
 * Sends a text message. Returns 0, or -ENOTCONN when the relay is not connected,
 * or no longer, having left more than max_queue unread (it is disconnected).
 */
int upstream_send(struct upstream_relay *r, const char *msg, size_t len);

/*
 * Handles one message from `r` as if it had just arrived on its connection:
 * parses it, counts what cannot be used against the relay (upstream_dropped),
 * and hands the rest to the handler. Messages from the socket come in here;
 * so do the fuzzer's.
 */
void upstream_receive(struct upstream_relay *r, const uint8_t *data, size_t len, bool binary);

/*
 * Counts a message from `r` that could not be used (forged, malformed, not asked
 * for). A relay that keeps sending them is disconnected and tried again later.
 */
void upstream_dropped(struct upstream_relay *r, const char *why);

/* Whether a connection attempt is under way to some relay. */
bool upstream_connecting(const struct upstream *up);

void upstream_relay_stats(const struct upstream *up, size_t i, struct upstream_relay_stats *out);

/* Closes every connection and stops reconnecting. Idempotent. */
void upstream_shutdown(struct upstream *up);

/* The TLS context of the connections (the system's trust store and upstream_ca_file), for others dialing relays. */
SSL_CTX *upstream_ssl_ctx(struct upstream *up);

/* Connections still open or being opened after upstream_shutdown(); wait for 0 before upstream_free(). */
size_t upstream_open_count(const struct upstream *up);

/*
 * Releases the upstream; the memory goes once the loop has run the close
 * callbacks. With connections still open (shutdown's deadline passed), it is
 * kept, since they will call back into it: the process is ending then.
 */
void upstream_free(struct upstream *up);

#endif
