/* base64.c -- standard base64 decoding, padded or not, through OpenSSL's block decoder. */
#include "base64.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <string.h>

/* Whole quadruples handed to EVP_DecodeBlock at a time: its lengths are ints. */
#define CHUNK 65536

static size_t unpadded_len(const char *in, size_t len)
{
    for (int pads = 0; pads < 2 && len > 0 && in[len - 1] == '='; pads++)
        len--;
    return len;
}

size_t base64_decoded_len(const char *in, size_t len)
{
    size_t n = unpadded_len(in, len);

    return n / 4 * 3 + (n % 4 != 0 ? n % 4 - 1 : 0);
}

static bool is_base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

int base64_decode(const char *in, size_t len, uint8_t *out, size_t *outlen)
{
    size_t n = unpadded_len(in, len), whole, done = 0;

    /* EVP_DecodeBlock would also skip surrounding whitespace and take '=' inside: the alphabet is checked first. */
    for (size_t i = 0; i < n; i++) {
        if (!is_base64_char(in[i]))
            return -EINVAL;
    }
    if (n % 4 == 1)
        return -EINVAL;
    whole = n - n % 4;
    while (done < whole) {
        size_t chunk = whole - done < CHUNK ? whole - done : CHUNK;
        if (EVP_DecodeBlock(out + done / 4 * 3, (const unsigned char *)in + done, (int)chunk) < 0)
            return -EINVAL;
        done += chunk;
    }
    /* The last two or three characters, padded to a quadruple whose '=' decode as bytes that are cut off. */
    if (n % 4 != 0) {
        unsigned char quad[4] = {'=', '=', '=', '='}, bytes[3];
        memcpy(quad, in + whole, n % 4);
        if (EVP_DecodeBlock(bytes, quad, 4) < 0)
            return -EINVAL;
        memcpy(out + whole / 4 * 3, bytes, n % 4 - 1);
    }
    *outlen = base64_decoded_len(in, len);
    return 0;
}
