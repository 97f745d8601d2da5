/* fuzz_nip65.c -- libFuzzer driver for the tags of a kind 10002 relay list, as JSON. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nip65.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *tags = json_loadb((const char *)data, size, 0, NULL);
    struct nip65_list l;

    if (tags == NULL)
        return 0;
    if (nip65_parse(tags, &l) > NIP65_MAX_RELAYS)
        abort();
    for (size_t i = 0; i < l.n; i++) {
        char again[NIP65_MAX_URL];
        /* The canonical form is a fixed point, and every relay kept is read or write. */
        if (nip65_canonical(l.relays[i].url, again, sizeof(again)) != 0 || strcmp(again, l.relays[i].url) != 0 ||
            !(l.relays[i].read || l.relays[i].write))
            abort();
    }
    json_decref(tags);
    return 0;
}
