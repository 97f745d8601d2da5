/* test_ring.c -- nginx's consistent-hash ring: the owner of every key as a real nginx picked it, and CRC32. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "hex.h"
#include "ring.h"

#define VECTORS "tests/vectors/ring.json"

static void crc32_is_the_ieee_one_and_continues(void **state)
{
    (void)state;
    assert_int_equal(ring_crc32(0, "123456789", 9), 0xcbf43926u);
    assert_int_equal(ring_crc32(0, "", 0), 0);
    assert_int_equal(ring_crc32(ring_crc32(0, "1234", 4), "56789", 5), 0xcbf43926u);
}

static void every_key_has_the_owner_nginx_picked(void **state)
{
    json_t *v = fixture_vectors(VECTORS, 0), *r;
    size_t i, keys;

    (void)state;
    keys = (size_t)json_integer_value(json_object_get(v, "keys"));
    assert_true(keys >= 1000);
    json_array_foreach(json_object_get(v, "rings"), i, r)
    {
        json_t *servers = json_object_get(r, "servers"), *weights = json_object_get(r, "weights");
        const char *owners = json_string_value(json_object_get(r, "owners")), *names[8];
        unsigned w[8];
        size_t n = json_array_size(servers);
        struct ring *ring;

        assert_true(n <= 8 && strlen(owners) == keys);
        for (size_t k = 0; k < n; k++) {
            names[k] = json_string_value(json_array_get(servers, k));
            w[k] = (unsigned)json_integer_value(json_array_get(weights, k));
        }
        assert_non_null(ring = ring_new(names, w, n));
        for (size_t k = 0; k < keys; k++) {
            char text[32], hexkey[65];
            uint8_t digest[32];
            int len = snprintf(text, sizeof(text), "key %zu", k);
            size_t got;
            SHA256((const uint8_t *)text, (size_t)len, digest);
            hex_encode(digest, 32, hexkey);
            got = ring_owner(ring, hexkey, 64);
            if (got != (size_t)(owners[k] - '0'))
                fail_msg("ring %zu, key %zu (%.64s): %zu, nginx %c", i, k, hexkey, got, owners[k]);
        }
        ring_free(ring);
    }
    json_decref(v);
}

static void losing_a_node_moves_only_its_keys(void **state)
{
    const char *three[] = {"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"}, *two[] = {three[0], three[2]};
    unsigned w[] = {1, 1, 1};
    struct ring *a = ring_new(three, w, 3), *b = ring_new(two, w, 2);
    int moved = 0, owned = 0;

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    for (int k = 0; k < 3000; k++) {
        char key[16];
        int len = snprintf(key, sizeof(key), "%d", k);
        size_t before = ring_owner(a, key, (size_t)len), after = ring_owner(b, key, (size_t)len);
        owned += before == 1;
        if (before != 1)
            moved += (before == 0 ? 0 : 1) != after;
        else
            assert_true(after == 0 || after == 1);
    }
    assert_int_equal(moved, 0);
    assert_true(owned > 600 && owned < 1400);
    ring_free(a);
    ring_free(b);
    assert_null(ring_new(three, (unsigned[]){1, 0, 1}, 3));
    assert_null(ring_new(three, w, 0));
}

static void shares_are_the_fractions_of_keys_each_server_owns(void **state)
{
    const char *three[] = {"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"};
    struct ring *r = ring_new(three, (unsigned[]){1, 1, 2}, 3), *one = ring_new(three, (unsigned[]){1}, 1);
    double shares[3], total = 0;
    int counts[3] = {0};

    (void)state;
    ring_shares(r, shares, 3);
    for (int k = 0; k < 40000; k++) {
        char key[16];
        counts[ring_owner(r, key, (size_t)snprintf(key, sizeof(key), "%d", k))]++;
    }
    for (int i = 0; i < 3; i++) {
        total += shares[i];
        if (counts[i] / 40000.0 - shares[i] > 0.02 || shares[i] - counts[i] / 40000.0 > 0.02)
            fail_msg("server %d: share %f, %d of 40,000 keys", i, shares[i], counts[i]);
    }
    assert_true(total > 0.999999 && total < 1.000001);
    /* Twice the weight, about twice the keys. */
    assert_true(shares[2] > 1.5 * shares[0] && shares[2] > 1.5 * shares[1]);
    ring_shares(one, shares, 1);
    assert_true(shares[0] == 1.0);
    ring_free(r);
    ring_free(one);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc32_is_the_ieee_one_and_continues),
        cmocka_unit_test(every_key_has_the_owner_nginx_picked),
        cmocka_unit_test(losing_a_node_moves_only_its_keys),
        cmocka_unit_test(shares_are_the_fractions_of_keys_each_server_owns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
