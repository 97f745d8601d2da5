/* fuzz_profiles.c -- libFuzzer driver for the body of POST /profiles: JSON, the "pubkeys" array, each key. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "profileapi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A hint is read whole, so that the sanitizer catches one that is not a string; only accepted bodies give any. */
static void check_hint(void *ctx, const uint8_t pubkey[32], const char *url)
{
    volatile size_t len = strlen(url);
    (void)pubkey;
    (void)len;
    *(unsigned *)ctx += 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t(*keys)[32];
    size_t n;
    char err[256] = "";
    unsigned hints = 0;
    int r = profileapi_parse_batch((const char *)data, size, &keys, &n, check_hint, &hints, err, sizeof(err));

    if (r == 0) {
        /* Accepted: between one and PROFILEAPI_BATCH_MAX keys, every one of them kept. */
        if (n == 0 || n > PROFILEAPI_BATCH_MAX || keys == NULL)
            abort();
        free(keys);
    } else if (r != -EINVAL || keys != NULL || n != 0 || err[0] == '\0' || hints != 0) {
        abort();
    }
    return 0;
}
