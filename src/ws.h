/* ws.h -- WebSocket connections over h2o sockets, framed by wslay, with bounded buffers and backpressure. */
#ifndef PFP_WS_H
#define PFP_WS_H

#include <h2o.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ws_conn;

/* Callbacks, all on the loop thread. */
struct ws_handler {
    /* A whole message; `msg` is valid only during the call. */
    void (*on_message)(struct ws_conn *ws, const uint8_t *msg, size_t len, bool binary);
    /* What is queued fell back under `low_water` bytes after having been above it. May be NULL. */
    void (*on_drain)(struct ws_conn *ws);
    /*
     * The connection is being closed with 1008 because the peer does not read
     * (see ws_options.max_queue); `queued` is what it held. Once per connection,
     * before on_close. May be NULL.
     */
    void (*on_overflow)(struct ws_conn *ws, size_t queued);
    /* The connection is gone: closed by either side, failed, or timed out. The ws_conn is freed after this returns. */
    void (*on_close)(struct ws_conn *ws);
};

/*
 * Bytes queued on a set of connections (a relay's clients), against a limit for
 * them all. When the set holds more than its limit, a message for a connection
 * holding more than its share (the limit divided among the connections) closes
 * that connection as if it were over its own limit. Once its bytes have fallen
 * to a quarter of a high mark of 32 MiB or more (slow readers cut off, a burst
 * drained), the freed heap is handed back to the kernel with malloc_trim(), at
 * most every 5 seconds. The fields are private.
 */
struct ws_budget {
    size_t _limit; /* 0: none */
    size_t _used, _peak;
    size_t _conns;
    uint64_t _coalesced;
    size_t _trim_high; /* the highest use since memory was last given back */
    uint64_t _trimmed_at, _trims;
    uv_timer_t _timer; /* a pending malloc_trim() */
    void (*_on_closed)(struct ws_budget *b);
};

struct ws_budget_stats {
    size_t used;              /* queued now */
    size_t peak;              /* the most queued at once since start-up */
    size_t connections;       /* connections counted */
    uint64_t pings_coalesced; /* pings answered by a later ping's pong (RFC 6455, 5.5.3) */
    uint64_t trims;           /* times freed memory was given back to the kernel */
};

/* Sets a budget up with `limit` bytes (0 for none); it gives memory back on `loop`. */
void ws_budget_init(struct ws_budget *b, uv_loop_t *loop, size_t limit);

void ws_budget_stats(const struct ws_budget *b, struct ws_budget_stats *out);

/*
 * Releases the budget once its connections are gone; `done` runs from the loop
 * when `b` may be freed.
 */
void ws_budget_close(struct ws_budget *b, void (*done)(struct ws_budget *b));

struct ws_options {
    size_t max_message;     /* larger messages close the connection with 1009 */
    size_t low_water;       /* on_drain threshold */
    uint64_t ping_interval; /* milliseconds; a peer silent for two intervals is dropped; 0 turns pings off */
    /*
     * What may wait for a peer that does not read, counting every byte held for
     * it: frames queued, the socket write in progress, and the pongs it has asked
     * for. Reading stops while more than half of it is queued (backpressure). A
     * message sent while more than all of it is queued, or pings whose pongs
     * would take it past this while the peer does not read, close the connection
     * with 1008. 0 for no limit.
     */
    size_t max_queue;
    struct ws_budget *budget; /* counts this connection's bytes too; may be NULL; must outlive the connection */
};

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455): base64(SHA-1(key + GUID)), 28 characters and a NUL. */
void ws_accept_key(char out[29], const char *key, size_t key_len);

/* 1 when `req` asks for a WebSocket upgrade, 0 when it does not, -1 when it asks badly (a malformed key). */
int ws_is_upgrade(h2o_req_t *req);

/*
 * Answers the upgrade request `req` with 101 Switching Protocols and takes its
 * connection over. `data` is the caller's, returned by ws_data(). The handler
 * must outlive the connection. Messages may be sent at once; they go out after
 * the 101.
 */
struct ws_conn *ws_accept(h2o_req_t *req, const struct ws_handler *h, void *data, const struct ws_options *opt);

/*
 * Client side: takes over `sock`, whose upgrade the server has accepted (see
 * wsdial.h), and frames as a client does, masking what it sends.
 */
struct ws_conn *ws_client(h2o_socket_t *sock, const struct ws_handler *h, void *data, const struct ws_options *opt);

void *ws_data(const struct ws_conn *ws);

/*
 * Queues a text message (copied). Returns 0; -EPIPE once the connection is
 * closing; -ENOBUFS when the peer has more queued than max_queue (or than its
 * share of a budget that is spent): the connection is then closed with 1008
 * (on_overflow is called), and later sends return -EPIPE.
 */
int ws_send_text(struct ws_conn *ws, const char *msg, size_t len);

/* Every byte held for the peer: frames queued, the socket write in progress, a pong waiting. */
size_t ws_queued(const struct ws_conn *ws);

/* Stops or resumes reading from the peer, to push back when work piles up. */
void ws_pause(struct ws_conn *ws, bool paused);

/* Sends a close frame with `code` and `reason`, then closes; on_close follows. Idempotent. */
void ws_close(struct ws_conn *ws, uint16_t code, const char *reason);

#endif
