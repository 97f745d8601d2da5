/* test_http.c -- query parameters as the endpoints read them: found between '&'s, raw, and counts. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "http.h"

static void expect_param(const char *query, const char *name, const char *value)
{
    h2o_iovec_t v;

    if (!http_query_find(h2o_iovec_init(query, strlen(query)), name, &v))
        fail_msg("\"%s\" not found in \"%s\"", name, query);
    if (!h2o_memis(v.base, v.len, value, strlen(value)))
        fail_msg("\"%s\" in \"%s\" is \"%.*s\", expected \"%s\"", name, query, (int)v.len, v.base, value);
}

static void parameters_are_found_whole_and_first_wins(void **state)
{
    h2o_iovec_t v;
    (void)state;

    expect_param("limit=5", "limit", "5");
    expect_param("a=1&limit=20&limit=30", "limit", "20");
    expect_param("limit", "limit", "");
    expect_param("limit=", "limit", "");
    expect_param("x=1&&limit=%32", "limit", "%32");
    expect_param("limits=1&limit=2", "limit", "2");
    assert_false(http_query_find(h2o_iovec_init(H2O_STRLIT("limits=1&xlimit=2")), "limit", &v));
    assert_false(http_query_find(h2o_iovec_init(H2O_STRLIT("")), "limit", &v));
}

static void counts_are_digits_from_one_to_max(void **state)
{
    size_t n = 7;
    (void)state;

    assert_int_equal(http_parse_count(h2o_iovec_init(H2O_STRLIT("1")), 10, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(http_parse_count(h2o_iovec_init(H2O_STRLIT("0010")), 10, &n), 0);
    assert_int_equal(n, 10);

    const char *bad[] = {"", "0", "11", "-1", "+5", "5 ", "1e3", "0x5", "9999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = 7;
        if (http_parse_count(h2o_iovec_init(bad[i], strlen(bad[i])), 10, &n) != -EINVAL)
            fail_msg("\"%s\" was accepted", bad[i]);
        assert_int_equal(n, 7);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parameters_are_found_whole_and_first_wins),
        cmocka_unit_test(counts_are_digits_from_one_to_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
