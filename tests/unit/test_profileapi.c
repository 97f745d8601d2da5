/* test_profileapi.c -- the object of one profile (fields, picture states, banner) and the body of POST /profiles. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include "pending.h"
#include "profileapi.h"

static const char PK[] = "1111111111111111111111111111111111111111111111111111111111111111";
static const char ID[] = "2222222222222222222222222222222222222222222222222222222222222222";

/* A kind 0 by PK whose content is `content` (a JSON object, escaped here as a JSON string). */
static json_t *entry(const char *content, const struct pic *pic, enum profileapi_state *state)
{
    json_t *ev = json_pack("{s:s, s:s, s:i, s:i, s:s, s:[], s:s}", "id", ID, "pubkey", PK, "created_at", 1700000000,
                           "kind", 0, "content", content, "tags", "sig", "00");
    char *text = json_dumps(ev, 0);
    enum profileapi_state banner_state;
    json_t *o = profileapi_entry(text, strlen(text), pic, NULL, "https://relay.example", state, &banner_state);
    free(text);
    json_decref(ev);
    return o;
}

static const char *str(json_t *o, const char *a, const char *b)
{
    json_t *v = json_object_get(o, a);
    return json_string_value(b != NULL ? json_object_get(v, b) : v);
}

static void fields_are_copied_as_published_and_others_null(void **state)
{
    enum profileapi_state st;
    json_t *o =
        entry("{\"name\":\"al\",\"display_name\":\"Al\",\"about\":7,\"website\":null,\"lud16\":\"a@b\"}", NULL, &st);
    (void)state;

    assert_non_null(o);
    assert_string_equal(str(o, "pubkey", NULL), PK);
    assert_string_equal(str(o, "npub", NULL), "npub1zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygse4sl3h");
    assert_string_equal(str(o, "name", NULL), "al");
    assert_string_equal(str(o, "display_name", NULL), "Al");
    assert_true(json_is_null(json_object_get(o, "about")));
    assert_true(json_is_null(json_object_get(o, "website")));
    assert_true(json_is_null(json_object_get(o, "nip05")));
    assert_string_equal(str(o, "lud16", NULL), "a@b");
    assert_int_equal(json_integer_value(json_object_get(o, "created_at")), 1700000000);
    assert_int_equal(st, PROFILEAPI_NONE);
    assert_string_equal(str(o, "picture", "state"), "none");
    assert_string_equal(str(o, "banner", "state"), "none");
    json_decref(o);
}

static void picture_states_follow_the_record(void **state)
{
    const char *content = "{\"picture\":\"https://img.example/a.jpg\",\"banner\":\"https://img.example/b.jpg\"}";
    struct pic *pic = calloc(1, sizeof(*pic));
    enum profileapi_state st;
    json_t *o;
    (void)state;

    /* No record yet: pending, with both URLs. */
    o = entry(content, NULL, &st);
    assert_int_equal(st, PROFILEAPI_PENDING);
    assert_string_equal(str(o, "picture", "url"), "https://img.example/a.jpg");
    assert_string_equal(str(o, "picture", "relay_url"),
                        "https://relay.example/profile-pic/" /* PK */
                        "1111111111111111111111111111111111111111111111111111111111111111");
    assert_null(json_object_get(json_object_get(o, "picture"), "width"));
    assert_string_equal(str(o, "banner", "url"), "https://img.example/b.jpg");
    assert_string_equal(str(o, "banner", "state"), "pending");
    assert_string_equal(str(o, "banner", "relay_url"),
                        "https://relay.example/profile-banner/" /* PK */
                        "1111111111111111111111111111111111111111111111111111111111111111");
    json_decref(o);

    /* Cached for this URL: its size. */
    pic->h.state = PIC_OK;
    pic->h.width = 200;
    pic->h.height = 150;
    strcpy(pic->url, "https://img.example/a.jpg");
    o = entry(content, pic, &st);
    assert_int_equal(st, PROFILEAPI_CACHED);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "picture"), "width")), 200);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "picture"), "height")), 150);
    json_decref(o);

    /* The banner's record says the banner's state, apart from the picture's. */
    {
        json_t *ev = json_pack("{s:s, s:s, s:i, s:i, s:s, s:[], s:s}", "id", ID, "pubkey", PK, "created_at", 1700000000,
                               "kind", 0, "content", content, "tags", "sig", "00");
        char *text = json_dumps(ev, 0);
        struct pic *banner = calloc(1, sizeof(*banner));
        enum profileapi_state bst;
        banner->h.state = PIC_OK;
        banner->h.width = 1500;
        banner->h.height = 500;
        strcpy(banner->url, "https://img.example/b.jpg");
        o = profileapi_entry(text, strlen(text), NULL, banner, "", &st, &bst);
        assert_int_equal(st, PROFILEAPI_PENDING);
        assert_int_equal(bst, PROFILEAPI_CACHED);
        assert_string_equal(str(o, "banner", "state"), "cached");
        assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "banner"), "width")), 1500);
        json_decref(o);
        free(banner);
        free(text);
        json_decref(ev);
    }

    /* Cached for an older URL: pending again. */
    strcpy(pic->url, "https://img.example/old.jpg");
    o = entry(content, pic, &st);
    assert_int_equal(st, PROFILEAPI_PENDING);
    json_decref(o);

    /* A failed download of this very kind 0: failed; of an older one: pending. */
    pic->h.state = PIC_NEGATIVE;
    pic->h.reason = PENDING_DOWNLOAD_FAILED;
    assert_int_equal(hex_decode(ID, 64, pic->h.event_id, 32), 0);
    o = entry(content, pic, &st);
    assert_int_equal(st, PROFILEAPI_FAILED);
    assert_string_equal(str(o, "picture", "state"), "failed");
    json_decref(o);
    pic->h.event_id[0] ^= 1;
    o = entry(content, pic, &st);
    assert_int_equal(st, PROFILEAPI_PENDING);
    json_decref(o);

    /* A URL that cannot be used: failed, named by no URL. */
    o = entry("{\"picture\":\"ftp://img.example/a.jpg\"}", NULL, &st);
    assert_int_equal(st, PROFILEAPI_FAILED);
    assert_true(json_is_null(json_object_get(json_object_get(o, "picture"), "url")));
    json_decref(o);
    free(pic);
}

static void not_a_kind_0_is_refused(void **state)
{
    enum profileapi_state st;
    static const char *const bad[] = {
        "",
        "[]",
        "{\"kind\":0}",
        "{\"id\":\"22\",\"pubkey\":\"11\",\"created_at\":1,\"kind\":0,\"content\":\"\"}",
        "{\"id\":\"2222222222222222222222222222222222222222222222222222222222222222\",\"pubkey\":"
        "\"1111111111111111111111111111111111111111111111111111111111111111\",\"created_at\":1,\"kind\":3,\"content\":"
        "\"\"}",
    };
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_null(profileapi_entry(bad[i], strlen(bad[i]), NULL, NULL, "", &st, &st));
    /* Content that is no JSON object is a profile without fields. */
    json_t *o = entry("not json", NULL, &st);
    assert_non_null(o);
    assert_true(json_is_null(json_object_get(o, "name")));
    json_decref(o);
}

static void dominant_color_is_the_mean_of_the_fullest_box(void **state)
{
    uint8_t rgb[10 * 3];
    char out[8];
    (void)state;

    /* Six pixels near red (one box), four blue: the mean of the six. */
    for (int i = 0; i < 10; i++) {
        const uint8_t red[3] = {(uint8_t)(208 + i), 30, 30}, blue[3] = {0, 0, 255};
        memcpy(rgb + 3 * i, i < 6 ? red : blue, 3);
    }
    profileapi_dominant_color(rgb, 10, 1, out);
    assert_string_equal(out, "#d21e1e");
    /* One pixel. */
    profileapi_dominant_color((const uint8_t[]){1, 2, 3}, 1, 1, out);
    assert_string_equal(out, "#010203");
}

static int parse(const char *body, uint8_t (**keys)[32], size_t *n, char *err)
{
    return profileapi_parse_batch(body, strlen(body), keys, n, NULL, NULL, err, 256);
}

static void count_hint(void *ctx, const uint8_t pubkey[32], const char *url)
{
    (void)pubkey;
    assert_string_equal(url, "wss://r.example");
    *(int *)ctx += 1;
}

/* An nprofile's relay becomes a hint once the whole batch is good, and not when it is refused. */
static void batch_nprofile_relays_are_hints_of_a_good_batch_only(void **state)
{
    /* nip19.nprofileEncode({pubkey: "3bf0...459d", relays: ["wss://r.example"]}) */
    const char *np = "nprofile1qy8hwumn8ghj7u3wv4uxzmtsd3jsqgpm7rrrljungc6q0"
                     "tuh5hj7ue863q73qlheu4vywtzwhx42a7j9n54dxmpg";
    uint8_t(*keys)[32];
    size_t n;
    int hints = 0;
    char err[256], body[512];
    (void)state;

    snprintf(body, sizeof(body), "{\"pubkeys\":[\"%s\"]}", np);
    assert_int_equal(profileapi_parse_batch(body, strlen(body), &keys, &n, count_hint, &hints, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_int_equal(hints, 1);
    free(keys);
    snprintf(body, sizeof(body), "{\"pubkeys\":[\"%s\",\"not a key\"]}", np);
    assert_int_equal(profileapi_parse_batch(body, strlen(body), &keys, &n, count_hint, &hints, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(hints, 1);
}

static void batch_keeps_order_and_duplicates(void **state)
{
    uint8_t(*keys)[32];
    uint8_t want[32];
    size_t n;
    char err[256], body[512];
    (void)state;

    snprintf(body, sizeof(body),
             "{\"pubkeys\":[\"%s\",\"npub1zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygse4sl3h\",\"%s\"]}", ID,
             PK);
    assert_int_equal(parse(body, &keys, &n, err), 0);
    assert_int_equal(n, 3);
    hex_decode(ID, 64, want, 32);
    assert_memory_equal(keys[0], want, 32);
    hex_decode(PK, 64, want, 32);
    assert_memory_equal(keys[1], want, 32);
    assert_memory_equal(keys[2], want, 32);
    free(keys);
}

static void batch_refusals_name_the_fault(void **state)
{
    static const struct {
        const char *body, *error;
    } cases[] = {
        {"{", "malformed JSON"},
        {"[1]", "the body must be an object"},
        {"{\"keys\":[]}", "the body must be an object"},
        {"{\"pubkeys\":{}}", "\"pubkeys\" must be an array"},
        {"{\"pubkeys\":[]}", "\"pubkeys\" is empty"},
        {"{\"pubkeys\":[null]}", "pubkeys[0] is not a string"},
        {"{\"pubkeys\":[\"1111111111111111111111111111111111111111111111111111111111111111\",\"xyz\"]}",
         "pubkeys[1] is not a public key"},
    };
    uint8_t(*keys)[32];
    size_t n;
    char err[256];
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(parse(cases[i].body, &keys, &n, err), -EINVAL);
        assert_null(keys);
        assert_int_equal(n, 0);
        assert_non_null(strstr(err, cases[i].error));
    }
}

static void batch_of_more_than_the_limit_is_refused(void **state)
{
    size_t len = 16 + (PROFILEAPI_BATCH_MAX + 1) * 67;
    char *body = malloc(len), *p = body, err[256];
    uint8_t(*keys)[32];
    size_t n;
    (void)state;

    p += sprintf(p, "{\"pubkeys\":[");
    for (int i = 0; i <= PROFILEAPI_BATCH_MAX; i++)
        p += sprintf(p, "%s\"%s\"", i ? "," : "", PK);
    sprintf(p, "]}");
    assert_int_equal(parse(body, &keys, &n, err), -EINVAL);
    assert_string_equal(err, "at most 500 pubkeys per request; got 501");
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(batch_nprofile_relays_are_hints_of_a_good_batch_only),
        cmocka_unit_test(fields_are_copied_as_published_and_others_null),
        cmocka_unit_test(picture_states_follow_the_record),
        cmocka_unit_test(not_a_kind_0_is_refused),
        cmocka_unit_test(dominant_color_is_the_mean_of_the_fullest_box),
        cmocka_unit_test(batch_keeps_order_and_duplicates),
        cmocka_unit_test(batch_refusals_name_the_fault),
        cmocka_unit_test(batch_of_more_than_the_limit_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
