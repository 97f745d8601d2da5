/* wsdial.c -- opens a client WebSocket connection: DNS, TCP, TLS and the HTTP/1.1 upgrade, never blocking the loop. */
#include "wsdial.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "ws.h"

/* The server's answer to the upgrade must fit in this. */
#define MAX_RESPONSE_HEAD 16384

struct wsdial {
    uv_loop_t *loop;
    const struct ws_url *url;
    SSL_CTX *ssl_ctx;
    const struct netguard *guard;
    char refused[160]; /* why the guard refused the last address it refused, "" while none */
    wsdial_cb cb;
    void *data;
    uv_getaddrinfo_t gai;
    bool resolving;
    struct addrinfo *addrs, *next_addr;
    h2o_socket_t *sock;
    uv_timer_t timer;
    char key[25]; /* Sec-WebSocket-Key */
    struct buf request;
    const char *early_err; /* a failure found before the loop ran, reported from it */
    bool done;             /* the callback has run, or the dial was cancelled */
};

static void on_timer_closed(uv_handle_t *h)
{
    struct wsdial *d = h->data;
    buf_free(&d->request);
    free(d);
}

/* Frees the dial once nothing is pending; a running getaddrinfo frees it from its own callback. */
static void release(struct wsdial *d)
{
    if (d->addrs != NULL) {
        uv_freeaddrinfo(d->addrs);
        d->addrs = NULL;
    }
    if (!d->resolving && !uv_is_closing((uv_handle_t *)&d->timer))
        uv_close((uv_handle_t *)&d->timer, on_timer_closed);
}

static void finish(struct wsdial *d, h2o_socket_t *sock, const char *err)
{
    if (d->done)
        return;
    d->done = true;
    uv_timer_stop(&d->timer);
    if (sock == NULL && d->sock != NULL)
        h2o_socket_close(d->sock);
    d->sock = NULL;
    d->cb(d->data, sock, err);
    release(d);
}

void wsdial_cancel(struct wsdial *d)
{
    if (d->done)
        return;
    d->done = true;
    uv_timer_stop(&d->timer);
    if (d->sock != NULL) {
        h2o_socket_close(d->sock);
        d->sock = NULL;
    }
    if (d->resolving)
        uv_cancel((uv_req_t *)&d->gai);
    release(d);
}

static void on_timeout(uv_timer_t *t)
{
    struct wsdial *d = t->data;
    finish(d, NULL, d->early_err != NULL ? d->early_err : "timed out");
}

static int header_is(const char *name, size_t nlen, const char *want)
{
    return nlen == strlen(want) && strncasecmp(name, want, nlen) == 0;
}

/* Whether the comma-separated `value` holds `token`, ignoring case. */
static int has_token(const char *value, size_t len, const char *token)
{
    size_t tlen = strlen(token), i = 0;

    while (i < len) {
        size_t start, end;
        while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
            i++;
        start = i;
        while (i < len && value[i] != ',')
            i++;
        end = i;
        while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
            end--;
        if (end - start == tlen && strncasecmp(value + start, token, tlen) == 0)
            return 1;
    }
    return 0;
}

static ssize_t parse_response(const char *buf, size_t len, const char *key, const char **err)
{
    const char *end = NULL, *p, *line_end;
    char expect[29];
    bool upgrade = false, connection = false, accept = false;

    for (size_t i = 0; i + 3 < len; i++) {
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
            end = buf + i + 2;
            break;
        }
    }
    if (end == NULL) {
        if (len >= MAX_RESPONSE_HEAD) {
            *err = "the upgrade response head is too large";
            return -1;
        }
        return 0;
    }

    /* "HTTP/1.1 101 ..." */
    line_end = memchr(buf, '\r', (size_t)(end - buf));
    if ((size_t)(line_end - buf) < 12 || memcmp(buf, "HTTP/1.1 ", 9) != 0) {
        *err = "the upgrade response is not HTTP/1.1";
        return -1;
    }
    if (memcmp(buf + 9, "101", 3) != 0 || (buf[12] != ' ' && buf + 12 != line_end)) {
        *err = "the server refused the WebSocket upgrade";
        return -1;
    }

    ws_accept_key(expect, key, strlen(key));
    for (p = line_end + 2; p < end; p = line_end + 2) {
        const char *colon, *value;
        size_t vlen;
        line_end = memchr(p, '\r', (size_t)(end - p));
        if (line_end == NULL || line_end[1] != '\n') {
            *err = "malformed header in the upgrade response";
            return -1;
        }
        colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon == NULL || colon == p) {
            *err = "malformed header in the upgrade response";
            return -1;
        }
        value = colon + 1;
        while (value < line_end && (*value == ' ' || *value == '\t'))
            value++;
        vlen = (size_t)(line_end - value);
        while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
            vlen--;
        if (header_is(p, (size_t)(colon - p), "upgrade"))
            upgrade = vlen == 9 && strncasecmp(value, "websocket", 9) == 0;
        else if (header_is(p, (size_t)(colon - p), "connection"))
            connection = has_token(value, vlen, "upgrade");
        else if (header_is(p, (size_t)(colon - p), "sec-websocket-accept"))
            accept = vlen == 28 && memcmp(value, expect, 28) == 0;
    }
    if (!upgrade || !connection) {
        *err = "the upgrade response lacks Upgrade: websocket or Connection: upgrade";
        return -1;
    }
    if (!accept) {
        *err = "the upgrade response's Sec-WebSocket-Accept does not match";
        return -1;
    }
    return end + 2 - buf;
}

ssize_t wsdial_parse_response(const char *buf, size_t len, const char *key, char *err, size_t errlen)
{
    const char *why = NULL;
    ssize_t n = parse_response(buf, len, key, &why);

    if (n >= 0)
        return n;
    snprintf(err, errlen, "%s", why);
    return -EPROTO;
}

static void on_response(h2o_socket_t *sock, const char *err)
{
    struct wsdial *d = sock->data;
    char why[WSDIAL_ERR_LEN];
    ssize_t n;

    if (err != NULL) {
        finish(d, NULL, "the connection closed during the WebSocket upgrade");
        return;
    }
    n = wsdial_parse_response(sock->input->bytes, sock->input->size, d->key, why, sizeof(why));
    if (n == 0)
        return;
    if (n < 0) {
        finish(d, NULL, why);
        return;
    }
    h2o_buffer_consume(&sock->input, (size_t)n);
    h2o_socket_read_stop(sock);
    d->sock = NULL;
    finish(d, sock, NULL);
}

static void on_request_written(h2o_socket_t *sock, const char *err)
{
    struct wsdial *d = sock->data;

    if (err != NULL) {
        finish(d, NULL, err);
        return;
    }
    h2o_socket_read_start(sock, on_response);
}

static void send_upgrade(struct wsdial *d)
{
    const struct ws_url *u = d->url;
    unsigned char nonce[16];
    bool default_port = u->port == (u->tls ? 443 : 80);
    bool v6 = strchr(u->host, ':') != NULL;
    h2o_iovec_t iov;

    RAND_bytes(nonce, sizeof(nonce));
    EVP_EncodeBlock((unsigned char *)d->key, nonce, sizeof(nonce));
    buf_appendf(&d->request, "GET %s HTTP/1.1\r\nHost: %s%s%s", u->path, v6 ? "[" : "", u->host, v6 ? "]" : "");
    if (!default_port)
        buf_appendf(&d->request, ":%u", u->port);
    buf_appendf(&d->request,
                "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                "Sec-WebSocket-Version: 13\r\nUser-Agent: pfpcache-relay/" PFP_VERSION "\r\n\r\n",
                d->key);
    iov = h2o_iovec_init(d->request.data, d->request.len);
    h2o_socket_write(d->sock, &iov, 1, on_request_written);
}

static void on_handshake(h2o_socket_t *sock, const char *err)
{
    struct wsdial *d = sock->data;

    if (err != NULL) {
        finish(d, NULL, err);
        return;
    }
    send_upgrade(d);
}

static void try_next_address(struct wsdial *d);

static void on_connect(h2o_socket_t *sock, const char *err)
{
    struct wsdial *d = sock->data;
    int fd, one = 1;

    if (err != NULL) {
        h2o_socket_close(sock);
        d->sock = NULL;
        try_next_address(d);
        return;
    }
    /* A REQ is a small write answered by small writes: Nagle's delay would add tens of milliseconds to each. */
    if ((fd = h2o_socket_get_fd(sock)) >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (d->url->tls)
        h2o_socket_ssl_handshake(sock, d->ssl_ctx, d->url->host, on_handshake);
    else
        send_upgrade(d);
}

static void try_next_address(struct wsdial *d)
{
    while (d->next_addr != NULL) {
        struct addrinfo *ai = d->next_addr;
        d->next_addr = ai->ai_next;
        if (d->guard != NULL && netguard_check(d->guard, ai->ai_addr, d->refused, sizeof(d->refused)) != 0)
            continue;
        if ((d->sock = h2o_socket_connect(d->loop, ai->ai_addr, ai->ai_addrlen, on_connect)) != NULL) {
            d->sock->data = d;
            return;
        }
    }
    if (d->refused[0] != '\0') {
        char why[200];
        snprintf(why, sizeof(why), "refused address: %s", d->refused);
        finish(d, NULL, why);
        return;
    }
    finish(d, NULL, "connection refused");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct wsdial *d = req->data;

    d->resolving = false;
    d->addrs = res;
    if (d->done) {
        release(d);
        return;
    }
    if (status != 0) {
        finish(d, NULL, uv_strerror(status));
        return;
    }
    d->next_addr = res;
    try_next_address(d);
}

struct wsdial *wsdial_start(uv_loop_t *loop, const struct ws_url *url, SSL_CTX *ssl_ctx, const struct netguard *guard,
                            uint64_t timeout_ms, wsdial_cb cb, void *data)
{
    struct wsdial *d = calloc(1, sizeof(*d));
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char port[8];
    int r;

    if (d == NULL)
        abort();
    d->loop = loop;
    d->url = url;
    d->ssl_ctx = ssl_ctx;
    d->guard = guard;
    d->cb = cb;
    d->data = data;
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    d->gai.data = d;
    uv_timer_start(&d->timer, on_timeout, timeout_ms, 0);

    snprintf(port, sizeof(port), "%u", url->port);
    d->resolving = true;
    if ((r = uv_getaddrinfo(loop, &d->gai, on_resolved, url->host, port, &hints)) != 0) {
        d->resolving = false;
        d->early_err = uv_strerror(r);
        /* Reported from the loop, so that callers always hear back after wsdial_start() has returned. */
        uv_timer_start(&d->timer, on_timeout, 0, 0);
    }
    return d;
}
