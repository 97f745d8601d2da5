/* fuzz_profiles.c -- libFuzzer driver for the body of POST /profiles: JSON, the "pubkeys" array, each key. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "profileapi.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t(*keys)[32];
    size_t n;
    char err[256] = "";
    int r = profileapi_parse_batch((const char *)data, size, &keys, &n, err, sizeof(err));

    if (r == 0) {
        /* Accepted: between one and PROFILEAPI_BATCH_MAX keys, every one of them kept. */
        if (n == 0 || n > PROFILEAPI_BATCH_MAX || keys == NULL)
            abort();
        free(keys);
    } else if (r != -EINVAL || keys != NULL || n != 0 || err[0] == '\0') {
        abort();
    }
    return 0;
}
