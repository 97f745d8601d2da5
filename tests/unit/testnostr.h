/*
 * testnostr.h -- for the unit tests of modules that take real events: keys made from a seed, events signed
 * with libsecp256k1, and the ingest pipeline they go through, on the fixture's database.
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

#include "event.h"
#include "fixture.h"
#include "ingest.h"
#include "store.h"
#include "workpool.h"

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

/* Where every event goes: the store on a fixture's database, one verify thread, and ingest as a relay sets it up. */
struct test_pipeline {
    struct store st;
    struct workpool pool;
    struct ingest *ig;
};

/* Opens a database in fx's directory and the store on it, `on_stored` listening; starts writer, thread and ingest. */
static void test_pipeline_open(struct test_pipeline *p, struct fixture *fx, store_listener_fn on_stored)
{
    fixture_db_open(fx, "events.db", 64);
    assert_int_equal(store_init(&p->st, fx->db), 0);
    store_add_listener(&p->st, on_stored, NULL);
    assert_int_equal(db_start(fx->db), 0);
    assert_int_equal(workpool_init(&p->pool, 1, &fx->inbox), 0);
    assert_int_equal(ingest_init(&p->ig, &(struct ingest_options){.max_future_seconds = 600}, &p->st, &p->pool), 0);
}

/*
 * The relay's shutdown order: the verify thread, then the writer, then the inbox, so that every result has been
 * delivered. What uses the pipeline is freed after this, and then the pipeline, with test_pipeline_free().
 */
static void test_pipeline_shutdown(struct test_pipeline *p, struct fixture *fx)
{
    workpool_shutdown(&p->pool);
    inbox_drain(&fx->inbox);
    db_shutdown(fx->db);
    inbox_free(&fx->inbox);
}

static void test_pipeline_free(struct test_pipeline *p)
{
    ingest_free(p->ig);
    workpool_free(&p->pool);
}

#endif
