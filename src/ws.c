/* ws.c -- WebSocket connections over h2o sockets, framed by wslay, with bounded buffers and backpressure. */
#include "ws.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "buf.h"
#include "h2o/websocket.h"
#include "log.h"

/* Frames gathered for one socket write; more stay queued inside wslay until the write completes. */
#define WRITE_CHUNK (256 * 1024)
/* How long a close frame may take to leave before the connection is dropped anyway. */
#define CLOSE_GRACE_MS 5000

struct ws_conn {
    h2o_socket_t *sock; /* NULL until the 101 has been sent */
    wslay_event_context_ptr ctx;
    const struct ws_handler *h;
    void *data;
    struct ws_options opt;
    struct buf out;  /* frames not yet handed to the socket */
    struct buf wbuf; /* frames the socket is writing */
    bool writing;
    bool paused;
    bool in_proceed, again;
    bool above_low;
    bool closing; /* ws_close() was called */
    bool dead;    /* torn down; freed once the timer has closed */
    uint64_t last_recv;
    uv_timer_t timer; /* pings, then the close grace period */
};

static void proceed(struct ws_conn *ws);

static void on_timer_closed(uv_handle_t *h)
{
    struct ws_conn *ws = h->data;
    buf_free(&ws->out);
    buf_free(&ws->wbuf);
    free(ws);
}

/* Tells the owner, then releases everything; the memory goes when the timer handle has closed. */
static void destroy(struct ws_conn *ws)
{
    if (ws->dead)
        return;
    ws->dead = true;
    ws->h->on_close(ws);
    if (ws->sock != NULL) {
        h2o_socket_close(ws->sock);
        ws->sock = NULL;
    }
    wslay_event_context_free(ws->ctx);
    ws->ctx = NULL;
    uv_close((uv_handle_t *)&ws->timer, on_timer_closed);
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    struct ws_conn *ws = user;
    (void)flags;

    if (ws->paused || ws->sock == NULL || ws->sock->input->size == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (len > ws->sock->input->size)
        len = ws->sock->input->size;
    memcpy(buf, ws->sock->input->bytes, len);
    h2o_buffer_consume(&ws->sock->input, len);
    ws->last_recv = uv_now(ws->timer.loop);
    return (ssize_t)len;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
    struct ws_conn *ws = user;
    (void)flags;

    if (ws->out.len >= WRITE_CHUNK) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    buf_append(&ws->out, data, len);
    return (ssize_t)len;
}

static void on_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
    struct ws_conn *ws = user;
    (void)ctx;

    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
        if (!ws->closing)
            ws->h->on_message(ws, arg->msg, arg->msg_length, arg->opcode == WSLAY_BINARY_FRAME);
    }
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    (void)ctx;
    (void)user;
    return RAND_bytes(buf, (int)len) == 1 ? 0 : -1;
}

static const struct wslay_event_callbacks server_callbacks = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .on_msg_recv_callback = on_msg_cb,
};

static const struct wslay_event_callbacks client_callbacks = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .genmask_callback = genmask_cb,
    .on_msg_recv_callback = on_msg_cb,
};

size_t ws_queued(const struct ws_conn *ws)
{
    size_t n = ws->out.len;
    if (ws->ctx != NULL)
        n += wslay_event_get_queued_msg_length(ws->ctx);
    return n;
}

static void on_write_complete(h2o_socket_t *sock, const char *err)
{
    struct ws_conn *ws = sock->data;

    ws->writing = false;
    ws->wbuf.len = 0;
    if (err != NULL) {
        destroy(ws);
        return;
    }
    if (ws->above_low && ws_queued(ws) <= ws->opt.low_water) {
        ws->above_low = false;
        if (ws->h->on_drain != NULL && !ws->closing)
            ws->h->on_drain(ws);
        if (ws->dead)
            return;
    }
    proceed(ws);
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    struct ws_conn *ws = sock->data;

    if (err != NULL) {
        destroy(ws);
        return;
    }
    proceed(ws);
}

static void flush(struct ws_conn *ws)
{
    struct buf t;
    h2o_iovec_t iov;

    if (ws->writing || ws->out.len == 0 || ws->sock == NULL)
        return;
    t = ws->wbuf;
    ws->wbuf = ws->out;
    ws->out = t;
    ws->out.len = 0;
    iov = h2o_iovec_init(ws->wbuf.data, ws->wbuf.len);
    ws->writing = true;
    h2o_socket_write(ws->sock, &iov, 1, on_write_complete);
}

/*
 * Frames what wslay has queued and starts a socket write. It never reads, so the
 * owner may send from inside its own callbacks without messages arriving meanwhile.
 */
static void send_pending(struct ws_conn *ws)
{
    if (ws->dead || ws->sock == NULL)
        return;
    if (wslay_event_want_write(ws->ctx) && wslay_event_send(ws->ctx) != 0) {
        /* Our send callback never fails, so this is wslay refusing its own state; the loop tears it down. */
        wslay_event_shutdown_write(ws->ctx);
        return;
    }
    flush(ws);
}

/* Moves bytes in and out until nothing more can happen now, then decides whether to read on or close. */
static void proceed(struct ws_conn *ws)
{
    if (ws->dead)
        return;
    if (ws->in_proceed) {
        ws->again = true;
        return;
    }
    ws->in_proceed = true;
    do {
        ws->again = false;
        if (ws->sock != NULL && !ws->paused && ws->sock->input->size != 0 && wslay_event_want_read(ws->ctx)) {
            if (wslay_event_recv(ws->ctx) != 0)
                goto fail;
        }
        if (ws->dead)
            return;
        if (ws->sock != NULL && wslay_event_want_write(ws->ctx)) {
            if (wslay_event_send(ws->ctx) != 0)
                goto fail;
        }
        flush(ws);
    } while (ws->again && !ws->dead);
    ws->in_proceed = false;

    if (ws->sock == NULL)
        return;
    if (!wslay_event_want_read(ws->ctx) && !wslay_event_want_write(ws->ctx) && !ws->writing && ws->out.len == 0) {
        destroy(ws);
        return;
    }
    if (wslay_event_want_read(ws->ctx) && !ws->paused)
        h2o_socket_read_start(ws->sock, on_read);
    else
        h2o_socket_read_stop(ws->sock);
    return;

fail:
    ws->in_proceed = false;
    destroy(ws);
}

static void on_timer(uv_timer_t *t)
{
    struct ws_conn *ws = t->data;
    uint64_t now = uv_now(t->loop);

    if (ws->closing || now - ws->last_recv > 2 * ws->opt.ping_interval) {
        destroy(ws);
        return;
    }
    struct wslay_event_msg ping = {WSLAY_PING, NULL, 0};
    wslay_event_queue_msg(ws->ctx, &ping);
    proceed(ws);
}

/* h2o 2.2.5 declares a helper for this but does not export it. */
void ws_accept_key(char out[29], const char *key, size_t key_len)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char src[64 + sizeof(guid)], digest[SHA_DIGEST_LENGTH];

    if (key_len > 64)
        key_len = 64;
    memcpy(src, key, key_len);
    memcpy(src + key_len, guid, sizeof(guid) - 1);
    SHA1(src, key_len + sizeof(guid) - 1, digest);
    EVP_EncodeBlock((unsigned char *)out, digest, sizeof(digest));
}

static void on_upgraded(void *data, h2o_socket_t *sock, size_t reqsize)
{
    struct ws_conn *ws = data;

    if (sock == NULL) {
        destroy(ws);
        return;
    }
    ws->sock = sock;
    sock->data = ws;
    h2o_buffer_consume(&sock->input, reqsize);
    ws->last_recv = uv_now(ws->timer.loop);
    if (ws->opt.ping_interval > 0 && !ws->closing)
        uv_timer_start(&ws->timer, on_timer, ws->opt.ping_interval, ws->opt.ping_interval);
    proceed(ws);
}

int ws_is_upgrade(h2o_req_t *req)
{
    const char *key;

    if (req->version >= 0x200)
        return 0;
    if (h2o_is_websocket_handshake(req, &key) != 0)
        return -1;
    return key != NULL;
}

static struct ws_conn *ws_new(uv_loop_t *loop, const struct ws_handler *h, void *data, const struct ws_options *opt,
                              bool client)
{
    struct ws_conn *ws = calloc(1, sizeof(*ws));

    if (ws == NULL)
        abort();
    ws->h = h;
    ws->data = data;
    ws->opt = *opt;
    if ((client ? wslay_event_context_client_init(&ws->ctx, &client_callbacks, ws)
                : wslay_event_context_server_init(&ws->ctx, &server_callbacks, ws)) != 0)
        abort();
    wslay_event_config_set_max_recv_msg_length(ws->ctx, opt->max_message);
    uv_timer_init(loop, &ws->timer);
    ws->timer.data = ws;
    return ws;
}

struct ws_conn *ws_accept(h2o_req_t *req, const struct ws_handler *h, void *data, const struct ws_options *opt)
{
    struct ws_conn *ws;
    const char *client_key;
    char key[29];

    if (req->version >= 0x200 || h2o_is_websocket_handshake(req, &client_key) != 0 || client_key == NULL)
        return NULL;
    ws = ws_new(req->conn->ctx->loop, h, data, opt, false);
    ws_accept_key(key, client_key, 24);
    req->res.status = 101;
    req->res.reason = "Switching Protocols";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_UPGRADE, NULL, H2O_STRLIT("websocket"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-accept"), 0, NULL, key, strlen(key));
    h2o_http1_upgrade(req, NULL, 0, on_upgraded, ws);
    return ws;
}

/* The first look at a client connection, from the loop, once ws_client() has returned it to its owner. */
static void on_client_start(uv_timer_t *t)
{
    struct ws_conn *ws = t->data;

    if (ws->opt.ping_interval > 0 && !ws->closing)
        uv_timer_start(&ws->timer, on_timer, ws->opt.ping_interval, ws->opt.ping_interval);
    proceed(ws);
}

struct ws_conn *ws_client(h2o_socket_t *sock, const struct ws_handler *h, void *data, const struct ws_options *opt)
{
    struct ws_conn *ws = ws_new(h2o_socket_get_loop(sock), h, data, opt, true);

    ws->sock = sock;
    sock->data = ws;
    ws->last_recv = uv_now(ws->timer.loop);
    uv_timer_start(&ws->timer, on_client_start, 0, 0);
    return ws;
}

void *ws_data(const struct ws_conn *ws)
{
    return ws->data;
}

int ws_send_text(struct ws_conn *ws, const char *msg, size_t len)
{
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)msg, len};

    if (ws->closing || ws->dead || wslay_event_queue_msg(ws->ctx, &m) != 0)
        return -EPIPE;
    if (ws_queued(ws) > ws->opt.low_water)
        ws->above_low = true;
    send_pending(ws);
    return 0;
}

void ws_pause(struct ws_conn *ws, bool paused)
{
    if (ws->paused == paused || ws->dead)
        return;
    ws->paused = paused;
    proceed(ws);
}

void ws_close(struct ws_conn *ws, uint16_t code, const char *reason)
{
    if (ws->closing || ws->dead)
        return;
    ws->closing = true;
    wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, reason ? strlen(reason) : 0);
    /* The peer's answering close frame is not awaited: the connection goes once ours is out. */
    wslay_event_shutdown_read(ws->ctx);
    uv_timer_start(&ws->timer, on_timer, CLOSE_GRACE_MS, 0);
    send_pending(ws);
}
