/*
 * fuzz_dispatch.c -- libFuzzer driver for what a client sends the relay: a real relay (HTTP server, WebSocket
 * connections, the NIP-01 dispatcher, NIP-77 sessions, ingest pipeline and store) on loopback, and a client socket in
 * the same process. Each line of the input goes out as one masked text frame; an input whose first byte is 0 goes on
 * the wire as it is, after that byte, so that framing, pings and the close handshake are fuzzed too, and the
 * client then shuts its side down. After lines, a REQ whose answer marks the end follows them. The client reads
 * until the end marker arrives, the relay sends a close frame or closes, or a second has passed; a connection
 * that closed is dropped and opened again for the next input.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "fuzz_pipeline.h"
#include "clock.h"
#include "http.h"
#include "lookup.h"
#include "negserve.h"
#include "relay.h"
#include "upstream.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fuzz_pipeline pl;
static struct upstream *up;
static struct lookup *lk;
static struct relay *relay;
static struct negserve *neg;
static struct http_server http;
static int port;
static int client = -1;
static unsigned long long round_no;

static void not_found(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    (void)data;
    (void)param;
    http_reply_error(req, 404, "not here");
}

/* A port that was free a moment ago. */
static int free_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) != 0)
        abort();
    close(fd);
    return ntohs(sin.sin_port);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const int64_t kinds[] = {0, 1, 3, 10002, 20001, 30000};
    char err[256], addr[32];

    (void)argc;
    (void)argv;
    fuzz_pipeline_init(&pl, "fuzz-dispatch");
    port = free_port();
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    if (upstream_init(&up, &pl.loop, &(struct upstream_options){.max_message = 1 << 20}, err, sizeof(err)) != 0 ||
        lookup_init(&lk, &pl.loop, &(struct lookup_options){.timeout_ms = 1000, .max_concurrent = 4}, up, pl.ig,
                    &pl.st) != 0 ||
        http_server_init(&http, &pl.loop,
                         &(struct http_options){.max_request_body_bytes = 65536,
                                                .access_log = "",
                                                .tls_cert_file = "",
                                                .tls_key_file = "",
                                                .names = {"a", "b", "c", "d"}},
                         err, sizeof(err)) != 0)
        abort();
    /* NIP-77 sessions read their records on the pipeline's pool; a small records bound makes NEG-ERR reachable. */
    negserve_init(&neg, &pl.loop, &pl.st, &pl.pool,
                  &(struct negserve_options){
                      .max_sessions = 2, .max_records = 20, .idle_ms = 1000, .max_limit = 50, .max_subid_length = 64});
    relay_init(&relay, &pl.loop,
               &(struct relay_options){.name = "fuzz",
                                       .description = "",
                                       .accepted_kinds = kinds,
                                       .naccepted_kinds = sizeof(kinds) / sizeof(kinds[0]),
                                       .max_message_length = 65536,
                                       .max_subscriptions = 20,
                                       .max_filters = 5,
                                       .max_limit = 50,
                                       .max_subid_length = 64,
                                       .max_future_seconds = 900,
                                       .max_client_queue_bytes = 1 << 20,
                                       .max_total_queue_bytes = 8 << 20},
               &pl.st, pl.ig, lk, neg);
    if (relay_route(relay, &http, not_found, NULL) != 0 || http_server_listen(&http, addr, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    return 0;
}

/* Runs the relay's loop once, without waiting. */
static void turn(void)
{
    uv_run(&pl.loop, UV_RUN_NOWAIT);
}

/* Reads what the relay sent. Returns the bytes read, 0 when nothing is there yet, -1 once the connection is gone. */
static ssize_t drain(char *buf, size_t len)
{
    ssize_t n = recv(client, buf, len, 0);

    if (n > 0)
        return n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    return -1;
}

static void disconnect(void)
{
    if (client >= 0)
        close(client);
    client = -1;
}

/* Connects and upgrades; false when that did not work within a second. */
static bool connect_client(void)
{
    struct sockaddr_in sin = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    static const char upgrade[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    char head[1024];
    size_t got = 0;
    uint64_t deadline = clock_mono_ns() + 1000000000u;

    if ((client = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
        abort();
    if (connect(client, (struct sockaddr *)&sin, sizeof(sin)) != 0 && errno != EINPROGRESS)
        abort();
    for (size_t sent = 0; sent < sizeof(upgrade) - 1 && clock_mono_ns() < deadline;) {
        ssize_t n = send(client, upgrade + sent, sizeof(upgrade) - 1 - sent, MSG_NOSIGNAL);
        if (n > 0)
            sent += (size_t)n;
        turn();
    }
    while (clock_mono_ns() < deadline) {
        ssize_t n = drain(head + got, sizeof(head) - 1 - got);
        if (n < 0)
            break;
        got += (size_t)n;
        head[got] = '\0';
        if (strstr(head, "\r\n\r\n") != NULL)
            return strncmp(head, "HTTP/1.1 101", 12) == 0;
        turn();
    }
    disconnect();
    return false;
}

enum { GOT_NOTHING, GOT_MARKER, GOT_CLOSE };

/*
 * Takes the whole frames at the front of `rx` (the relay's, unmasked): whether
 * one is a text message holding `marker`, or a close frame.
 */
static int read_frames(struct buf *rx, const char *marker, size_t mlen)
{
    int got = GOT_NOTHING;
    size_t at = 0;

    while (got == GOT_NOTHING && rx->len - at >= 2) {
        const uint8_t *p = (const uint8_t *)rx->data + at;
        uint64_t len = p[1] & 0x7f;
        size_t hlen = 2 + (len == 126 ? 2 : len == 127 ? 8 : 0);

        if (rx->len - at < hlen)
            break;
        if (len >= 126) {
            size_t ext = hlen - 2;
            len = 0;
            for (size_t i = 0; i < ext; i++)
                len = len << 8 | p[2 + i];
        }
        if (rx->len - at - hlen < len)
            break;
        if ((p[0] & 0x0f) == 0x8)
            got = GOT_CLOSE;
        else if ((p[0] & 0x0f) == 0x1 && memmem(p + hlen, (size_t)len, marker, mlen) != NULL)
            got = GOT_MARKER;
        at += hlen + (size_t)len;
    }
    if (at > 0) {
        memmove(rx->data, rx->data + at, rx->len - at);
        rx->len -= at;
    }
    return got;
}

/* Appends `len` bytes as a masked text frame. */
static void put_frame(struct buf *b, const uint8_t *p, size_t len)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t h[14];
    size_t n = 0;

    h[n++] = 0x81;
    if (len < 126) {
        h[n++] = 0x80 | (uint8_t)len;
    } else if (len < 65536) {
        h[n++] = 0x80 | 126;
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    } else {
        h[n++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(h + n, mask, 4);
    n += 4;
    buf_append(b, h, n);
    for (size_t i = 0; i < len; i++)
        buf_appendc(b, (char)(p[i] ^ mask[i % 4]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct buf rx;
    struct buf out = BUF_INIT;
    char end[48], in[16384];
    size_t sent = 0, endlen;
    uint64_t deadline;
    bool raw = size > 0 && data[0] == 0, shut = false;

    if (client < 0) {
        rx.len = 0;
        if (!connect_client())
            return 0;
    }
    if (raw) {
        buf_append(&out, data + 1, size - 1);
    } else {
        for (size_t at = 0; at < size;) {
            const uint8_t *nl = memchr(data + at, '\n', size - at);
            size_t n = nl != NULL ? (size_t)(nl - (data + at)) : size - at;
            put_frame(&out, data + at, n);
            at += n + 1;
        }
        endlen = (size_t)snprintf(end, sizeof(end), "[\"REQ\",\"end%llu\",{\"limit\":0}]", ++round_no);
        put_frame(&out, (const uint8_t *)end, endlen);
    }
    /* Its EOSE, or its CLOSED once the connection has all the subscriptions it may have. */
    endlen = (size_t)snprintf(end, sizeof(end), "\"end%llu\"", round_no);

    /* Writes and reads in turn, the relay's loop running between: both ends live on this thread. */
    deadline = clock_mono_ns() + 1000000000u;
    while (clock_mono_ns() < deadline) {
        ssize_t n;

        if (sent < out.len && (n = send(client, out.data + sent, out.len - sent, MSG_NOSIGNAL)) > 0)
            sent += (size_t)n;
        if (raw && sent == out.len && !shut) {
            shutdown(client, SHUT_WR);
            shut = true;
        }
        turn();
        if ((n = drain(in, sizeof(in))) < 0) {
            disconnect();
            break;
        }
        if (n > 0) {
            int got;
            buf_append(&rx, in, (size_t)n);
            if ((got = read_frames(&rx, end, endlen)) == GOT_CLOSE) {
                disconnect();
                break;
            }
            if (got == GOT_MARKER && !raw)
                break;
        }
    }
    if (client >= 0 && clock_mono_ns() >= deadline)
        disconnect();
    buf_free(&out);
    return 0;
}
