/* fuzz_follows.c -- libFuzzer driver for the follows of a contact list (kind 3): its distinct "p" tags. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A hint is read whole, so that the sanitizer catches one that is not a string. */
static void check_hint(void *ctx, const uint8_t pubkey[32], const char *url)
{
    volatile size_t len = strlen(url);
    (void)ctx;
    (void)pubkey;
    (void)len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t(*out)[32];
    size_t limit, n;

    if (size < 1)
        return 0;
    /* The first byte is the limit the request asked for, so that the cut-off is reached too. */
    limit = data[0];
    if ((out = malloc((limit + 1) * 32)) == NULL)
        abort();
    n = admin_follows_of((const char *)data + 1, size - 1, limit, out, check_hint, NULL);
    if (n > limit)
        abort();
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < i; j++) {
            if (memcmp(out[i], out[j], 32) == 0)
                abort();
        }
    }
    free(out);
    return 0;
}
