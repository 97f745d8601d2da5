/*
 * test_profile.c -- a kind 0's content: picture (else image) and banner URLs,
 * refused unless usable as they are; data: URIs decoded under a limit and named by their bytes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "hex.h"
#include "profile.h"

/* The most bytes a data: URI may hold here. */
#define MAX_DATA 64

static struct profile prof;

static int parse(const char *content)
{
    profile_free(&prof);
    return profile_parse(content, strlen(content), MAX_DATA, &prof);
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
        "ipfs://bafy/picture.png",
        "ftp://a/b.png",
        "http://",
        "/relative.png",
        "http://a/b c.png",
        "http://a/\\u0001",
        "javascript:alert(1)",
        "http://a b/",
        "data:image/png,raw",
        "data:base64,QUJD",
        "data:;base64,",
        "data:;base64,QUJD!",
        "data:;base64,Q===",
        "data:",
    };
    char json[256];
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(json, sizeof(json), "{\"picture\":\"%s\"}", bad[i]);
        assert_int_equal(parse(json), 0);
        if (prof.picture.state != PROFILE_URL_BAD)
            fail_msg("%s was accepted", bad[i]);
        assert_null(prof.picture.data);
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
    assert_int_equal(prof.picture.state, PROFILE_URL_TOO_LONG);
    /* One character shorter fits exactly. */
    memmove(p + n - strlen("https://a/") - 1, "\"}", 3);
    assert_int_equal(parse(json), 0);
    assert_int_equal(prof.picture.state, PROFILE_URL_OK);
    assert_int_equal(prof.picture.len, PROFILE_MAX_URL);
    free(json);
}

static void a_data_uri_is_decoded_and_named_by_its_bytes(void **state)
{
    char name[sizeof(PROFILE_DATA_PREFIX) + 64];
    uint8_t hash[32];
    (void)state;

    blob_hash((const uint8_t *)"ABCD", 4, hash);
    memcpy(name, PROFILE_DATA_PREFIX, sizeof(PROFILE_DATA_PREFIX) - 1);
    hex_encode(hash, 32, name + sizeof(PROFILE_DATA_PREFIX) - 1);
    name[sizeof(name) - 1] = '\0';
    /* However the URI is written, the same bytes have the same name. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(parse(i == 0 ? "{\"picture\":\"data:image/png;base64,QUJDRA==\"}"
                                      : "{\"picture\":\"DATA:image/jpeg;charset=x;BASE64,QUJDRA\"}"),
                         0);
        assert_int_equal(prof.picture.state, PROFILE_URL_OK);
        assert_int_equal(prof.picture.data_len, 4);
        assert_memory_equal(prof.picture.data, "ABCD", 4);
        assert_string_equal(prof.picture.url, name);
        assert_int_equal(prof.picture.len, strlen(name));
        assert_false(profile_url_is_http(prof.picture.url));
    }
}

static void a_data_uri_is_bounded_by_its_bytes_not_its_length(void **state)
{
    char json[PROFILE_MAX_URL + 256], *p;
    (void)state;

    /* Exactly MAX_DATA bytes pass, one more does not. */
    p = json + sprintf(json, "{\"picture\":\"data:;base64,");
    for (int i = 0; i < MAX_DATA / 3; i++)
        p += sprintf(p, "QUJD");
    strcpy(p, "QQ==\"}");
    assert_int_equal(parse(json), 0);
    assert_int_equal(prof.picture.state, PROFILE_URL_OK);
    assert_int_equal(prof.picture.data_len, MAX_DATA);
    strcpy(p, "QUI=\"}");
    assert_int_equal(parse(json), 0);
    assert_int_equal(prof.picture.state, PROFILE_DATA_TOO_BIG);
    assert_null(prof.picture.data);
    /* A data: URI longer than any URL kept is judged by its bytes alone. */
    p = json + sprintf(json, "{\"picture\":\"data:image/png;x=");
    memset(p, 'y', PROFILE_MAX_URL);
    strcpy(p + PROFILE_MAX_URL, ";base64,QUJD\"}");
    assert_int_equal(parse(json), 0);
    assert_int_equal(prof.picture.state, PROFILE_URL_OK);
    assert_int_equal(prof.picture.data_len, 3);
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
        cmocka_unit_test(a_data_uri_is_decoded_and_named_by_its_bytes),
        cmocka_unit_test(a_data_uri_is_bounded_by_its_bytes_not_its_length),
        cmocka_unit_test(an_embedded_nul_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
