/*
 * test_negentropy.c -- Negentropy V1 against nostr-tools' nip77 (fingerprints, first messages, one round
 * each way) and against itself to the end: identical, empty, disjoint and near sets, with and without a
 * frame size limit; and the malformed messages it refuses.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "hex.h"
#include "negentropy.h"

#define VECTORS "tests/vectors/negentropy.json"

static json_t *vectors;

static int load(void **state)
{
    (void)state;
    vectors = fixture_vectors(VECTORS, 0);
    return 0;
}

static int unload(void **state)
{
    (void)state;
    json_decref(vectors);
    return 0;
}

/* The records of specs [label, n, spread, base], as gen-negentropy.mjs makes them. */
static void add_specs(struct neg_storage *s, json_t *specs)
{
    size_t i;
    json_t *sp;

    json_array_foreach(specs, i, sp)
    {
        const char *label = json_string_value(json_array_get(sp, 0));
        json_int_t n = json_integer_value(json_array_get(sp, 1)), spread = json_integer_value(json_array_get(sp, 2));
        json_int_t base = json_integer_value(json_array_get(sp, 3));
        for (json_int_t k = 0; k < n; k++) {
            char text[64];
            uint8_t id[32];
            int len = snprintf(text, sizeof(text), "%s:%lld", label, (long long)k);
            SHA256((const uint8_t *)text, (size_t)len, id);
            neg_storage_add(s, (uint64_t)(base + k / spread * 7), id);
        }
    }
    assert_int_equal(neg_storage_seal(s), 0);
}

static void assert_hex(const struct buf *b, const char *want, const char *what)
{
    char *got = malloc(2 * b->len + 1);

    assert_non_null(got);
    hex_encode((const uint8_t *)b->data, b->len, got);
    got[2 * b->len] = '\0';
    if (strcmp(got, want) != 0)
        fail_msg("%s: %.80s... (%zu bytes), nostr-tools %.80s... (%zu bytes)", what, got, b->len, want,
                 strlen(want) / 2);
    free(got);
}

static uint8_t *from_hex(const char *h, size_t *len)
{
    uint8_t *b = malloc(strlen(h) / 2 + 1);

    assert_non_null(b);
    *len = strlen(h) / 2;
    assert_int_equal(hex_decode(h, strlen(h), b, *len), 0);
    return b;
}

/* Sorted hex ids of `b`, against the array `want`. */
static void assert_ids(const struct buf *b, json_t *want, const char *what)
{
    size_t n = b->len / 32;
    char(*ids)[65] = calloc(n + 1, 65);

    assert_non_null(ids);
    assert_int_equal(b->len % 32, 0);
    for (size_t i = 0; i < n; i++)
        hex_encode((const uint8_t *)b->data + 32 * i, 32, ids[i]);
    qsort(ids, n, 65, (int (*)(const void *, const void *))strcmp);
    if (n != json_array_size(want))
        fail_msg("%s: %zu ids, nostr-tools %zu", what, n, json_array_size(want));
    for (size_t i = 0; i < n; i++)
        assert_string_equal(ids[i], json_string_value(json_array_get(want, i)));
    free(ids);
}

static void varints_are_big_endian_groups_of_seven_bits(void **state)
{
    static const struct {
        uint64_t v;
        const char *hex;
    } cases[] = {{0, "00"},     {1, "01"},       {127, "7f"},       {128, "8100"},
                 {300, "822c"}, {16383, "ff7f"}, {16384, "818000"}, {UINT64_MAX, "81ffffffffffffffff7f"}};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b = BUF_INIT;
        const uint8_t *p;
        uint64_t v;
        neg_put_varint(&b, cases[i].v);
        assert_hex(&b, cases[i].hex, "varint");
        p = (const uint8_t *)b.data;
        assert_int_equal(neg_get_varint(&p, p + b.len, &v), 0);
        assert_true(v == cases[i].v);
        assert_ptr_equal(p, b.data + b.len);
        buf_free(&b);
    }
    {
        static const uint8_t cut[] = {0x81, 0x80},
                             wide[] = {0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
        const uint8_t *p = cut;
        uint64_t v;
        assert_int_equal(neg_get_varint(&p, cut + sizeof(cut), &v), -EINVAL);
        p = wide;
        assert_int_equal(neg_get_varint(&p, wide + sizeof(wide), &v), -EINVAL);
    }
}

static void fingerprints_match_nostr_tools(void **state)
{
    size_t i;
    json_t *v;

    (void)state;
    json_array_foreach(json_object_get(vectors, "fingerprints"), i, v)
    {
        struct neg_storage s = {0};
        uint8_t fp[NEG_FINGERPRINT];
        char hex[2 * NEG_FINGERPRINT + 1];

        add_specs(&s, json_object_get(v, "records"));
        neg_fingerprint(&s, 0, s.n, fp);
        hex_encode(fp, sizeof(fp), hex);
        hex[sizeof(hex) - 1] = '\0';
        assert_string_equal(hex, json_string_value(json_object_get(v, "fingerprint")));
        neg_storage_free(&s);
    }
}

/* First message, the other side's reply and the initiator's answer: byte for byte as nostr-tools. */
static void one_round_each_way_matches_nostr_tools(void **state)
{
    size_t i;
    json_t *v;
    uint64_t limit = (uint64_t)json_integer_value(json_object_get(vectors, "frame_limit"));

    (void)state;
    json_array_foreach(json_object_get(vectors, "rounds"), i, v)
    {
        const char *name = json_string_value(json_object_get(v, "name"));
        const char *reply = json_string_value(json_object_get(v, "reply"));
        struct neg_storage a = {0}, b = {0};
        struct neg na, nb;
        struct buf first = BUF_INIT, back = BUF_INIT, answer = BUF_INIT, have = BUF_INIT, need = BUF_INIT;
        char err[128];

        add_specs(&a, json_object_get(v, "a"));
        add_specs(&b, json_object_get(v, "b"));
        assert_int_equal(neg_init(&na, &a, limit), 0);
        assert_int_equal(neg_init(&nb, &b, limit), 0);
        neg_initiate(&na, &first);
        assert_hex(&first, json_string_value(json_object_get(v, "first")), name);
        assert_int_equal(
            neg_reconcile(&nb, (const uint8_t *)first.data, first.len, &back, NULL, NULL, err, sizeof(err)), 0);
        /* nostr-tools says nothing where a responder says only its version: the sets agree. */
        assert_hex(&back, reply[0] != '\0' ? reply : "61", name);
        assert_int_equal(
            neg_reconcile(&na, (const uint8_t *)back.data, back.len, &answer, &have, &need, err, sizeof(err)), 0);
        assert_hex(&answer, json_string_value(json_object_get(v, "answer")), name);
        assert_ids(&have, json_object_get(v, "have"), name);
        assert_ids(&need, json_object_get(v, "need"), name);
        buf_free(&first);
        buf_free(&back);
        buf_free(&answer);
        buf_free(&have);
        buf_free(&need);
        neg_storage_free(&a);
        neg_storage_free(&b);
    }
}

/* Sets of `common` shared records plus `only_a` and `only_b` of their own, some sharing timestamps. */
static void make_sets(struct neg_storage *a, struct neg_storage *b, size_t common, size_t only_a, size_t only_b)
{
    for (size_t i = 0; i < common + only_a + only_b; i++) {
        uint8_t id[32];
        SHA256((const uint8_t *)&i, sizeof(i), id);
        uint64_t ts = 1700000000 + (i * 2654435761u) % 5000;
        if (i < common || i < common + only_a)
            neg_storage_add(a, ts, id);
        if (i < common || i >= common + only_a)
            neg_storage_add(b, ts, id);
    }
    assert_int_equal(neg_storage_seal(a), 0);
    assert_int_equal(neg_storage_seal(b), 0);
}

/* Runs the protocol to its end; returns the rounds it took, with what the initiator learned. */
static int run_to_end(struct neg_storage *a, struct neg_storage *b, uint64_t limit, struct buf *have, struct buf *need,
                      size_t *largest)
{
    struct neg na, nb;
    struct buf msg = BUF_INIT;
    char err[128];
    int rounds = 0;

    assert_int_equal(neg_init(&na, a, limit), 0);
    assert_int_equal(neg_init(&nb, b, limit), 0);
    neg_initiate(&na, &msg);
    *largest = msg.len;
    while (msg.len > 0) {
        struct buf back = BUF_INIT;
        /* A small frame carries a few dozen ids a round trip: hundreds of differences take many. */
        assert_true(++rounds < 400);
        assert_int_equal(neg_reconcile(&nb, (const uint8_t *)msg.data, msg.len, &back, NULL, NULL, err, sizeof(err)),
                         0);
        msg.len = 0;
        assert_int_equal(neg_reconcile(&na, (const uint8_t *)back.data, back.len, &msg, have, need, err, sizeof(err)),
                         0);
        *largest = back.len > *largest ? back.len : *largest;
        *largest = msg.len > *largest ? msg.len : *largest;
        buf_free(&back);
    }
    buf_free(&msg);
    return rounds;
}

static void reconciliation_finds_exactly_the_difference(void **state)
{
    static const struct {
        size_t common, only_a, only_b;
        uint64_t limit;
    } cases[] = {
        {0, 0, 0, 0},
        {0, 5, 0, 0},
        {0, 0, 5, 0},
        {1000, 0, 0, 0},
        {1000, 1, 0, 0},
        {1000, 0, 1, 0},
        {5000, 10, 10, 0},
        {0, 300, 300, 0},
        {20000, 100, 100, 0},
        {20000, 0, 3000, 4096},
        {3000, 3000, 3000, 4096},
        {100000, 1, 1, 60000},
    };

    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        struct neg_storage a = {0}, b = {0};
        struct buf have = BUF_INIT, need = BUF_INIT;
        size_t largest;
        int rounds;

        make_sets(&a, &b, cases[c].common, cases[c].only_a, cases[c].only_b);
        rounds = run_to_end(&a, &b, cases[c].limit, &have, &need, &largest);
        assert_int_equal(have.len / 32, cases[c].only_a);
        assert_int_equal(need.len / 32, cases[c].only_b);
        /* Each id learned is one of the other side's own, once. */
        for (size_t i = 0; i < have.len / 32; i++) {
            uint64_t k;
            bool found = false;
            for (k = cases[c].common; k < cases[c].common + cases[c].only_a && !found; k++) {
                uint8_t id[32];
                SHA256((const uint8_t *)&k, sizeof(k), id);
                found = memcmp(id, have.data + 32 * i, 32) == 0;
            }
            assert_true(found);
        }
        if (cases[c].limit != 0)
            assert_true(largest <= cases[c].limit);
        if (cases[c].only_a + cases[c].only_b == 0)
            assert_true(rounds <= 1);
        buf_free(&have);
        buf_free(&need);
        neg_storage_free(&a);
        neg_storage_free(&b);
    }
}

static void a_million_records_one_apart_cost_a_few_kilobytes(void **state)
{
    struct neg_storage a = {0}, b = {0};
    struct buf have = BUF_INIT, need = BUF_INIT;
    size_t largest;

    (void)state;
    make_sets(&a, &b, 1000000, 0, 1);
    assert_true(run_to_end(&a, &b, 60000, &have, &need, &largest) <= 6);
    assert_int_equal(need.len, 32);
    assert_true(largest < 2048);
    buf_free(&have);
    buf_free(&need);
    neg_storage_free(&a);
    neg_storage_free(&b);
}

static void malformed_messages_are_refused_with_a_reason(void **state)
{
    static const struct {
        const char *hex, *reason;
    } cases[] = {
        {"", "prematurely"},
        {"10", "version byte"},
        {"61"
         "05",
         "prematurely"},
        {"61"
         "0021"
         "00",
         "bound key too long"},
        {"61"
         "0002"
         "ab",
         "prematurely"},
        {"61"
         "0000"
         "07",
         "unexpected mode"},
        {"61"
         "0000"
         "01"
         "0011",
         "prematurely"},
        {"61"
         "0000"
         "02"
         "05"
         "00",
         "prematurely"},
        {"61"
         "81ffffffffffffffff7f00"
         "00"
         "02"
         "ff",
         "out of range"},
    };
    struct neg_storage s = {0};
    struct neg n;

    (void)state;
    assert_int_equal(neg_storage_seal(&s), 0);
    assert_int_equal(neg_init(&n, &s, 2048), -EINVAL);
    assert_int_equal(neg_init(&n, &s, 0), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf out = BUF_INIT;
        char err[128] = "";
        size_t len;
        uint8_t *msg = from_hex(cases[i].hex, &len);
        assert_int_equal(neg_reconcile(&n, msg, len, &out, NULL, NULL, err, sizeof(err)), -EINVAL);
        if (strstr(err, cases[i].reason) == NULL)
            fail_msg("%s: \"%s\", not \"%s\"", cases[i].hex, err, cases[i].reason);
        assert_int_equal(out.len, 0);
        free(msg);
        buf_free(&out);
    }
    /* Another version of the protocol: the responder answers with its own, and nothing else. */
    {
        struct buf out = BUF_INIT;
        char err[128];
        static const uint8_t v2[] = {0x62, 0x00, 0x00};
        assert_int_equal(neg_reconcile(&n, v2, sizeof(v2), &out, NULL, NULL, err, sizeof(err)), 0);
        assert_hex(&out, "61", "version");
        buf_free(&out);
    }
    assert_int_equal(neg_storage_seal(&s), 0);
    {
        uint8_t id[32] = {1};
        neg_storage_add(&s, 5, id);
        neg_storage_add(&s, 5, id);
        assert_int_equal(neg_storage_seal(&s), -EEXIST);
    }
    neg_storage_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(varints_are_big_endian_groups_of_seven_bits),
        cmocka_unit_test(fingerprints_match_nostr_tools),
        cmocka_unit_test(one_round_each_way_matches_nostr_tools),
        cmocka_unit_test(reconciliation_finds_exactly_the_difference),
        cmocka_unit_test(a_million_records_one_apart_cost_a_few_kilobytes),
        cmocka_unit_test(malformed_messages_are_refused_with_a_reason),
    };
    return cmocka_run_group_tests(tests, load, unload);
}
