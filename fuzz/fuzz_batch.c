/* fuzz_batch.c -- libFuzzer driver for the body of POST /batch-cache: JSON, the "pubkeys" array, each key or name. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct admin_batch b;
    /* A trailing space, nothing to JSON, parses the body as a relay without a NIP-05 resolver would. */
    bool names = size == 0 || data[size - 1] != ' ';
    int status = admin_parse_batch((const char *)data, size, names, &b);

    if (status != b.status || (status != 0 && status != 400 && status != 413))
        abort();
    if (status == 0) {
        /* Accepted: between one and ADMIN_BATCH_MAX keys, and no refusal left behind. */
        if (b.n == 0 || b.n > ADMIN_BATCH_MAX || b.keys == NULL || b.invalid != NULL || b.error[0] != '\0' ||
            b.nnames > ADMIN_BATCH_NAMES_MAX || b.nnames > b.n)
            abort();
        /* Each name resolved to a pubkey of its own, the first's also one the body may name as a key. */
        for (size_t i = 0; i < b.nnames; i++) {
            if (b.names[i].slot >= b.n || b.names[i].given[0] == '\0')
                abort();
            memset(b.keys[b.names[i].slot], 0, 32);
            memcpy(b.keys[b.names[i].slot], &i, sizeof(i));
        }
        admin_batch_settle(&b);
        if (b.n == 0)
            abort();
        /* Duplicates count once: neighbours at least are distinct (a full check would be quadratic). */
        for (size_t i = 1; i < b.n; i++) {
            if (memcmp(b.keys[i - 1], b.keys[i], 32) == 0)
                abort();
        }
    } else if (b.error[0] == '\0' || memchr(b.error, '\0', sizeof(b.error)) == NULL) {
        abort();
    }
    admin_batch_free(&b);
    return 0;
}
