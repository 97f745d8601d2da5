/* test_hints.c -- relay hints per pubkey: duplicates kept once, the newest replacing the oldest, pubkeys bounded. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "hints.h"

static const uint8_t A[32] = {1}, B[32] = {2}, C[32] = {3};

static void a_pubkey_keeps_its_newest_hints_once_each(void **state)
{
    struct hints *h = hints_new(10);
    const char *const *urls;
    char url[32];
    (void)state;

    assert_int_equal(hints_get(h, A, &urls), 0);
    assert_true(hints_add(h, A, "wss://one"));
    assert_false(hints_add(h, A, "wss://one"));
    for (int i = 2; i <= HINTS_PER_PUBKEY + 1; i++) {
        snprintf(url, sizeof(url), "wss://r%d", i);
        assert_true(hints_add(h, A, url));
    }
    assert_int_equal(hints_get(h, A, &urls), HINTS_PER_PUBKEY);
    /* "wss://one", the oldest, went; the rest are in order of arrival. */
    for (int i = 0; i < HINTS_PER_PUBKEY; i++) {
        snprintf(url, sizeof(url), "wss://r%d", i + 2);
        assert_string_equal(urls[i], url);
    }
    assert_int_equal(hints_get(h, B, &urls), 0);
    hints_free(h);
}

static void past_its_bound_the_oldest_pubkey_is_forgotten(void **state)
{
    struct hints *h = hints_new(2);
    const char *const *urls;
    (void)state;

    hints_add(h, A, "wss://a");
    hints_add(h, B, "wss://b");
    hints_add(h, A, "wss://a2"); /* a pubkey's place is where it first came */
    hints_add(h, C, "wss://c");
    assert_int_equal(hints_get(h, A, &urls), 0);
    assert_int_equal(hints_get(h, B, &urls), 1);
    assert_string_equal(urls[0], "wss://b");
    assert_int_equal(hints_get(h, C, &urls), 1);
    hints_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_pubkey_keeps_its_newest_hints_once_each),
        cmocka_unit_test(past_its_bound_the_oldest_pubkey_is_forgotten),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
