/* test_base64.c -- standard base64, padded or not, and what it refuses. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

static void decode_ok(const char *in, const char *expect)
{
    uint8_t out[64];
    size_t n = 0;

    assert_true(base64_decoded_len(in, strlen(in)) <= sizeof(out));
    assert_int_equal(base64_decode(in, strlen(in), out, &n), 0);
    assert_int_equal(n, strlen(expect));
    assert_int_equal(n, base64_decoded_len(in, strlen(in)));
    assert_memory_equal(out, expect, n);
}

static void decodes_the_rfc_4648_vectors_padded_or_not(void **state)
{
    (void)state;
    decode_ok("", "");
    decode_ok("Zg==", "f");
    decode_ok("Zg", "f");
    decode_ok("Zm8=", "fo");
    decode_ok("Zm8", "fo");
    decode_ok("Zm9v", "foo");
    decode_ok("Zm9vYg==", "foob");
    decode_ok("Zm9vYg", "foob");
    decode_ok("Zm9vYmE=", "fooba");
    decode_ok("Zm9vYmFy", "foobar");
    decode_ok("Pz8/Pz8+", "\?\?\?\?\?>");
}

static void refuses_what_is_not_standard_base64(void **state)
{
    uint8_t out[64];
    size_t n;
    (void)state;
    const char *bad[] = {"Z",    "Zm9vY",    "Zm9vY===", "Zm=v",  "Zm9v\n", " Zm9v", "Zm9v Zm9v",
                         "Pz8_", "Pz8-Pz8+", "Zg=x",     "Zm9v*", "===",    "Zm\0v"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = i == sizeof(bad) / sizeof(bad[0]) - 1 ? 4 : strlen(bad[i]);
        if (base64_decode(bad[i], len, out, &n) == 0)
            fail_msg("\"%s\" was accepted", bad[i]);
    }
}

/* Past the chunk EVP_DecodeBlock is given at a time, every byte still comes back. */
static void long_inputs_decode_across_chunks(void **state)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t bytes = 200001, chars = (bytes + 2) / 3 * 4, n = 0;
    uint8_t *raw = malloc(bytes), *out = malloc(bytes);
    char *text = malloc(chars);
    (void)state;

    for (size_t i = 0; i < bytes; i++)
        raw[i] = (uint8_t)(i * 7 + 3);
    for (size_t i = 0, o = 0; i < bytes; i += 3) {
        uint32_t v =
            (uint32_t)raw[i] << 16 | (i + 1 < bytes ? (uint32_t)raw[i + 1] << 8 : 0) | (i + 2 < bytes ? raw[i + 2] : 0);
        text[o++] = alphabet[v >> 18 & 63];
        text[o++] = alphabet[v >> 12 & 63];
        text[o++] = i + 1 < bytes ? alphabet[v >> 6 & 63] : '=';
        text[o++] = i + 2 < bytes ? alphabet[v & 63] : '=';
    }
    assert_int_equal(base64_decoded_len(text, chars), bytes);
    assert_int_equal(base64_decode(text, chars, out, &n), 0);
    assert_int_equal(n, bytes);
    assert_memory_equal(out, raw, bytes);
    free(raw);
    free(out);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(decodes_the_rfc_4648_vectors_padded_or_not),
        cmocka_unit_test(refuses_what_is_not_standard_base64),
        cmocka_unit_test(long_inputs_decode_across_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
