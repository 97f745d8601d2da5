/* hex.c -- hexadecimal: lowercase as Nostr writes it, either case for keys people paste. */
#include "hex.h"

#include <errno.h>
#include <stdbool.h>

/*
 * Each character's value plus one, 0 for a non-digit: decoding looks every
 * character up and checks once at the end, so keys and ids (random digits)
 * cost no mispredicted branches.
 */
#define DECIMAL                                                                                                        \
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8, ['8'] = 9, ['9'] = 10
#define LETTERS(a) [(a)] = 11, [(a) + 1] = 12, [(a) + 2] = 13, [(a) + 3] = 14, [(a) + 4] = 15, [(a) + 5] = 16
static const uint8_t lower_table[256] = {DECIMAL, LETTERS('a')};
static const uint8_t any_table[256] = {DECIMAL, LETTERS('a'), LETTERS('A')};

static int decode(const uint8_t table[256], const char *s, size_t slen, uint8_t *out, size_t n)
{
    bool bad = false;

    if (slen != 2 * n)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned hi = table[(unsigned char)s[2 * i]], lo = table[(unsigned char)s[2 * i + 1]];
        bad |= (hi == 0) | (lo == 0);
        out[i] = (uint8_t)((hi - 1) << 4 | (lo - 1));
    }
    return bad ? -EINVAL : 0;
}

int hex_decode(const char *s, size_t slen, uint8_t *out, size_t n)
{
    return decode(lower_table, s, slen, out, n);
}

int hex_decode_any_case(const char *s, size_t slen, uint8_t *out, size_t n)
{
    return decode(any_table, s, slen, out, n);
}

void hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
}
