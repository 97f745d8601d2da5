/* test_hex.c -- strict lowercase hex decoding and encoding of ids, keys and signatures. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
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
        cmocka_unit_test(encode_writes_lowercase_without_terminator_and_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
