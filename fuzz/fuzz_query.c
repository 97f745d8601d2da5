/* fuzz_query.c -- libFuzzer driver for query strings: parameters found between '&'s, and counts parsed from them. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"limit", "", "l", "limit=", "a&b"};
    h2o_iovec_t query = h2o_iovec_init(data, size), v;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t count = 0;

        if (!http_query_find(query, names[i], &v))
            continue;
        /* The value lies inside the query, within one parameter. */
        if (v.base < query.base || v.base + v.len > query.base + query.len || memchr(v.base, '&', v.len) != NULL)
            abort();
        if (http_parse_count(v, 5000, &count) == 0 && (count < 1 || count > 5000))
            abort();
    }
    return 0;
}
