/* fuzz_datauri.c -- libFuzzer driver for data: URIs, the pictures a profile inlines: decoded under a limit. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "datauri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A limit of its own in the first two bytes, so that inputs probe both sides of it. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t max, len, got = 0;
    const char *uri;
    uint8_t *out = NULL;
    int r;

    if (size < 2)
        return 0;
    max = (size_t)data[0] << 8 | data[1];
    uri = (const char *)data + 2;
    len = size - 2;
    r = datauri_decode(uri, len, max, &out, &got);
    if (r == 0) {
        /* Whatever was decoded fits the limit and is what base64 says the data part holds. */
        const char *comma = memchr(uri, ',', len);
        if (out == NULL || got == 0 || got > max || comma == NULL ||
            got != base64_decoded_len(comma + 1, len - (size_t)(comma + 1 - uri)))
            abort();
        free(out);
    } else if ((r != -EINVAL && r != -EFBIG) || out != NULL) {
        abort();
    }
    return 0;
}
