/* fuzz_negentropy.c -- libFuzzer driver for NIP-77 messages from the other side, as responder and initiator. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "negentropy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct neg_storage storage;

/* A set of a few hundred records, some sharing timestamps, made once. */
static void make_storage(void)
{
    for (uint32_t i = 0; i < 300; i++) {
        uint8_t id[32];
        for (int k = 0; k < 32; k++)
            id[k] = (uint8_t)((i * 2654435761u) >> (k % 24)) ^ (uint8_t)k;
        memcpy(id, &i, sizeof(i));
        neg_storage_add(&storage, 1700000000 + i / 3, id);
    }
    if (neg_storage_seal(&storage) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct neg responder, initiator;
    struct buf out = BUF_INIT, have = BUF_INIT, need = BUF_INIT, first = BUF_INIT;
    char err[128];
    /* An exact copy, so that a read past the end is caught. */
    uint8_t *msg = malloc(size ? size : 1);

    if (storage.n == 0)
        make_storage();
    memcpy(msg, data, size);
    if (neg_init(&responder, &storage, size % 2 ? 4096 : 0) != 0 || neg_init(&initiator, &storage, 0) != 0)
        abort();
    if (neg_reconcile(&responder, msg, size, &out, NULL, NULL, err, sizeof(err)) == 0 && out.len == 0)
        abort();
    neg_initiate(&initiator, &first);
    out.len = 0;
    if (neg_reconcile(&initiator, msg, size, &out, &have, &need, err, sizeof(err)) == 0 &&
        (have.len % 32 != 0 || need.len % 32 != 0))
        abort();
    buf_free(&out);
    buf_free(&have);
    buf_free(&need);
    buf_free(&first);
    free(msg);
    return 0;
}
