/* fuzz_nip98.c -- libFuzzer driver for NIP-98 Authorization headers: the scheme, the base64, the event, its tags. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "base64.h"
#include "hex.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1700000000

/* The public key of the secret key 0x01 * 32, which signs the seeds in fuzz/corpus/nip98. */
#define ADMIN_PUBKEY "1b84c5567b126440995d3ed5aaba0565d71e1834604819ff9c17f5e9d5dd078f"

static struct auth au;

static void set_up(void)
{
    static uint8_t key[1][32];
    struct auth_options o = {"", (const uint8_t(*)[32])key, 1, {"admin_token", "admin_pubkeys"}};

    if (hex_decode(ADMIN_PUBKEY, 64, key[0], 32) != 0)
        abort();
    auth_init(&au, &o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    const struct nip98_request rq = {h2o_iovec_init(H2O_STRLIT("https://relay.example/batch-cache?limit=5")),
                                     h2o_iovec_init(H2O_STRLIT("http://relay.example/batch-cache?limit=5")),
                                     h2o_iovec_init(H2O_STRLIT("POST")), h2o_iovec_init(H2O_STRLIT("{}"))};
    char err[512] = "";
    uint8_t *out;
    size_t n = SIZE_MAX;
    int r;

    if (!ready) {
        set_up();
        ready = 1;
    }

    /* A refusal always says why, on one line, for the 401 the client gets. */
    r = nip98_check(&au, h2o_iovec_init(data, size), &rq, NOW, err, sizeof(err));
    if (r != 0 && (r != -EACCES || err[0] == '\0' || strchr(err, '\n') != NULL))
        abort();

    /* The decoder on its own: what it accepts fits the size it announced. */
    if ((out = malloc(base64_decoded_len((const char *)data, size) + 1)) == NULL)
        abort();
    if (base64_decode((const char *)data, size, out, &n) == 0 && n != base64_decoded_len((const char *)data, size))
        abort();
    free(out);
    return 0;
}
