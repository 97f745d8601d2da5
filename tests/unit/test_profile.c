/* test_profile.c -- a kind 0's content: picture (else image) and banner URLs, refused unless usable as they are. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profile.h"

static struct profile prof;

static int parse(const char *content)
{
    return profile_parse(content, strlen(content), &prof);
}

static void picture_and_banner_are_read(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"name\":\"x\",\"picture\":\"https://a.example/p.jpg\",\"banner\":\"http://b/c.png\"}"),
                     0);
    assert_int_equal(prof.picture.state, PROFILE_URL_OK);
    assert_string_equal(prof.picture.url, "https://a.example/p.jpg");
    assert_int_equal(prof.picture.len, strlen("https://a.example/p.jpg"));
    assert_int_equal(prof.banner.state, PROFILE_URL_OK);
    assert_string_equal(prof.banner.url, "http://b/c.png");
}

static void image_stands_in_for_a_missing_or_empty_picture(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"image\":\"https://a/i.png\"}"), 0);
    assert_string_equal(prof.picture.url, "https://a/i.png");
    assert_int_equal(parse("{\"picture\":\"\",\"image\":\"https://a/i.png\"}"), 0);
    assert_string_equal(prof.picture.url, "https://a/i.png");
    assert_int_equal(parse("{\"picture\":7,\"image\":\"https://a/i.png\"}"), 0);
    assert_string_equal(prof.picture.url, "https://a/i.png");
    assert_int_equal(prof.banner.state, PROFILE_URL_ABSENT);
}

static void no_picture_is_absent(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"name\":\"x\"}"), 0);
    assert_int_equal(prof.picture.state, PROFILE_URL_ABSENT);
    assert_int_equal(parse("{\"picture\":\"\"}"), 0);
    assert_int_equal(prof.picture.state, PROFILE_URL_ABSENT);
}

static void content_that_is_not_an_object_is_refused(void **state)
{
    (void)state;
    assert_int_equal(parse("not json"), -EINVAL);
    assert_int_equal(prof.picture.state, PROFILE_URL_ABSENT);
    assert_int_equal(parse("[\"https://a/p.jpg\"]"), -EINVAL);
    assert_int_equal(parse(""), -EINVAL);
}

static void unusable_urls_are_bad(void **state)
{
    static const char *const bad[] = {
        "ipfs://bafy/picture.png", "ftp://a/b.png",       "http://",     "/relative.png", "http://a/b c.png",
        "http://a/\\u0001",        "javascript:alert(1)", "http://a b/",
    };
    char json[256];
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(json, sizeof(json), "{\"picture\":\"%s\"}", bad[i]);
        assert_int_equal(parse(json), 0);
        if (prof.picture.state != PROFILE_URL_BAD)
            fail_msg("%s was accepted", bad[i]);
    }
}

static void schemes_are_case_insensitive_and_data_uris_pass(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"picture\":\"HTTPS://A.example/p.jpg\"}"), 0);
    assert_int_equal(prof.picture.state, PROFILE_URL_OK);
    assert_true(profile_url_is_http(prof.picture.url));
    assert_int_equal(parse("{\"picture\":\"data:image/png;base64,iVBORw0KGgo=\"}"), 0);
    assert_int_equal(prof.picture.state, PROFILE_URL_OK);
    assert_false(profile_url_is_http(prof.picture.url));
}

static void a_url_too_long_is_refused_not_cut(void **state)
{
    size_t n = PROFILE_MAX_URL + 1;
    char *json = malloc(n + 64), *p;
    (void)state;

    p = json + sprintf(json, "{\"picture\":\"https://a/");
    memset(p, 'x', n - strlen("https://a/"));
    strcpy(p + n - strlen("https://a/"), "\"}");
    assert_int_equal(parse(json), 0);
    assert_int_equal(prof.picture.state, PROFILE_URL_BAD);
    /* One character shorter fits exactly. */
    memmove(p + n - strlen("https://a/") - 1, "\"}", 3);
    assert_int_equal(parse(json), 0);
    assert_int_equal(prof.picture.state, PROFILE_URL_OK);
    assert_int_equal(prof.picture.len, PROFILE_MAX_URL);
    free(json);
}

static void an_embedded_nul_is_refused(void **state)
{
    (void)state;
    assert_int_equal(parse("{\"picture\":\"https://a/p.jpg\\u0000.png\"}"), 0);
    assert_int_equal(prof.picture.state, PROFILE_URL_BAD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(picture_and_banner_are_read),
        cmocka_unit_test(image_stands_in_for_a_missing_or_empty_picture),
        cmocka_unit_test(no_picture_is_absent),
        cmocka_unit_test(content_that_is_not_an_object_is_refused),
        cmocka_unit_test(unusable_urls_are_bad),
        cmocka_unit_test(schemes_are_case_insensitive_and_data_uris_pass),
        cmocka_unit_test(a_url_too_long_is_refused_not_cut),
        cmocka_unit_test(an_embedded_nul_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
