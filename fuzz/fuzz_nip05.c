/* fuzz_nip05.c -- libFuzzer driver for NIP-05 identifiers and nostr.json documents (what a domain serves). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nip05.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact copy, so that a read past the end is caught. */
    char *s = malloc(size ? size : 1), err[200];
    struct nip05_id id;
    struct nip05_result r;

    memcpy(s, data, size);
    if (nip05_parse_id(s, size, &id) == 0 && (id.name[0] == '\0' || strlen(id.domain) == 0))
        abort();
    if (nip05_parse_doc(s, size, "_", &r, err, sizeof(err)) == 0 && r.nrelays > NIP05_MAX_RELAYS)
        abort();
    free(s);
    return 0;
}
