/* test_filter.c -- strict parsing of NIP-01 filters and matching them against stored event records. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "filter.h"
#include "fixture.h"

#define MAX_LIMIT 500

/* A stored record and the view decoded from it, as the store hands events to filter_match. */
struct rec {
    uint8_t id[32];
    uint8_t *bytes;
    struct event_view v;
};

/* 64 hex characters of the byte `b` repeated: the id or key of a synthetic event. */
static const char *hex32(uint8_t b, char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", b);
    return out;
}

static void make_rec(struct rec *r, uint8_t id, uint8_t pubkey, int64_t created_at, uint32_t kind, const char *tags)
{
    size_t len;

    memset(r->id, id, 32);
    r->bytes = fixture_record(id, pubkey, created_at, kind, tags, "hello", 5, &len);
    assert_int_equal(event_view_decode(r->id, r->bytes, len, &r->v), 0);
}

static void free_rec(struct rec *r)
{
    free(r->bytes);
}

static void parse(const char *text, struct filter *f)
{
    json_error_t jerr;
    json_t *obj = json_loads(text, JSON_ALLOW_NUL, &jerr);
    char reason[256] = "";

    if (obj == NULL)
        fail_msg("test JSON %s: %s", text, jerr.text);
    if (filter_parse(obj, MAX_LIMIT, f, reason, sizeof(reason)) != 0)
        fail_msg("filter %s refused: %s", text, reason);
    json_decref(obj);
}

/* Parses `text` and expects -EINVAL with a reason containing `expect`, and nothing left in the filter. */
static void expect_refused(const char *text, const char *expect)
{
    json_error_t jerr;
    json_t *obj = json_loads(text, JSON_DECODE_ANY, &jerr);
    struct filter f;
    char reason[256] = "";

    if (obj == NULL)
        fail_msg("test JSON %s: %s", text, jerr.text);
    assert_int_equal(filter_parse(obj, MAX_LIMIT, &f, reason, sizeof(reason)), -EINVAL);
    if (strstr(reason, expect) == NULL)
        fail_msg("reason \"%s\" for %s does not contain \"%s\"", reason, text, expect);
    assert_null(f.ids);
    assert_null(f.authors);
    assert_null(f.kinds);
    assert_null(f.tags);
    assert_int_equal(f.ntags, 0);
    json_decref(obj);
}

/* Whether the filter `text` matches `r`. */
static bool matches(const char *text, const struct rec *r)
{
    struct filter f;
    bool m;

    parse(text, &f);
    m = filter_match(&f, &r->v);
    filter_free(&f);
    return m;
}

static void every_field_is_parsed_and_lists_are_sorted(void **state)
{
    struct filter f;
    char a[65], b[65], c[65], text[1024];
    uint8_t x11[32], x22[32];
    (void)state;

    memset(x11, 0x11, 32);
    memset(x22, 0x22, 32);
    snprintf(text, sizeof(text),
             "{\"ids\":[\"%s\",\"%s\"],\"authors\":[\"%s\"],\"kinds\":[65535,0,1],\"since\":10,\"until\":20,"
             "\"limit\":5,\"#e\":[\"x\"],\"#p\":[\"z\",\"y\"],\"#t\":[\"nostr\"]}",
             hex32(0x22, a), hex32(0x11, b), hex32(0x33, c));
    parse(text, &f);

    assert_true(f.has_ids);
    assert_int_equal(f.nids, 2);
    assert_memory_equal(f.ids[0], x11, 32);
    assert_memory_equal(f.ids[1], x22, 32);
    assert_true(f.has_authors);
    assert_int_equal(f.nauthors, 1);
    assert_true(f.has_kinds);
    assert_int_equal(f.nkinds, 3);
    assert_int_equal(f.kinds[0], 0);
    assert_int_equal(f.kinds[1], 1);
    assert_int_equal(f.kinds[2], 65535);
    assert_int_equal(f.since, 10);
    assert_int_equal(f.until, 20);
    assert_int_equal(f.limit, 5);
    assert_int_equal(f.ntags, 3);
    for (size_t i = 0; i < f.ntags; i++) {
        const struct filter_tag *t = &f.tags[i];
        if (t->letter == 'p') {
            assert_int_equal(t->nvalues, 2);
            assert_string_equal(t->values[0].s, "y");
            assert_string_equal(t->values[1].s, "z");
        } else if (t->letter == 'e') {
            assert_int_equal(t->nvalues, 1);
            assert_string_equal(t->values[0].s, "x");
        } else {
            assert_int_equal(t->letter, 't');
            assert_int_equal(t->values[0].len, 5);
        }
    }
    assert_true(filter_has_id(&f, x11));
    assert_true(filter_has_kind(&f, 65535));
    assert_false(filter_has_kind(&f, 2));
    assert_false(filter_has_author(&f, x11));
    filter_free(&f);
}

static void absent_fields_leave_the_filter_open(void **state)
{
    struct filter f;
    uint8_t any[32];
    (void)state;

    memset(any, 0x77, 32);
    parse("{}", &f);
    assert_false(f.has_ids);
    assert_false(f.has_authors);
    assert_false(f.has_kinds);
    assert_int_equal(f.since, 0);
    assert_true(f.until == INT64_MAX);
    assert_int_equal(f.limit, MAX_LIMIT);
    assert_int_equal(f.ntags, 0);
    /* No list means no restriction. */
    assert_true(filter_has_id(&f, any));
    assert_true(filter_has_author(&f, any));
    assert_true(filter_has_kind(&f, 12345));
    filter_free(&f);
}

static void limit_is_clamped_to_the_maximum(void **state)
{
    struct filter f;
    (void)state;

    parse("{\"limit\":100000}", &f);
    assert_int_equal(f.limit, MAX_LIMIT);
    filter_free(&f);
    parse("{\"limit\":500}", &f);
    assert_int_equal(f.limit, 500);
    filter_free(&f);
    parse("{\"limit\":499}", &f);
    assert_int_equal(f.limit, 499);
    filter_free(&f);
    parse("{\"limit\":0}", &f);
    assert_int_equal(f.limit, 0);
    filter_free(&f);
}

static void kind_bounds_and_large_times_are_accepted(void **state)
{
    struct filter f;
    (void)state;

    parse("{\"kinds\":[0,65535],\"since\":0,\"until\":9223372036854775807}", &f);
    assert_int_equal(f.nkinds, 2);
    assert_int_equal(f.since, 0);
    assert_true(f.until == INT64_MAX);
    filter_free(&f);
}

static void uppercase_tag_letters_are_tag_filters(void **state)
{
    struct filter f;
    (void)state;

    parse("{\"#E\":[\"x\"],\"#d\":[\"\"]}", &f);
    assert_int_equal(f.ntags, 2);
    filter_free(&f);
}

static void non_objects_are_refused(void **state)
{
    (void)state;
    expect_refused("[]", "must be a JSON object");
    expect_refused("\"kinds\"", "must be a JSON object");
    expect_refused("null", "must be a JSON object");
}

static void bad_ids_and_authors_are_refused_by_name_and_index(void **state)
{
    char ok[65], text[512];
    (void)state;

    hex32(0xab, ok);
    snprintf(text, sizeof(text), "{\"ids\":[\"%s\",\"%.63s\"]}", ok, ok);
    expect_refused(text, "ids[1] is not a 64-character lowercase hex string");
    snprintf(text, sizeof(text), "{\"ids\":[\"AB%s\"]}", ok + 2);
    expect_refused(text, "ids[0]");
    snprintf(text, sizeof(text), "{\"authors\":[\"%sab\"]}", ok);
    expect_refused(text, "authors[0]");
    snprintf(text, sizeof(text), "{\"authors\":[\"%sAB\"]}", ok + 2);
    expect_refused(text, "authors[0]");
    /* NIP-01 dropped prefix matching: a short id is an error, not a prefix. */
    expect_refused("{\"authors\":[\"abcd\"]}", "authors[0]");
    expect_refused("{\"ids\":[1]}", "ids[0]");
    expect_refused("{\"ids\":\"abcd\"}", "ids must be an array");
    expect_refused("{\"authors\":null}", "authors must be an array");
}

static void bad_kinds_are_refused(void **state)
{
    (void)state;
    expect_refused("{\"kinds\":[1,70000]}", "kinds[1] is not an integer from 0 to 65535");
    expect_refused("{\"kinds\":[65536]}", "kinds[0]");
    expect_refused("{\"kinds\":[-1]}", "kinds[0]");
    expect_refused("{\"kinds\":[\"1\"]}", "kinds[0]");
    expect_refused("{\"kinds\":[1.0]}", "kinds[0]");
    expect_refused("{\"kinds\":1}", "kinds must be an array");
}

static void bad_times_and_limits_are_refused(void **state)
{
    (void)state;
    expect_refused("{\"since\":-1}", "since must be a non-negative integer");
    expect_refused("{\"since\":\"1\"}", "since");
    expect_refused("{\"until\":1.5}", "until must be a non-negative integer");
    expect_refused("{\"until\":null}", "until");
    expect_refused("{\"limit\":10.5}", "limit must be a non-negative integer");
    expect_refused("{\"limit\":\"10\"}", "limit");
    expect_refused("{\"limit\":-1}", "limit");
}

static void unknown_fields_are_refused_by_name(void **state)
{
    char text[256];
    (void)state;

    expect_refused("{\"kinds\":[1],\"search\":\"cats\"}", "unsupported filter field \"search\"");
    expect_refused("{\"#pp\":[\"a\"]}", "\"#pp\"");
    expect_refused("{\"#\":[\"a\"]}", "\"#\"");
    expect_refused("{\"#1\":[\"a\"]}", "\"#1\"");
    expect_refused("{\"e\":[\"a\"]}", "\"e\"");
    /* A client-chosen key is quoted only in part, so the reason stays short. */
    snprintf(text, sizeof(text), "{\"%0100d\":1}", 0);
    expect_refused(text, "\"0000000000000000000000000000000000000000\"");
}

static void bad_tag_values_are_refused(void **state)
{
    (void)state;
    expect_refused("{\"#e\":\"x\"}", "#e must be an array of strings");
    expect_refused("{\"#e\":[\"a\",1]}", "#e[1] is not a string");
    expect_refused("{\"#p\":[null]}", "#p[0]");
    expect_refused("{\"#t\":[\"a\"],\"#p\":[[\"b\"]]}", "#p[0]");
}

static void created_at_bounds_are_inclusive(void **state)
{
    struct rec r;
    (void)state;

    make_rec(&r, 1, 2, 1000, 1, "[]");
    assert_true(matches("{\"since\":1000}", &r));
    assert_false(matches("{\"since\":1001}", &r));
    assert_true(matches("{\"until\":1000}", &r));
    assert_false(matches("{\"until\":999}", &r));
    assert_true(matches("{\"since\":1000,\"until\":1000}", &r));
    assert_false(matches("{\"since\":1001,\"until\":999}", &r));
    free_rec(&r);
}

static void kinds_authors_and_ids_restrict_to_their_lists(void **state)
{
    struct rec r;
    char a[65], b[65], text[512];
    (void)state;

    make_rec(&r, 0x10, 0x20, 1000, 3, "[]");
    assert_true(matches("{\"kinds\":[0,3,10002]}", &r));
    assert_false(matches("{\"kinds\":[0,1,10002]}", &r));

    snprintf(text, sizeof(text), "{\"authors\":[\"%s\",\"%s\"]}", hex32(0x99, a), hex32(0x20, b));
    assert_true(matches(text, &r));
    snprintf(text, sizeof(text), "{\"authors\":[\"%s\"]}", hex32(0x10, a));
    assert_false(matches(text, &r));

    snprintf(text, sizeof(text), "{\"ids\":[\"%s\"]}", hex32(0x10, a));
    assert_true(matches(text, &r));
    snprintf(text, sizeof(text), "{\"ids\":[\"%s\"]}", hex32(0x20, a));
    assert_false(matches(text, &r));

    /* Every condition must hold at once. */
    snprintf(text, sizeof(text), "{\"ids\":[\"%s\"],\"authors\":[\"%s\"],\"kinds\":[3],\"until\":1000}", hex32(0x10, a),
             hex32(0x20, b));
    assert_true(matches(text, &r));
    snprintf(text, sizeof(text), "{\"ids\":[\"%s\"],\"authors\":[\"%s\"],\"kinds\":[4]}", hex32(0x10, a),
             hex32(0x20, b));
    assert_false(matches(text, &r));
    free_rec(&r);
}

static void tag_filters_are_or_within_a_letter_and_and_across_letters(void **state)
{
    struct rec r;
    (void)state;

    make_rec(&r, 1, 2, 1000, 1, "[[\"e\",\"E1\"],[\"p\",\"P1\"],[\"p\",\"P2\",\"wss://relay\"],[\"t\",\"cats\"]]");
    assert_true(matches("{\"#p\":[\"P2\"]}", &r));
    assert_true(matches("{\"#p\":[\"nobody\",\"P1\"]}", &r));
    assert_false(matches("{\"#p\":[\"nobody\"]}", &r));
    assert_true(matches("{\"#e\":[\"E1\"],\"#p\":[\"P1\"],\"#t\":[\"dogs\",\"cats\"]}", &r));
    assert_false(matches("{\"#e\":[\"E1\"],\"#p\":[\"P1\"],\"#t\":[\"dogs\"]}", &r));
    /* A letter the event does not carry at all cannot match. */
    assert_false(matches("{\"#d\":[\"\"]}", &r));
    free_rec(&r);
}

static void only_the_first_value_of_single_letter_tags_is_matched(void **state)
{
    struct rec r;
    (void)state;

    make_rec(&r, 1, 2, 1000, 1, "[[\"p\",\"P1\",\"P3\"],[\"pp\",\"X\"],[\"P\",\"UP\"],[\"q\"]]");
    assert_true(matches("{\"#p\":[\"P1\"]}", &r));
    assert_false(matches("{\"#p\":[\"P3\"]}", &r));
    assert_false(matches("{\"#p\":[\"X\"]}", &r));
    /* Letters are case-sensitive: "P" and "p" are different tags. */
    assert_true(matches("{\"#P\":[\"UP\"]}", &r));
    assert_false(matches("{\"#p\":[\"UP\"]}", &r));
    assert_false(matches("{\"#q\":[\"\"]}", &r));
    free_rec(&r);
}

static void tag_values_compare_by_length_and_bytes(void **state)
{
    struct rec r;
    (void)state;

    make_rec(&r, 1, 2, 1000, 1, "[[\"t\",\"a\\u0000b\"],[\"d\",\"\"]]");
    assert_true(matches("{\"#t\":[\"a\\u0000b\"]}", &r));
    assert_false(matches("{\"#t\":[\"a\"]}", &r));
    assert_false(matches("{\"#t\":[\"a\\u0000\"]}", &r));
    assert_true(matches("{\"#d\":[\"\"]}", &r));
    free_rec(&r);
}

/* Tags `[["t", n times 'x']]` or the filter `{"#t": [n times 'x']}`, in a malloc()ed string. */
static char *long_value_json(const char *fmt, size_t n)
{
    char *v = malloc(n + 1), *out;
    memset(v, 'x', n);
    v[n] = '\0';
    assert_true(asprintf(&out, fmt, v) > 0);
    free(v);
    return out;
}

static void long_tag_values_match_up_to_the_packed_limit(void **state)
{
    const size_t lengths[] = {255, 256, 1000, 65535};
    struct rec r;
    char *tags, *filter;
    (void)state;

    for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        tags = long_value_json("[[\"t\",\"%s\"]]", lengths[i]);
        make_rec(&r, 1, 2, 1000, 1, tags);
        filter = long_value_json("{\"#t\":[\"%s\"]}", lengths[i]);
        assert_true(matches(filter, &r));
        free(filter);
        filter = long_value_json("{\"#t\":[\"%s\"]}", lengths[i] - 1);
        assert_false(matches(filter, &r));
        free(filter);
        free_rec(&r);
        free(tags);
    }

    /* Longer values are not packed into the record, so no filter can name them. */
    tags = long_value_json("[[\"t\",\"%s\"]]", 65536);
    make_rec(&r, 1, 2, 1000, 1, tags);
    filter = long_value_json("{\"#t\":[\"%s\"]}", 65536);
    assert_false(matches(filter, &r));
    free(filter);
    free_rec(&r);
    free(tags);
}

static void empty_lists_match_nothing(void **state)
{
    struct rec r;
    struct filter f;
    uint8_t any[32];
    (void)state;

    memset(any, 0x01, 32);
    make_rec(&r, 1, 2, 1000, 1, "[[\"e\",\"E1\"]]");
    assert_false(matches("{\"ids\":[]}", &r));
    assert_false(matches("{\"authors\":[]}", &r));
    assert_false(matches("{\"kinds\":[]}", &r));
    assert_false(matches("{\"#e\":[]}", &r));

    /* The store relies on an empty list reading as "nothing", not as "no restriction". */
    parse("{\"ids\":[],\"authors\":[],\"kinds\":[]}", &f);
    assert_true(f.has_ids && f.has_authors && f.has_kinds);
    assert_false(filter_has_id(&f, any));
    assert_false(filter_has_author(&f, any));
    assert_false(filter_has_kind(&f, 1));
    filter_free(&f);
    free_rec(&r);
}

static void the_limit_does_not_affect_matching(void **state)
{
    struct rec r;
    (void)state;

    make_rec(&r, 1, 2, 1000, 1, "[]");
    assert_true(matches("{\"limit\":0}", &r));
    assert_true(matches("{}", &r));
    free_rec(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_field_is_parsed_and_lists_are_sorted),
        cmocka_unit_test(absent_fields_leave_the_filter_open),
        cmocka_unit_test(limit_is_clamped_to_the_maximum),
        cmocka_unit_test(kind_bounds_and_large_times_are_accepted),
        cmocka_unit_test(uppercase_tag_letters_are_tag_filters),
        cmocka_unit_test(non_objects_are_refused),
        cmocka_unit_test(bad_ids_and_authors_are_refused_by_name_and_index),
        cmocka_unit_test(bad_kinds_are_refused),
        cmocka_unit_test(bad_times_and_limits_are_refused),
        cmocka_unit_test(unknown_fields_are_refused_by_name),
        cmocka_unit_test(bad_tag_values_are_refused),
        cmocka_unit_test(created_at_bounds_are_inclusive),
        cmocka_unit_test(kinds_authors_and_ids_restrict_to_their_lists),
        cmocka_unit_test(tag_filters_are_or_within_a_letter_and_and_across_letters),
        cmocka_unit_test(only_the_first_value_of_single_letter_tags_is_matched),
        cmocka_unit_test(tag_values_compare_by_length_and_bytes),
        cmocka_unit_test(long_tag_values_match_up_to_the_packed_limit),
        cmocka_unit_test(empty_lists_match_nothing),
        cmocka_unit_test(the_limit_does_not_affect_matching),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
