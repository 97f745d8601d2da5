/*
 * testnostr.h -- for the unit tests of modules that take real events: keys made from a seed, events signed
 * with libsecp256k1, and a loop run until a condition holds.
 */
#ifndef PFP_TESTNOSTR_H
#define PFP_TESTNOSTR_H

#include <jansson.h>
#include <secp256k1.h>
#include <secp256k1_extrakeys.h>
#include <secp256k1_schnorrsig.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "event.h"

struct test_key {
    secp256k1_keypair kp;
    uint8_t pubkey[32];
};

/* Signing needs a context of its own (the static one only verifies); kept for the test's life. */
static secp256k1_context *test_secp(void)
{
    static secp256k1_context *ctx;
    if (ctx == NULL)
        ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    return ctx;
}

/* A key of its own for each seed: the secret key is 0x01 bytes ending in the seed. */
static void test_key(struct test_key *k, uint16_t seed)
{
    uint8_t secret[32];
    secp256k1_xonly_pubkey xpk;

    memset(secret, 0x01, sizeof(secret));
    secret[30] = (uint8_t)(seed >> 8);
    secret[31] = (uint8_t)seed;
    if (!secp256k1_keypair_create(test_secp(), &k->kp, secret) ||
        !secp256k1_keypair_xonly_pub(test_secp(), &xpk, NULL, &k->kp) ||
        !secp256k1_xonly_pubkey_serialize(test_secp(), k->pubkey, &xpk))
        abort();
}

/* The JSON object of an event signed by `k`, without tags; the caller releases it with json_decref(). */
static json_t *test_event(const struct test_key *k, uint32_t kind, int64_t created_at, const char *content)
{
    struct event ev;
    struct event_view v;
    uint8_t *rec;
    size_t len;
    json_t *obj;

    memset(&ev, 0, sizeof(ev));
    memcpy(ev.pubkey, k->pubkey, 32);
    ev.created_at = created_at;
    ev.kind = kind;
    ev.tags = json_array();
    ev.content = content;
    ev.content_len = strlen(content);
    event_compute_id(&ev, BUF_JSON_NIP01, ev.id);
    if (!secp256k1_schnorrsig_sign32(test_secp(), ev.sig, ev.id, &k->kp, NULL))
        abort();
    rec = event_record_build(&ev, &len);
    event_view_decode(ev.id, rec, len, &v);
    obj = json_loadb(v.json, v.json_len, 0, NULL);
    free(rec);
    json_decref(ev.tags);
    return obj;
}

/* Replaces the first character of a string field, as a forger would. */
static void test_tamper(json_t *obj, const char *field)
{
    char s[256];

    snprintf(s, sizeof(s), "%s", json_string_value(json_object_get(obj, field)));
    s[0] = s[0] == '0' ? '1' : '0';
    json_object_set_new(obj, field, json_string(s));
}

static void test_on_deadline(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* Runs `loop` until `*cond` is true; false when `timeout_ms` passed first. */
static bool test_run_until(uv_loop_t *loop, const bool *cond, uint64_t timeout_ms)
{
    uv_timer_t deadline;
    bool late = false;

    uv_timer_init(loop, &deadline);
    deadline.data = &late;
    uv_timer_start(&deadline, test_on_deadline, timeout_ms, 0);
    while (!*cond && !late)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *cond;
}

#endif
