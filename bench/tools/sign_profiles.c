/* sign_profiles.c -- writes N signed kind 0 events, one per new key, whose picture is URL_TEMPLATE with the
 * index modulo DISTINCT in place of %d; JSON lines on stdout, for benchmarks that need many profiles fast. */
#include <jansson.h>
#include <openssl/rand.h>
#include <secp256k1.h>
#include <secp256k1_extrakeys.h>
#include <secp256k1_schnorrsig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "event.h"

int main(int argc, char **argv)
{
    secp256k1_context *ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
    long n, distinct;
    long long now = (long long)time(NULL);

    if (argc != 4 || (n = atol(argv[1])) <= 0 || (distinct = atol(argv[3])) <= 0) {
        fprintf(stderr, "usage: sign_profiles N URL_TEMPLATE DISTINCT\n");
        return 2;
    }
    for (long i = 0; i < n; i++) {
        unsigned char seckey[32], aux[32];
        secp256k1_keypair kp;
        secp256k1_xonly_pubkey xpk;
        struct event ev;
        char url[512], content[700];
        size_t len;
        uint8_t *rec;
        struct event_view v;

        memset(&ev, 0, sizeof(ev));
        do
            RAND_bytes(seckey, sizeof(seckey));
        while (!secp256k1_keypair_create(ctx, &kp, seckey) || !secp256k1_keypair_xonly_pub(ctx, &xpk, NULL, &kp) ||
               !secp256k1_xonly_pubkey_serialize(ctx, ev.pubkey, &xpk));
        snprintf(url, sizeof(url), argv[2], (int)(i % distinct));
        snprintf(content, sizeof(content), "{\"name\":\"user%ld\",\"picture\":\"%s\"}", i, url);
        ev.created_at = now - 3600;
        ev.kind = 0;
        ev.tags = json_array();
        ev.content = content;
        ev.content_len = strlen(content);
        event_compute_id(&ev, BUF_JSON_NIP01, ev.id);
        RAND_bytes(aux, sizeof(aux));
        if (!secp256k1_schnorrsig_sign32(ctx, ev.sig, ev.id, &kp, aux))
            return 1;
        rec = event_record_build(&ev, &len);
        event_view_decode(ev.id, rec, len, &v);
        fwrite(v.json, 1, v.json_len, stdout);
        fputc('\n', stdout);
        free(rec);
        json_decref(ev.tags);
    }
    secp256k1_context_destroy(ctx);
    return 0;
}
