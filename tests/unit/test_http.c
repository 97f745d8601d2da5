/* test_http.c -- what the endpoints read from requests: query parameters and counts, and If-None-Match by RFC 9110. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
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

#define TAG "\"0123abcd\""

/* Whether a request carrying these If-None-Match fields (NULL-terminated) matches `etag`. */
static bool matches(const char *etag, ...)
{
    h2o_req_t req;
    va_list ap;
    const char *v;
    bool r;

    memset(&req, 0, sizeof(req));
    h2o_mem_init_pool(&req.pool);
    va_start(ap, etag);
    while ((v = va_arg(ap, const char *)) != NULL)
        h2o_add_header(&req.pool, &req.headers, H2O_TOKEN_IF_NONE_MATCH, NULL, v, strlen(v));
    va_end(ap);
    r = http_if_none_match(&req, h2o_iovec_init(etag, strlen(etag)));
    h2o_mem_clear_pool(&req.pool);
    return r;
}

static void no_field_never_matches(void **state)
{
    (void)state;
    assert_false(matches(TAG, NULL));
}

static void the_same_tag_matches(void **state)
{
    (void)state;
    assert_true(matches(TAG, TAG, NULL));
    assert_false(matches(TAG, "\"0123abce\"", NULL));
    assert_false(matches(TAG, "\"0123abc\"", NULL));
}

static void weak_comparison_ignores_w_on_either_side(void **state)
{
    (void)state;
    assert_true(matches(TAG, "W/" TAG, NULL));
    assert_true(matches("W/" TAG, TAG, NULL));
    assert_true(matches("W/" TAG, "W/" TAG, NULL));
    assert_false(matches(TAG, "w/" TAG, NULL)); /* W/ is case-sensitive */
}

static void any_element_of_a_list_matches(void **state)
{
    (void)state;
    assert_true(matches(TAG, "\"x\", " TAG, NULL));
    assert_true(matches(TAG, "\"x\"," TAG ",\"y\"", NULL));
    assert_true(matches(TAG, " \t\"x\" ,\t W/" TAG " , ", NULL));
    assert_true(matches(TAG, ", ,\"x\",," TAG, NULL)); /* empty list elements are allowed */
    assert_false(matches(TAG, "\"x\", \"y\"", NULL));
}

static void star_matches_anything(void **state)
{
    (void)state;
    assert_true(matches(TAG, "*", NULL));
    assert_true(matches(TAG, "  * ", NULL));
    assert_false(matches(TAG, "*x", NULL));
}

static void several_fields_count_as_one_list(void **state)
{
    (void)state;
    assert_true(matches(TAG, "\"x\"", TAG, NULL));
    assert_false(matches(TAG, "\"x\"", "\"y\"", NULL));
}

static void a_tag_inside_another_is_no_match(void **state)
{
    (void)state;
    /* A substring search would take these for the tag. */
    assert_false(matches(TAG, "\"pre" TAG "post\"", NULL));
    assert_false(matches(TAG, "x" TAG, NULL));
}

static void malformed_elements_do_not_match(void **state)
{
    (void)state;
    assert_false(matches(TAG, "0123abcd", NULL));      /* unquoted */
    assert_false(matches(TAG, "\"0123abcd", NULL));    /* unterminated */
    assert_false(matches(TAG, TAG "x", NULL));         /* junk after the tag */
    assert_false(matches(TAG, "\"a b\", " TAG, NULL)); /* a space inside a tag ends the list */
    assert_true(matches(TAG, TAG ", \"a b\"", NULL));  /* ... but what came before it still counts */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parameters_are_found_whole_and_first_wins),
        cmocka_unit_test(counts_are_digits_from_one_to_max),
        cmocka_unit_test(no_field_never_matches),
        cmocka_unit_test(the_same_tag_matches),
        cmocka_unit_test(weak_comparison_ignores_w_on_either_side),
        cmocka_unit_test(any_element_of_a_list_matches),
        cmocka_unit_test(star_matches_anything),
        cmocka_unit_test(several_fields_count_as_one_list),
        cmocka_unit_test(a_tag_inside_another_is_no_match),
        cmocka_unit_test(malformed_elements_do_not_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
