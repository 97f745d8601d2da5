/*
 * fuzz_upstream.c -- libFuzzer driver for what upstream relays send: each line of the input is one message
 * from a relay, handed to upstream_receive() as if it had come off the relay's connection, and through it to
 * the lookups, the ingest pipeline and the store, all real. The relay's connection attempt hangs on a socket
 * that is never accepted, so lookups of four authors stay under way while the messages arrive; "$S" in a line
 * stands for the subscription id of the newest lookup. The seeds sign events with the keys of
 * tests/unit/testnostr.h (0x01 bytes ending in the seed 1 to 4).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <secp256k1.h>
#include <secp256k1_extrakeys.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "fuzz_pipeline.h"
#include "lookup.h"
#include "upstream.h"

#define KEYS 4

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fuzz_pipeline pl;
static struct upstream *up;
static struct lookup *lk;
static struct lookup_waiter waiters[KEYS];
static bool waiting[KEYS];
static uint8_t pubkeys[KEYS][32];

static void on_answer(struct lookup_waiter *w, const struct event_view *ev)
{
    (void)ev;
    waiting[w - waiters] = false;
}

/* A listening socket nobody accepts on: a connection to it waits for the upgrade's answer until it times out. */
static int silent_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) != 0)
        abort();
    return ntohs(sin.sin_port);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static char url[64];
    static const char *urls[1] = {url};
    secp256k1_context *secp = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    char err[256];

    (void)argc;
    (void)argv;
    fuzz_pipeline_init(&pl, "fuzz-upstream");
    snprintf(url, sizeof(url), "ws://127.0.0.1:%d", silent_port());
    if (upstream_init(
            &up, &pl.loop,
            &(struct upstream_options){.urls = urls, .nurls = 1, .max_message = 1 << 20, .max_queue = 1 << 20}, err,
            sizeof(err)) != 0 ||
        lookup_init(&lk, &pl.loop, &(struct lookup_options){.timeout_ms = 600000, .max_concurrent = 16}, up, pl.ig,
                    &pl.st) != 0)
        abort();
    upstream_start(up);
    for (int i = 0; i < KEYS; i++) {
        uint8_t secret[32];
        secp256k1_keypair kp;
        secp256k1_xonly_pubkey xpk;

        memset(secret, 0x01, sizeof(secret));
        secret[30] = 0;
        secret[31] = (uint8_t)(i + 1);
        if (!secp256k1_keypair_create(secp, &kp, secret) || !secp256k1_keypair_xonly_pub(secp, &xpk, NULL, &kp) ||
            !secp256k1_xonly_pubkey_serialize(secp, pubkeys[i], &xpk))
            abort();
        waiters[i].cb = on_answer;
    }
    secp256k1_context_destroy(secp);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct upstream_relay *r = upstream_relay(up, 0);
    struct lookup_stats ls;
    struct buf line = BUF_INIT;
    char sub[32];
    size_t sublen;

    for (int i = 0; i < KEYS; i++) {
        if (!waiting[i]) {
            waiting[i] = true;
            lookup_get(lk, pubkeys[i], 0, &waiters[i]);
        }
    }
    uv_run(&pl.loop, UV_RUN_NOWAIT); /* the batch goes out */
    lookup_stats(lk, &ls);
    sublen = (size_t)snprintf(sub, sizeof(sub), "pfp%llu", (unsigned long long)ls.queries);

    for (size_t at = 0; at <= size;) {
        const uint8_t *end = memchr(data + at, '\n', size - at);
        size_t n = end != NULL ? (size_t)(end - (data + at)) : size - at;

        line.len = 0;
        for (size_t i = 0; i < n; i++) {
            if (i + 1 < n && data[at + i] == '$' && data[at + i + 1] == 'S') {
                buf_append(&line, sub, sublen);
                i++;
            } else {
                buf_appendc(&line, (char)data[at + i]);
            }
        }
        upstream_receive(r, (const uint8_t *)(line.data != NULL ? line.data : ""), line.len, false);
        at += n + 1;
    }
    buf_free(&line);
    uv_run(&pl.loop, UV_RUN_NOWAIT); /* what the pipeline has finished */
    return 0;
}
