/* test_hex.c -- strict hex decoding (lowercase, or either case for pasted keys) and encoding. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "hex.h"

static void decode_accepts_exactly_two_lowercase_digits_per_byte(void **state)
{
    uint8_t out[4];
    const uint8_t expect[4] = {0x01, 0xab, 0xcd, 0xef};
    (void)state;

    assert_int_equal(hex_decode("01abcdef", 8, out, 4), 0);
    assert_memory_equal(out, expect, 4);
    assert_int_equal(hex_decode("00ff", 4, out, 2), 0);
    assert_int_equal(out[0], 0x00);
    assert_int_equal(out[1], 0xff);
}

static void decode_of_zero_bytes_accepts_only_the_empty_string(void **state)
{
    uint8_t out[1];
    (void)state;

    assert_int_equal(hex_decode("", 0, out, 0), 0);
    assert_int_equal(hex_decode("00", 2, out, 0), -EINVAL);
}

static void decode_refuses_uppercase(void **state)
{
    uint8_t out[2];
    (void)state;

    /* Nostr ids and keys are lowercase; accepting "AB" would give one event two spellings. */
    assert_int_equal(hex_decode("AB", 2, out, 1), -EINVAL);
    assert_int_equal(hex_decode("aB", 2, out, 1), -EINVAL);
    assert_int_equal(hex_decode("00Ff", 4, out, 2), -EINVAL);
}

static void decode_refuses_a_length_other_than_twice_the_bytes(void **state)
{
    uint8_t out[32];
    char s[66];
    (void)state;

    memset(s, 'a', sizeof(s));
    assert_int_equal(hex_decode(s, 64, out, 32), 0);
    assert_int_equal(hex_decode(s, 63, out, 32), -EINVAL);
    assert_int_equal(hex_decode(s, 65, out, 32), -EINVAL);
    assert_int_equal(hex_decode(s, 66, out, 32), -EINVAL);
    assert_int_equal(hex_decode(s, 62, out, 32), -EINVAL);
    assert_int_equal(hex_decode("abc", 3, out, 1), -EINVAL);
}

static void decode_refuses_characters_that_are_not_hex(void **state)
{
    uint8_t out[1];
    const char *bad[] = {"0g", "g0", "-1", " 1", "1 ", "0x", "/0", ":0", "`0", "@0"};
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (hex_decode(bad[i], 2, out, 1) != -EINVAL)
            fail_msg("\"%s\" was accepted", bad[i]);
    }
    /* An embedded NUL is a character like any other, and not a hex digit. */
    assert_int_equal(hex_decode("0\0", 2, out, 1), -EINVAL);
}

/* Every byte value, in either place of a pair, against the digits each decoder accepts. */
static void decoders_accept_exactly_their_digits_among_all_byte_values(void **state)
{
    static const char lower[] = "0123456789abcdef", upper[] = "0123456789ABCDEF";
    (void)state;

    for (int c = 0; c < 256; c++) {
        int value = -1;
        for (int d = 0; d < 16; d++) {
            if (c == lower[d] || c == upper[d])
                value = d;
        }
        bool is_lower = value >= 0 && c == lower[value];
        char hi[2] = {(char)c, '7'}, lo[2] = {'7', (char)c};
        uint8_t out;

        assert_int_equal(hex_decode(hi, 2, &out, 1), is_lower ? 0 : -EINVAL);
        if (is_lower)
            assert_int_equal(out, value << 4 | 7);
        assert_int_equal(hex_decode(lo, 2, &out, 1), is_lower ? 0 : -EINVAL);
        if (is_lower)
            assert_int_equal(out, 0x70 | value);
        assert_int_equal(hex_decode_any_case(hi, 2, &out, 1), value >= 0 ? 0 : -EINVAL);
        if (value >= 0)
            assert_int_equal(out, value << 4 | 7);
        assert_int_equal(hex_decode_any_case(lo, 2, &out, 1), value >= 0 ? 0 : -EINVAL);
        if (value >= 0)
            assert_int_equal(out, 0x70 | value);
    }
}

static void any_case_decoding_reads_mixed_case_keys(void **state)
{
    uint8_t a[4], b[4];
    (void)state;

    assert_int_equal(hex_decode_any_case("01ABcdEf", 8, a, 4), 0);
    assert_int_equal(hex_decode("01abcdef", 8, b, 4), 0);
    assert_memory_equal(a, b, 4);
    assert_int_equal(hex_decode_any_case("01ABcdE", 7, a, 4), -EINVAL);
    assert_int_equal(hex_decode_any_case("01ABcdEg", 8, a, 4), -EINVAL);
}

static void encode_writes_lowercase_without_terminator_and_round_trips(void **state)
{
    uint8_t in[256], back[256];
    char hex[513];
    (void)state;

    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)i;
    memset(hex, '#', sizeof(hex));
    hex_encode(in, sizeof(in), hex);
    assert_memory_equal(hex, "000102", 6);
    assert_memory_equal(hex + 2 * 0xab, "abac", 4);
    assert_memory_equal(hex + 510, "ff", 2);
    assert_int_equal(hex[512], '#');
    assert_int_equal(hex_decode(hex, 512, back, sizeof(back)), 0);
    assert_memory_equal(back, in, sizeof(in));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decode_accepts_exactly_two_lowercase_digits_per_byte),
        cmocka_unit_test(decode_of_zero_bytes_accepts_only_the_empty_string),
        cmocka_unit_test(decode_refuses_uppercase),
        cmocka_unit_test(decode_refuses_a_length_other_than_twice_the_bytes),
        cmocka_unit_test(decode_refuses_characters_that_are_not_hex),
        cmocka_unit_test(decoders_accept_exactly_their_digits_among_all_byte_values),
        cmocka_unit_test(any_case_decoding_reads_mixed_case_keys),
        cmocka_unit_test(encode_writes_lowercase_without_terminator_and_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
