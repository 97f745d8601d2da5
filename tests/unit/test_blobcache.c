/* test_blobcache.c -- pictures kept in memory: least recently used evicted first, in-flight bytes kept alive. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "blobcache.h"

static void key(uint8_t h[32], uint8_t b)
{
    memset(h, b, 32);
}

static struct blob_ref *put(struct blobcache *c, uint8_t b, size_t len)
{
    uint8_t h[32], data[1000];
    key(h, b);
    memset(data, b, len);
    return blobcache_put(c, h, data, len);
}

static bool cached(struct blobcache *c, uint8_t b)
{
    uint8_t h[32];
    struct blob_ref *r;
    key(h, b);
    if ((r = blobcache_get(c, h)) == NULL)
        return false;
    blob_release(r);
    return true;
}

static void the_least_recently_used_goes_first(void **state)
{
    struct blobcache c;
    (void)state;

    blobcache_init(&c, 3000);
    blob_release(put(&c, 1, 1000));
    blob_release(put(&c, 2, 1000));
    blob_release(put(&c, 3, 1000));
    assert_true(cached(&c, 1)); /* 1 is now the most recently used */
    blob_release(put(&c, 4, 1000));
    assert_true(cached(&c, 1));
    assert_false(cached(&c, 2));
    assert_true(cached(&c, 3));
    assert_true(cached(&c, 4));
    assert_int_equal(c.bytes, 3000);
    blobcache_free(&c);
}

static void evicted_bytes_stay_valid_for_their_holders(void **state)
{
    struct blobcache c;
    struct blob_ref *held;
    (void)state;

    blobcache_init(&c, 1000);
    held = put(&c, 7, 1000);
    blob_release(put(&c, 8, 1000));
    assert_false(held->cached);
    assert_false(cached(&c, 7));
    assert_int_equal(held->data[999], 7);
    assert_int_equal(held->len, 1000);
    blob_release(held);
    blobcache_free(&c);
}

static void etags_are_the_quoted_sha256_hex(void **state)
{
    struct blobcache c;
    struct blob_ref *r;
    (void)state;

    blobcache_init(&c, 1000);
    r = put(&c, 0xab, 10);
    assert_int_equal(strlen(r->etag), 66);
    assert_int_equal(r->etag[0], '"');
    assert_int_equal(r->etag[65], '"');
    assert_memory_equal(r->etag + 1, "abababab", 8);
    blob_release(r);
    blobcache_free(&c);
}

static void too_large_and_dropped_pictures_are_not_kept(void **state)
{
    struct blobcache c;
    uint8_t h[32];
    (void)state;

    blobcache_init(&c, 500);
    blob_release(put(&c, 1, 1000));
    assert_false(cached(&c, 1));
    blob_release(put(&c, 2, 100));
    key(h, 2);
    blobcache_drop(&c, h);
    assert_false(cached(&c, 2));
    assert_int_equal(c.bytes, 0);
    blobcache_free(&c);
}

static void many_entries_grow_the_table(void **state)
{
    struct blobcache c;
    (void)state;

    blobcache_init(&c, 1 << 20);
    for (int i = 0; i < 250; i++)
        blob_release(put(&c, (uint8_t)i, 10));
    for (int i = 0; i < 250; i++)
        assert_true(cached(&c, (uint8_t)i));
    blobcache_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_least_recently_used_goes_first),
        cmocka_unit_test(evicted_bytes_stay_valid_for_their_holders),
        cmocka_unit_test(etags_are_the_quoted_sha256_hex),
        cmocka_unit_test(too_large_and_dropped_pictures_are_not_kept),
        cmocka_unit_test(many_entries_grow_the_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
