/* nip19.h -- public keys as clients write them: 64 hex characters, npub1... or nprofile1... (NIP-19). */
#ifndef PFP_NIP19_H
#define PFP_NIP19_H

#include <stddef.h>
#include <stdint.h>

/*
 * Decodes a public key given as 64 hexadecimal characters (either case), a
 * bech32 "npub" or a bech32 "nprofile" (whose TLV record 0 is the key). The
 * bech32 checksum is verified. Returns 0, or -EINVAL with `err` saying what is
 * wrong, in a phrase fit for an error message (NIP19_ERR_LEN bytes hold any).
 */
#define NIP19_ERR_LEN 64
int nip19_decode_pubkey(const char *s, size_t len, uint8_t out[32], char *err, size_t errlen);

/* The relays an nprofile names (TLV records 1), as hints of where its events are. */
#define NIP19_MAX_RELAYS 4
#define NIP19_MAX_URL    256
struct nip19_relays {
    char urls[NIP19_MAX_RELAYS][NIP19_MAX_URL]; /* as written: the first that fit, unchecked */
    size_t n;
};

/* nip19_decode_pubkey(), and an nprofile's relays into `relays` (none for other forms). */
int nip19_decode_profile(const char *s, size_t len, uint8_t out[32], struct nip19_relays *relays, char *err,
                         size_t errlen);

/* Writes "npub1..." for `pubkey` into `out` (at least 64 bytes) with a NUL. Returns the length. */
size_t nip19_encode_npub(const uint8_t pubkey[32], char *out, size_t outlen);

#endif
