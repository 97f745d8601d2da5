/* fuzz_nip19.c -- libFuzzer driver for public keys as hex, npub and nprofile (with its relays), and the npub round
 * trip. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nip19.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t key[32], again[32];
    char why[NIP19_ERR_LEN] = "";
    char npub[64];
    struct nip19_relays relays;

    if (nip19_decode_profile((const char *)data, size, key, &relays, why, sizeof(why)) != 0) {
        /* Every refusal must say why, or the client gets an empty error. */
        if (why[0] == '\0')
            abort();
        return 0;
    }
    /* Relay hints are strings that fit, and there are no more of them than there is room for. */
    if (relays.n > NIP19_MAX_RELAYS)
        abort();
    for (size_t i = 0; i < relays.n; i++) {
        if (memchr(relays.urls[i], '\0', NIP19_MAX_URL) == NULL)
            abort();
    }
    if (nip19_encode_npub(key, npub, sizeof(npub)) != 63 || strlen(npub) != 63)
        abort();
    if (nip19_decode_pubkey(npub, 63, again, why, sizeof(why)) != 0 || memcmp(key, again, 32) != 0)
        abort();
    return 0;
}
