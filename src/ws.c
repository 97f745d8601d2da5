/* ws.c -- WebSocket connections over h2o sockets, framed by wslay, with bounded buffers and backpressure. */
#include "ws.h"

#include <errno.h>
#include <malloc.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "buf.h"
#include "h2o/websocket.h"
#include "log.h"

/* How long a close frame may take to leave before the connection is dropped anyway. */
#define CLOSE_GRACE_MS 5000
/* An empty output buffer larger than this is freed, so that a burst does not keep its memory. */
#define KEEP_BUFFER (64 * 1024)
/*
 * Freed heap is handed back to the kernel (malloc_trim) once a budget's bytes have
 * fallen to a quarter of a high mark of at least TRIM_MIN_HIGH, at most once per
 * TRIM_INTERVAL_MS: glibc keeps what a burst of small frees leaves in the middle
 * of the heap, whatever M_TRIM_THRESHOLD says.
 */
#define TRIM_MIN_HIGH    (32u << 20)
#define TRIM_INTERVAL_MS 5000

struct ws_conn {
    h2o_socket_t *sock; /* NULL until the 101 has been sent */
    wslay_event_context_ptr ctx;
    const struct ws_handler *h;
    void *data;
    struct ws_options opt;
    bool client;
    /*
     * Whole frames not yet handed to the socket. wslay frames every message into
     * it at once, so that between wslay's calls it ends at a frame boundary: pongs
     * can be appended, and everything dropped when the peer is cut off.
     */
    struct buf out;
    struct buf wbuf;   /* frames the socket is writing */
    size_t charged;    /* what the budget counts for this connection */
    uint64_t in_left;  /* bytes of the frame wslay is reading still to hand it; 0 at a frame boundary */
    uint8_t ping[125]; /* the payload of the latest ping */
    size_t ping_len;
    bool pong_due; /* the latest ping is answered when the socket write in progress completes */
    size_t owed;   /* bytes of the pongs coalesced since that write began */
    bool writing;
    bool paused;
    bool in_proceed, again;
    bool above_low;
    bool closing;    /* ws_close() was called */
    bool overflowed; /* closed for what was queued */
    bool dead;       /* torn down; freed once the timer has closed */
    uint64_t last_recv;
    uv_timer_t timer; /* pings, then the close grace period */
};

static void proceed(struct ws_conn *ws);
static void on_timer(uv_timer_t *t);

/* --- budgets ---------------------------------------------------------------------------------------------------- */

static void on_trim_timer(uv_timer_t *t)
{
    struct ws_budget *b = t->data;

    malloc_trim(0);
    b->_trims++;
    b->_trimmed_at = uv_now(t->loop);
    b->_trim_high = b->_used;
}

/* Gives freed memory back once the budget's bytes have fallen well under their high mark, after this loop turn. */
static void maybe_trim(struct ws_budget *b)
{
    uint64_t now, due;

    if (b->_trim_high < TRIM_MIN_HIGH || b->_used > b->_trim_high / 4 || uv_is_active((uv_handle_t *)&b->_timer))
        return;
    now = uv_now(b->_timer.loop);
    due = b->_trims > 0 && now < b->_trimmed_at + TRIM_INTERVAL_MS ? b->_trimmed_at + TRIM_INTERVAL_MS - now : 0;
    uv_timer_start(&b->_timer, on_trim_timer, due, 0);
}

void ws_budget_init(struct ws_budget *b, uv_loop_t *loop, size_t limit)
{
    memset(b, 0, sizeof(*b));
    b->_limit = limit;
    uv_timer_init(loop, &b->_timer);
    b->_timer.data = b;
}

void ws_budget_stats(const struct ws_budget *b, struct ws_budget_stats *out)
{
    *out = (struct ws_budget_stats){b->_used, b->_peak, b->_conns, b->_coalesced, b->_trims};
}

static void on_budget_closed(uv_handle_t *h)
{
    struct ws_budget *b = h->data;
    b->_on_closed(b);
}

void ws_budget_close(struct ws_budget *b, void (*done)(struct ws_budget *b))
{
    b->_on_closed = done;
    uv_close((uv_handle_t *)&b->_timer, on_budget_closed);
}

/* Brings the budget's count of this connection up to date. */
static void charge(struct ws_conn *ws)
{
    struct ws_budget *b = ws->opt.budget;
    size_t now = ws->dead ? 0 : ws_queued(ws);

    if (b == NULL || now == ws->charged)
        return;
    b->_used = b->_used - ws->charged + now;
    ws->charged = now;
    if (b->_used > b->_peak)
        b->_peak = b->_used;
    if (b->_used > b->_trim_high)
        b->_trim_high = b->_used;
    maybe_trim(b);
}

/* --- connections ------------------------------------------------------------------------------------------------ */

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
    charge(ws);
    if (ws->opt.budget != NULL)
        ws->opt.budget->_conns--;
    uv_close((uv_handle_t *)&ws->timer, on_timer_closed);
}

size_t ws_queued(const struct ws_conn *ws)
{
    size_t n = ws->out.len + ws->wbuf.len;

    if (ws->pong_due)
        n += (ws->client ? 6 : 2) + ws->ping_len;
    if (ws->ctx != NULL)
        n += wslay_event_get_queued_msg_length(ws->ctx);
    return n;
}

/* Whether a message for this peer finds too much already waiting for it, or the budget spent and it a big user. */
static bool over_limit(const struct ws_conn *ws)
{
    const struct ws_budget *b = ws->opt.budget;

    if (ws->opt.max_queue != 0 && ws_queued(ws) > ws->opt.max_queue)
        return true;
    return b != NULL && b->_limit != 0 && b->_used > b->_limit && ws->charged > b->_limit / b->_conns;
}

/* Whether so much waits for the peer that nothing more is read from it until it reads. */
static bool backlogged(const struct ws_conn *ws)
{
    return ws->opt.max_queue != 0 && ws_queued(ws) > ws->opt.max_queue / 2;
}

/*
 * Cuts off a peer that does not read: what waits for it is dropped at once (it
 * ends at a frame boundary), and the close frame follows the write in progress.
 */
static void overflow(struct ws_conn *ws)
{
    size_t queued = ws_queued(ws) + ws->owed;

    if (ws->overflowed || ws->closing || ws->dead)
        return;
    ws->overflowed = true;
    if (ws->out.cap > KEEP_BUFFER)
        buf_free(&ws->out);
    ws->out.len = 0;
    ws->pong_due = false;
    ws->owed = 0;
    if (ws->h->on_overflow != NULL)
        ws->h->on_overflow(ws, queued);
    ws_close(ws, 1008, "slow consumer: too many bytes queued");
}

/* Appends a control frame of our own; `len` is at most 125. */
static void put_control(struct ws_conn *ws, uint8_t opcode, const uint8_t *payload, size_t len)
{
    uint8_t f[2 + 4 + 125], mask[4];
    size_t n = 0;

    f[n++] = 0x80 | opcode;
    if (ws->client) {
        if (RAND_bytes(mask, sizeof(mask)) != 1)
            abort();
        f[n++] = 0x80 | (uint8_t)len;
        memcpy(f + n, mask, 4);
        n += 4;
        for (size_t i = 0; i < len; i++)
            f[n++] = payload[i] ^ mask[i % 4];
    } else {
        f[n++] = (uint8_t)len;
        memcpy(f + n, payload, len);
        n += len;
    }
    buf_append(&ws->out, f, n);
}

/* Whether pongs may still go out: not after a close frame. */
static bool may_pong(const struct ws_conn *ws)
{
    return !ws->closing && ws->ctx != NULL && !wslay_event_get_close_sent(ws->ctx);
}

/*
 * Answers the ping in ws->ping. While a socket write is in progress, the peer
 * has not taken what was sent before: only the latest ping is answered, once it
 * completes (RFC 6455, 5.5.3), and a peer whose coalesced pongs would add up to
 * more than max_queue is cut off as if they were queued.
 */
static void on_ping(struct ws_conn *ws)
{
    size_t pong = (ws->client ? 6 : 2) + ws->ping_len;

    if (!may_pong(ws))
        return;
    if (!ws->writing) {
        put_control(ws, WSLAY_PONG, ws->ping, ws->ping_len);
        return;
    }
    if (ws->pong_due) {
        ws->owed += pong;
        if (ws->opt.budget != NULL)
            ws->opt.budget->_coalesced++;
    }
    ws->pong_due = true;
    if (ws->opt.max_queue != 0 && ws_queued(ws) + ws->owed > ws->opt.max_queue)
        overflow(ws);
}

enum { FRAME_MORE, FRAME_OTHER, FRAME_PING };

/*
 * Looks at the frame at the front of the input. A whole, well-formed ping is
 * taken out (its payload in ws->ping); any other frame is handed to wslay, which
 * judges it, and ws->in_left says how long it is. FRAME_MORE: its header, or the
 * whole ping, has not arrived yet.
 */
static int next_frame(struct ws_conn *ws)
{
    const uint8_t *p = (const uint8_t *)ws->sock->input->bytes;
    size_t avail = ws->sock->input->size, hlen;
    uint64_t plen;
    bool masked;

    if (avail < 2)
        return FRAME_MORE;
    masked = (p[1] & 0x80) != 0;
    plen = p[1] & 0x7f;
    hlen = 2 + (plen == 126 ? 2 : plen == 127 ? 8 : 0) + (masked ? 4 : 0);
    if (avail < hlen)
        return FRAME_MORE;
    if (p[0] != (0x80 | WSLAY_PING) || plen > 125 || masked == ws->client) {
        if (plen >= 126) {
            size_t ext = plen == 126 ? 2 : 8;
            plen = 0;
            for (size_t i = 0; i < ext; i++)
                plen = plen << 8 | p[2 + i];
        }
        ws->in_left = plen > UINT64_MAX - hlen ? UINT64_MAX : hlen + plen;
        return FRAME_OTHER;
    }
    if (avail < hlen + plen)
        return FRAME_MORE;
    for (size_t i = 0; i < plen; i++)
        ws->ping[i] = p[hlen + i] ^ (masked ? p[hlen - 4 + i % 4] : 0);
    ws->ping_len = plen;
    h2o_buffer_consume(&ws->sock->input, hlen + plen);
    return FRAME_PING;
}

/* Hands wslay the bytes of the frame it is reading, never more, so that each next frame is seen here first. */
static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user)
{
    struct ws_conn *ws = user;
    size_t n;
    int f;

    (void)flags;
    for (;;) {
        if (ws->paused || ws->sock == NULL || backlogged(ws))
            goto wait;
        if (ws->in_left > 0)
            break;
        if ((f = next_frame(ws)) == FRAME_MORE)
            goto wait;
        if (f == FRAME_OTHER)
            break;
        ws->last_recv = uv_now(ws->timer.loop);
        on_ping(ws);
    }
    n = len < ws->sock->input->size ? len : ws->sock->input->size;
    if (n > ws->in_left)
        n = (size_t)ws->in_left;
    if (n == 0)
        goto wait;
    memcpy(buf, ws->sock->input->bytes, n);
    h2o_buffer_consume(&ws->sock->input, n);
    ws->in_left -= n;
    ws->last_recv = uv_now(ws->timer.loop);
    return (ssize_t)n;

wait:
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
    struct ws_conn *ws = user;
    (void)ctx;
    (void)flags;

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

static void on_write_complete(h2o_socket_t *sock, const char *err)
{
    struct ws_conn *ws = sock->data;

    ws->writing = false;
    if (ws->wbuf.cap > KEEP_BUFFER)
        buf_free(&ws->wbuf);
    ws->wbuf.len = 0;
    if (err != NULL) {
        destroy(ws);
        return;
    }
    /* The peer has taken what was written: the latest ping is answered, the coalesced ones are forgiven. */
    ws->owed = 0;
    if (ws->pong_due) {
        ws->pong_due = false;
        if (may_pong(ws))
            put_control(ws, WSLAY_PONG, ws->ping, ws->ping_len);
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

static void on_discard(h2o_socket_t *sock, const char *err)
{
    struct ws_conn *ws = sock->data;

    if (err != NULL)
        destroy(ws);
    else
        h2o_buffer_consume(&sock->input, sock->input->size);
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
    if (ws->dead)
        return;
    if (wslay_event_want_write(ws->ctx) && wslay_event_send(ws->ctx) != 0) {
        /* Our send callback never fails, so this is wslay refusing its own state; the loop tears it down. */
        wslay_event_shutdown_write(ws->ctx);
        return;
    }
    flush(ws);
    charge(ws);
}

static bool reading(const struct ws_conn *ws)
{
    return !ws->paused && !backlogged(ws) && wslay_event_want_read(ws->ctx);
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
        if (ws->sock != NULL && ws->sock->input->size != 0 && reading(ws)) {
            if (wslay_event_recv(ws->ctx) != 0)
                goto fail;
        }
        if (ws->dead)
            return;
        if (wslay_event_want_write(ws->ctx)) {
            if (wslay_event_send(ws->ctx) != 0)
                goto fail;
        }
        flush(ws);
    } while (ws->again && !ws->dead);
    ws->in_proceed = false;
    charge(ws);

    if (ws->sock == NULL)
        return;
    if (!wslay_event_want_read(ws->ctx) && !wslay_event_want_write(ws->ctx) && !ws->writing && ws->out.len == 0) {
        if (wslay_event_get_close_received(ws->ctx)) {
            destroy(ws);
            return;
        }
        /*
         * wslay stopped reading (the peer broke the protocol) and its close frame is
         * out: what the peer still sends is dropped until it closes, as in ws_close().
         */
        if (!ws->closing) {
            ws->closing = true;
            uv_timer_start(&ws->timer, on_timer, CLOSE_GRACE_MS, 0);
        }
        h2o_buffer_consume(&ws->sock->input, ws->sock->input->size);
        h2o_socket_read_start(ws->sock, on_discard);
        return;
    }
    if (reading(ws))
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
    ws->client = client;
    if ((client ? wslay_event_context_client_init(&ws->ctx, &client_callbacks, ws)
                : wslay_event_context_server_init(&ws->ctx, &server_callbacks, ws)) != 0)
        abort();
    wslay_event_config_set_max_recv_msg_length(ws->ctx, opt->max_message);
    uv_timer_init(loop, &ws->timer);
    ws->timer.data = ws;
    if (opt->budget != NULL)
        opt->budget->_conns++;
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

    if (ws->closing || ws->dead)
        return -EPIPE;
    if (over_limit(ws)) {
        overflow(ws);
        return -ENOBUFS;
    }
    if (wslay_event_queue_msg(ws->ctx, &m) != 0)
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
    ws->pong_due = false;
    wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, reason ? strlen(reason) : 0);
    /*
     * What the peer sends is read, and dropped, until its answering close frame
     * (RFC 6455, 7.1.1) or the end of the connection, for the grace period at most:
     * closing with bytes unread would reset the connection, and the kernel drop our
     * close frame with whatever else it had not sent yet.
     */
    uv_timer_start(&ws->timer, on_timer, CLOSE_GRACE_MS, 0);
    send_pending(ws);
}
