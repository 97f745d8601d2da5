/* test_http.c -- If-None-Match by RFC 9110: weak comparison, lists, "*", whitespace, several fields, malformed lists.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "http.h"

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
