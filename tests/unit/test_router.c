/* test_router.c -- route matching, 404 against 405, and the Allow list. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "router.h"

static int health, pic, purge_all, purge_one;

static enum router_result match(const struct router *r, const char *method, const char *path, struct router_match *m)
{
    return router_match(r, router_method(method, strlen(method)), path, strlen(path), m);
}

static void build(struct router *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(router_add(r, HTTP_GET, "/health", &health), 0);
    assert_int_equal(router_add(r, HTTP_GET, "/profile-pic/*", &pic), 0);
    assert_int_equal(router_add(r, HTTP_POST | HTTP_DELETE, "/purge-cache/all", &purge_all), 0);
    assert_int_equal(router_add(r, HTTP_POST | HTTP_DELETE, "/purge-profile-pic/*", &purge_one), 0);
}

static void exact_paths_match_exactly(void **state)
{
    struct router r;
    struct router_match m;
    (void)state;

    build(&r);
    assert_int_equal(match(&r, "GET", "/health", &m), ROUTER_FOUND);
    assert_ptr_equal(m.route->data, &health);
    assert_int_equal(m.param_len, 0);
    assert_int_equal(match(&r, "GET", "/health/", &m), ROUTER_NOT_FOUND);
    assert_int_equal(match(&r, "GET", "/healthz", &m), ROUTER_NOT_FOUND);
    assert_int_equal(match(&r, "GET", "/", &m), ROUTER_NOT_FOUND);
}

static void get_routes_answer_head(void **state)
{
    struct router r;
    struct router_match m;
    (void)state;

    build(&r);
    assert_int_equal(match(&r, "HEAD", "/health", &m), ROUTER_FOUND);
    assert_ptr_equal(m.route->data, &health);
}

static void star_captures_one_segment(void **state)
{
    struct router r;
    struct router_match m;
    (void)state;

    build(&r);
    assert_int_equal(match(&r, "GET", "/profile-pic/abc123", &m), ROUTER_FOUND);
    assert_ptr_equal(m.route->data, &pic);
    assert_int_equal(m.param_len, 6);
    assert_memory_equal(m.param, "abc123", 6);
    assert_int_equal(match(&r, "GET", "/profile-pic/", &m), ROUTER_NOT_FOUND);
    assert_int_equal(match(&r, "GET", "/profile-pic/a/b", &m), ROUTER_NOT_FOUND);
    assert_int_equal(match(&r, "GET", "/profile-pic", &m), ROUTER_NOT_FOUND);
}

static void two_stars_capture_the_rest_of_the_path(void **state)
{
    struct router r = {0};
    struct router_match m;
    int rest;
    (void)state;

    assert_int_equal(router_add(&r, HTTP_GET, "/imgproxy/**", &rest), 0);
    assert_int_equal(match(&r, "GET", "/imgproxy/sig//plain/a%2Fb@png", &m), ROUTER_FOUND);
    assert_ptr_equal(m.route->data, &rest);
    assert_int_equal(m.param_len, strlen("sig//plain/a%2Fb@png"));
    assert_memory_equal(m.param, "sig//plain/a%2Fb@png", m.param_len);
    assert_int_equal(match(&r, "GET", "/imgproxy/", &m), ROUTER_NOT_FOUND);
    assert_int_equal(match(&r, "GET", "/imgproxy", &m), ROUTER_NOT_FOUND);
    assert_int_equal(match(&r, "GET", "/imgproxyx/a", &m), ROUTER_NOT_FOUND);
    assert_int_equal(router_add(&r, HTTP_GET, "/a/***", NULL), -EINVAL);
    assert_int_equal(router_add(&r, HTTP_GET, "/a/**/b", NULL), -EINVAL);
    /* A prefix of its own: no route under it, before or after. */
    assert_int_equal(router_add(&r, HTTP_GET, "/imgproxy/x", NULL), -EEXIST);
    assert_int_equal(router_add(&r, HTTP_GET, "/profile/*", NULL), 0);
    assert_int_equal(router_add(&r, HTTP_GET, "/profile/**", NULL), -EEXIST);
    assert_int_equal(router_add(&r, HTTP_GET, "/profiles", NULL), 0);
}

static void wrong_method_lists_what_is_allowed(void **state)
{
    struct router r;
    struct router_match m;
    char allow[64];
    (void)state;

    build(&r);
    assert_int_equal(match(&r, "POST", "/health", &m), ROUTER_METHOD_NOT_ALLOWED);
    router_format_methods(m.allowed, allow, sizeof(allow));
    assert_string_equal(allow, "GET, HEAD");

    assert_int_equal(match(&r, "GET", "/purge-cache/all", &m), ROUTER_METHOD_NOT_ALLOWED);
    router_format_methods(m.allowed, allow, sizeof(allow));
    assert_string_equal(allow, "POST, DELETE");

    assert_int_equal(match(&r, "DELETE", "/purge-profile-pic/abc", &m), ROUTER_FOUND);
    assert_ptr_equal(m.route->data, &purge_one);
    assert_int_equal(match(&r, "BREW", "/health", &m), ROUTER_METHOD_NOT_ALLOWED);
}

static void bad_patterns_and_overflow_are_refused(void **state)
{
    struct router r;
    (void)state;

    memset(&r, 0, sizeof(r));
    assert_int_equal(router_add(&r, HTTP_GET, "health", NULL), -EINVAL);
    assert_int_equal(router_add(&r, HTTP_GET, "/a*", NULL), -EINVAL);
    assert_int_equal(router_add(&r, HTTP_GET, "/*/b", NULL), -EINVAL);
    for (int i = 0; i < ROUTER_MAX_ROUTES; i++)
        assert_int_equal(router_add(&r, HTTP_GET, "/x", NULL), 0);
    assert_int_equal(router_add(&r, HTTP_GET, "/x", NULL), -ENOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exact_paths_match_exactly),          cmocka_unit_test(get_routes_answer_head),
        cmocka_unit_test(star_captures_one_segment),          cmocka_unit_test(two_stars_capture_the_rest_of_the_path),
        cmocka_unit_test(wrong_method_lists_what_is_allowed), cmocka_unit_test(bad_patterns_and_overflow_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
