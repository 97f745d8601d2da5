/* fuzz_variant.c -- libFuzzer driver for picture query strings and Accept headers: a query, a newline, an Accept. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "variant.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum variant_format NEG[] = {VARIANT_AVIF, VARIANT_WEBP};
    const struct variant_options o = {&VARIANT_AVATAR_LADDER, 200, 1024, NEG, 2};
    const char *nl = memchr(data, '\n', size);
    size_t qlen = nl != NULL ? (size_t)(nl - (const char *)data) : size;
    /* Copies of exactly their length, so that a read past either end is caught. */
    char *query = malloc(qlen + 1), *accept = malloc(size - qlen + 1);
    size_t alen = nl != NULL ? size - qlen - 1 : 0;
    struct variant v;
    char err[200];
    bool on_ladder = false;

    memcpy(query, data, qlen);
    memcpy(accept, data + size - alen, alen);
    if (variant_parse(&o, h2o_iovec_init(query, qlen), h2o_iovec_init(accept, alen), &v, err, sizeof(err)) == 0) {
        for (size_t i = 0; i < VARIANT_AVATAR_LADDER.n; i++)
            on_ladder = on_ladder || v.size == VARIANT_AVATAR_LADDER.steps[i];
        if (!(on_ladder || v.size == o.default_size) ||
            (v.animated && v.format != VARIANT_WEBP && v.format != VARIANT_GIF))
            abort();
    } else if (err[0] == '\0') {
        abort();
    }
    (void)variant_accepts(h2o_iovec_init(accept, alen), "image/webp");
    free(query);
    free(accept);
    return 0;
}
