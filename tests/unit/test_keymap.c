/* test_keymap.c -- the hash map of binary keys: insert, look up, delete, grow, and keys chosen to collide. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "keymap.c"

/* A small deterministic generator, so that a failure can be replayed. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void random_key(unsigned char *k, size_t len)
{
    for (size_t i = 0; i < len; i += 8) {
        uint64_t r = next_random();
        memcpy(k + i, &r, len - i < 8 ? len - i : 8);
    }
}

/* Keys that share their first and last 8 bytes and differ only in between, as an attacker would send. */
static void colliding_key(unsigned char *k, size_t len, uint32_t i)
{
    memset(k, 0xab, len);
    memcpy(k + 8, &i, sizeof(i));
}

/* Key comparisons needed to find every key once: a chain of length L costs 1 + 2 + ... + L. */
static size_t probes_to_find_all(const struct keymap *m, size_t *longest)
{
    size_t probes = 0;

    *longest = 0;
    for (size_t b = 0; b < m->nbuckets; b++) {
        size_t len = 0;
        for (const struct node *n = m->buckets[b]; n != NULL; n = n->next)
            len++;
        probes += len * (len + 1) / 2;
        if (len > *longest)
            *longest = len;
    }
    return probes;
}

static void siphash_matches_the_reference_vectors(void **state)
{
    unsigned char msg[15];
    uint64_t k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;
    (void)state;

    for (int i = 0; i < 15; i++)
        msg[i] = (unsigned char)i;
    assert_true(siphash24(k0, k1, msg, 0) == 0x726fdb47dd0e0e31ull);
    assert_true(siphash24(k0, k1, msg, 15) == 0xa129ca6149be45e5ull);
}

static void inserted_keys_are_found_until_deleted(void **state)
{
    enum { N = 10000, LEN = 32 };
    static unsigned char keys[N][LEN];
    struct keymap *m = keymap_new(LEN);
    unsigned char absent[LEN];
    (void)state;

    for (size_t i = 0; i < N; i++) {
        random_key(keys[i], LEN);
        keymap_put(m, keys[i], &keys[i]);
    }
    assert_int_equal(keymap_count(m), N);
    assert_true(m->nbuckets >= N); /* it grew from 64 buckets */
    for (size_t i = 0; i < N; i++)
        assert_ptr_equal(keymap_get(m, keys[i]), &keys[i]);
    random_key(absent, LEN);
    assert_null(keymap_get(m, absent));
    assert_null(keymap_del(m, absent));

    for (size_t i = 0; i < N; i += 2)
        assert_ptr_equal(keymap_del(m, keys[i]), &keys[i]);
    assert_int_equal(keymap_count(m), N / 2);
    for (size_t i = 0; i < N; i++)
        assert_ptr_equal(keymap_get(m, keys[i]), i % 2 ? &keys[i] : NULL);
    keymap_free(m, NULL);
}

static void the_key_is_copied(void **state)
{
    struct keymap *m = keymap_new(8);
    unsigned char k[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int v;
    (void)state;

    keymap_put(m, k, &v);
    k[0] = 9;
    assert_null(keymap_get(m, k));
    k[0] = 1;
    assert_ptr_equal(keymap_get(m, k), &v);
    keymap_free(m, NULL);
}

static int freed;

static void count_free(void *p)
{
    freed++;
    free(p);
}

static void freeing_the_map_frees_each_value(void **state)
{
    struct keymap *m = keymap_new(16);
    unsigned char k[16];
    (void)state;

    for (int i = 0; i < 100; i++) {
        random_key(k, sizeof(k));
        keymap_put(m, k, malloc(1));
    }
    freed = 0;
    keymap_free(m, count_free);
    assert_int_equal(freed, 100);
}

/*
 * 20,000 keys sharing their first and last 8 bytes once all went into one
 * chain. They must cost about what random keys cost, for pubkeys (32 bytes)
 * and for the lookup table's pubkey-and-kind keys (36 bytes).
 */
static void colliding_keys_cost_what_random_keys_cost(void **state)
{
    enum { N = 20000 };
    static const size_t lens[] = {32, 36};
    (void)state;

    for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
        size_t len = lens[l], adversarial, random, longest_adversarial, longest_random;
        struct keymap *a = keymap_new(len), *r = keymap_new(len);
        unsigned char k[KEYMAP_MAX_KEY];

        for (uint32_t i = 0; i < N; i++) {
            colliding_key(k, len, i);
            keymap_put(a, k, (void *)(uintptr_t)(i + 1));
            random_key(k, len);
            keymap_put(r, k, (void *)(uintptr_t)(i + 1));
        }
        for (uint32_t i = 0; i < N; i++) {
            colliding_key(k, len, i);
            assert_true(keymap_get(a, k) == (void *)(uintptr_t)(i + 1));
        }
        adversarial = probes_to_find_all(a, &longest_adversarial);
        random = probes_to_find_all(r, &longest_random);
        print_message("keylen %zu: probes to find all %zu colliding keys %zu (longest chain %zu), random %zu (%zu)\n",
                      len, (size_t)N, adversarial, longest_adversarial, random, longest_random);
        /* A uniform hash at load factor <= 1 gives about 1.5 probes a key and chains of under 10. */
        assert_true(adversarial < 2 * N);
        assert_true(adversarial < 3 * random / 2);
        assert_true(longest_adversarial < 16);
        keymap_free(a, NULL);
        keymap_free(r, NULL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(siphash_matches_the_reference_vectors),
        cmocka_unit_test(inserted_keys_are_found_until_deleted),
        cmocka_unit_test(the_key_is_copied),
        cmocka_unit_test(freeing_the_map_frees_each_value),
        cmocka_unit_test(colliding_keys_cost_what_random_keys_cost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
