/* test_gencache.c -- generated pictures in memory: found by key, least recently used first out, within budget. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "gencache.h"

static void key_of(uint8_t n, uint8_t key[GENCACHE_KEY])
{
    memset(key, 0, GENCACHE_KEY);
    key[0] = n;
    key[GENCACHE_KEY - 1] = (uint8_t)~n;
}

static void put(struct gencache *c, uint8_t n, size_t len)
{
    uint8_t key[GENCACHE_KEY], *data = malloc(len);
    char etag[GENCACHE_ETAG];

    assert_non_null(data);
    memset(data, n, len);
    memset(etag, 'a' + n % 26, sizeof(etag) - 1);
    etag[sizeof(etag) - 1] = '\0';
    key_of(n, key);
    gencache_put(c, key, data, len, etag);
}

static const struct gencache_entry *get(struct gencache *c, uint8_t n)
{
    uint8_t key[GENCACHE_KEY];

    key_of(n, key);
    return gencache_get(c, key);
}

static void pictures_are_found_by_their_key(void **state)
{
    struct gencache *c = gencache_new(1000);
    const struct gencache_entry *e;

    (void)state;
    put(c, 1, 100);
    put(c, 2, 50);
    assert_null(get(c, 3));
    e = get(c, 1);
    assert_non_null(e);
    assert_int_equal(e->len, 100);
    assert_int_equal(e->data[99], 1);
    assert_int_equal(e->etag[0], 'b');
    assert_int_equal(gencache_count(c), 2);
    assert_int_equal(gencache_bytes(c), 150);
    put(c, 1, 10); /* replaced */
    assert_int_equal(get(c, 1)->len, 10);
    assert_int_equal(gencache_bytes(c), 60);
    gencache_free(c);
}

static void the_least_recently_used_go_first_within_the_budget(void **state)
{
    struct gencache *c = gencache_new(300);

    (void)state;
    put(c, 1, 100);
    put(c, 2, 100);
    put(c, 3, 100);
    assert_non_null(get(c, 1)); /* 2 is now the least recently used */
    put(c, 4, 100);
    assert_null(get(c, 2));
    assert_non_null(get(c, 1));
    assert_non_null(get(c, 3));
    assert_non_null(get(c, 4));
    put(c, 5, 250); /* takes the room of all but one */
    assert_int_equal(gencache_count(c), 1);
    assert_true(gencache_bytes(c) <= 300);
    gencache_free(c);
}

static void a_picture_larger_than_the_budget_is_not_kept(void **state)
{
    struct gencache *c = gencache_new(100);

    (void)state;
    put(c, 1, 50);
    put(c, 2, 101);
    assert_null(get(c, 2));
    assert_non_null(get(c, 1));
    gencache_free(c);
    c = gencache_new(0);
    put(c, 1, 1);
    assert_int_equal(gencache_count(c), 0);
    gencache_free(c);
    gencache_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pictures_are_found_by_their_key),
        cmocka_unit_test(the_least_recently_used_go_first_within_the_budget),
        cmocka_unit_test(a_picture_larger_than_the_budget_is_not_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
