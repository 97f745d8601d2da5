/* test_buf.c -- the growable buffer and the two JSON string escapings (wire and NIP-01 id). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* Escapes `n` bytes of `s` in `mode` and compares the whole output, quotes included, with `expect`. */
static void expect_json(const char *s, size_t n, enum buf_json_mode mode, const char *expect, size_t expect_len)
{
    struct buf b = BUF_INIT;

    buf_json_string(&b, s, n, mode);
    assert_int_equal(b.len, expect_len);
    assert_memory_equal(b.data, expect, expect_len);
    assert_int_equal(b.data[b.len], '\0');
    buf_free(&b);
}

#define EXPECT_JSON(lit, mode, expect) expect_json(lit, sizeof(lit) - 1, mode, expect, sizeof(expect) - 1)

static void append_grows_past_the_first_allocation_and_keeps_a_terminator(void **state)
{
    struct buf b = BUF_INIT;
    char expect[1000];
    (void)state;

    /* 1000 bytes force several doublings from the initial capacity. */
    for (size_t i = 0; i < sizeof(expect); i++) {
        char c = (char)('a' + i % 26);
        expect[i] = c;
        buf_append(&b, &c, 1);
        assert_int_equal(b.len, i + 1);
        assert_int_equal(b.data[b.len], '\0');
        assert_true(b.cap > b.len);
    }
    assert_memory_equal(b.data, expect, sizeof(expect));
    buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
}

static void append_copies_embedded_nul_bytes(void **state)
{
    struct buf b = BUF_INIT;
    (void)state;

    buf_append(&b, "a\0b", 3);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "a\0b\0", 4);
    buf_free(&b);
}

static void appends_appendc_and_appendf_concatenate(void **state)
{
    struct buf b = BUF_INIT;
    char big[300];
    (void)state;

    buf_appends(&b, "kind=");
    buf_appendf(&b, "%u", 30000u);
    buf_appendc(&b, ';');
    buf_appendf(&b, "%s:%lld", "at", -5LL);
    assert_string_equal(b.data, "kind=30000;at:-5");
    assert_int_equal(b.len, strlen("kind=30000;at:-5"));

    /* A formatted piece longer than the free space must grow the buffer, not truncate. */
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    buf_appendf(&b, "[%s]", big);
    assert_int_equal(b.len, strlen("kind=30000;at:-5") + 301);
    assert_int_equal(b.data[b.len - 1], ']');
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(strlen(b.data), b.len);
    buf_free(&b);
}

static void appendf_of_nothing_still_leaves_a_string(void **state)
{
    struct buf b = BUF_INIT;
    (void)state;

    buf_appendf(&b, "%s", "");
    assert_non_null(b.data);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    buf_free(&b);
}

static void steal_hands_over_the_bytes_and_empties_the_buffer(void **state)
{
    struct buf b = BUF_INIT;
    char *p;
    (void)state;

    buf_appends(&b, "hello");
    p = buf_steal(&b);
    assert_string_equal(p, "hello");
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    free(p);

    /* The buffer is reusable after a steal. */
    buf_appends(&b, "again");
    assert_string_equal(b.data, "again");
    buf_free(&b);
}

static void steal_of_an_empty_buffer_gives_an_empty_string(void **state)
{
    struct buf b = BUF_INIT;
    char *p;
    (void)state;

    /* Callers free() and print what they steal, so "nothing" must still be a string. */
    p = buf_steal(&b);
    assert_non_null(p);
    assert_string_equal(p, "");
    free(p);
}

static void wire_escapes_the_short_forms_with_two_characters(void **state)
{
    (void)state;
    EXPECT_JSON("a\"b\\c\nd\re\tf\bg\fh", BUF_JSON_WIRE, "\"a\\\"b\\\\c\\nd\\re\\tf\\bg\\fh\"");
    EXPECT_JSON("", BUF_JSON_WIRE, "\"\"");
}

static void wire_escapes_other_control_bytes_as_lowercase_u00xx(void **state)
{
    (void)state;
    EXPECT_JSON("\x01", BUF_JSON_WIRE, "\"\\u0001\"");
    EXPECT_JSON("\x0b", BUF_JSON_WIRE, "\"\\u000b\"");
    EXPECT_JSON("\x1f", BUF_JSON_WIRE, "\"\\u001f\"");
    EXPECT_JSON("\x1b[0m", BUF_JSON_WIRE, "\"\\u001b[0m\"");
    EXPECT_JSON("a\x0e\x1a z", BUF_JSON_WIRE, "\"a\\u000e\\u001a z\"");
}

static void wire_escapes_every_control_byte_and_nothing_else_below_0x80(void **state)
{
    struct buf b = BUF_INIT;
    char in[128];
    (void)state;

    for (int i = 0; i < 128; i++)
        in[i] = (char)i;
    buf_json_string(&b, in, sizeof(in), BUF_JSON_WIRE);
    /* Printable ASCII other than the quote and backslash passes through unchanged. */
    for (const char *p = b.data + 1; p < b.data + b.len - 1; p++) {
        unsigned char c = (unsigned char)*p;
        assert_true(c >= 0x20);
    }
    assert_non_null(strstr(b.data, "\\u0000\\u0001\\u0002"));
    assert_non_null(strstr(b.data, "\\b\\t\\n\\u000b\\f\\r\\u000e"));
    assert_non_null(strstr(b.data, " !\\\"#$%&'()*+,-./0123456789"));
    assert_non_null(strstr(b.data, "Z[\\\\]^_`a"));
    assert_non_null(strstr(b.data, "xyz{|}~\x7f\""));
    buf_free(&b);
}

static void wire_keeps_utf8_slash_and_del_verbatim(void **state)
{
    (void)state;
    EXPECT_JSON("caf\xc3\xa9 \xf0\x9f\x98\x80 a/b \x7f", BUF_JSON_WIRE, "\"caf\xc3\xa9 \xf0\x9f\x98\x80 a/b \x7f\"");
}

static void wire_reads_by_length_and_escapes_embedded_nul(void **state)
{
    (void)state;
    EXPECT_JSON("a\0b", BUF_JSON_WIRE, "\"a\\u0000b\"");
    /* The length, not a terminator, decides where the string ends. */
    expect_json("abcdef", 3, BUF_JSON_WIRE, "\"abc\"", 5);
}

static void nip01_escapes_exactly_the_seven(void **state)
{
    (void)state;
    EXPECT_JSON("a\"b\\c\nd\re\tf\bg\fh", BUF_JSON_NIP01, "\"a\\\"b\\\\c\\nd\\re\\tf\\bg\\fh\"");
}

static void nip01_keeps_every_other_byte_verbatim(void **state)
{
    struct buf b = BUF_INIT;
    char in[256], expect[258];
    size_t n = 0;
    (void)state;

    /* The id hashes these bytes as they are: escaping one more would change every such event's id. */
    EXPECT_JSON("\x01\x0b\x1f\x7f", BUF_JSON_NIP01, "\"\x01\x0b\x1f\x7f\"");
    EXPECT_JSON("a\0b", BUF_JSON_NIP01, "\"a\0b\"");
    EXPECT_JSON("caf\xc3\xa9/", BUF_JSON_NIP01, "\"caf\xc3\xa9/\"");

    for (int i = 0; i < 256; i++) {
        if (i != '"' && i != '\\' && i != '\n' && i != '\r' && i != '\t' && i != '\b' && i != '\f')
            in[n++] = (char)i;
    }
    expect[0] = '"';
    memcpy(expect + 1, in, n);
    expect[n + 1] = '"';
    buf_json_string(&b, in, n, BUF_JSON_NIP01);
    assert_int_equal(b.len, n + 2);
    assert_memory_equal(b.data, expect, n + 2);
    buf_free(&b);
}

static void json_string_appends_after_existing_content(void **state)
{
    struct buf b = BUF_INIT;
    (void)state;

    buf_appends(&b, "{\"content\":");
    buf_json_string(&b, "x\ny", 3, BUF_JSON_WIRE);
    buf_appendc(&b, '}');
    assert_string_equal(b.data, "{\"content\":\"x\\ny\"}");
    buf_free(&b);
}

static void json_string_of_only_escapes_fits_the_worst_case(void **state)
{
    struct buf b = BUF_INIT;
    char in[1000];
    (void)state;

    /* Every byte becoming six is the worst case the reservation must cover. */
    memset(in, 0x01, sizeof(in));
    buf_json_string(&b, in, sizeof(in), BUF_JSON_WIRE);
    assert_int_equal(b.len, sizeof(in) * 6 + 2);
    assert_memory_equal(b.data + b.len - 7, "\\u0001\"", 7);
    assert_int_equal(b.data[b.len], '\0');
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(append_grows_past_the_first_allocation_and_keeps_a_terminator),
        cmocka_unit_test(append_copies_embedded_nul_bytes),
        cmocka_unit_test(appends_appendc_and_appendf_concatenate),
        cmocka_unit_test(appendf_of_nothing_still_leaves_a_string),
        cmocka_unit_test(steal_hands_over_the_bytes_and_empties_the_buffer),
        cmocka_unit_test(steal_of_an_empty_buffer_gives_an_empty_string),
        cmocka_unit_test(wire_escapes_the_short_forms_with_two_characters),
        cmocka_unit_test(wire_escapes_other_control_bytes_as_lowercase_u00xx),
        cmocka_unit_test(wire_escapes_every_control_byte_and_nothing_else_below_0x80),
        cmocka_unit_test(wire_keeps_utf8_slash_and_del_verbatim),
        cmocka_unit_test(wire_reads_by_length_and_escapes_embedded_nul),
        cmocka_unit_test(nip01_escapes_exactly_the_seven),
        cmocka_unit_test(nip01_keeps_every_other_byte_verbatim),
        cmocka_unit_test(json_string_appends_after_existing_content),
        cmocka_unit_test(json_string_of_only_escapes_fits_the_worst_case),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
