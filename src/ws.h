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
    /* The connection is gone: closed by either side, failed, or timed out. The ws_conn is freed after this returns. */
    void (*on_close)(struct ws_conn *ws);
};

struct ws_options {
    size_t max_message;     /* larger messages close the connection with 1009 */
    size_t low_water;       /* on_drain threshold */
    uint64_t ping_interval; /* milliseconds; a peer silent for two intervals is dropped; 0 turns pings off */
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

/* Queues a text message (copied). Returns 0, or -EPIPE once the connection is closing. */
int ws_send_text(struct ws_conn *ws, const char *msg, size_t len);

/*
 * Bytes waiting behind the socket write in progress. That write holds at most
 * 256 KiB more, usually already in the kernel, so it is not counted.
 */
size_t ws_queued(const struct ws_conn *ws);

/* Stops or resumes reading from the peer, to push back when work piles up. */
void ws_pause(struct ws_conn *ws, bool paused);

/* Sends a close frame with `code` and `reason`, then closes; on_close follows. Idempotent. */
void ws_close(struct ws_conn *ws, uint16_t code, const char *reason);

#endif
