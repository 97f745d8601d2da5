/* nip19.c -- public keys as clients write them: 64 hex characters, npub1... or nprofile1... (NIP-19). */
#include "nip19.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "hex.h"

/*
 * NIP-19 drops BIP-173's 90-character limit because an nprofile carries relay
 * URLs; this cap still bounds the work and the stack buffer for the data part.
 */
#define MAX_INPUT    5000
#define CHECKSUM_LEN 6

#define NOT_A_KEY "not 64 hex characters, an npub or an nprofile"

static const char charset[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/*
 * NIP-19 prefixes that do not hold a public key, named in the error so that a
 * user sees what was pasted; the message never includes the data, which for an
 * nsec is a secret key.
 */
static const char *const other_prefixes[][2] = {
    {"nsec", "unknown bech32 prefix \"nsec\""},     {"note", "unknown bech32 prefix \"note\""},
    {"nevent", "unknown bech32 prefix \"nevent\""}, {"naddr", "unknown bech32 prefix \"naddr\""},
    {"nrelay", "unknown bech32 prefix \"nrelay\""},
};

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static uint32_t polymod_step(uint32_t chk, unsigned v)
{
    static const uint32_t gen[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3};
    uint32_t top = chk >> 25;

    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (int i = 0; i < 5; i++) {
        if ((top >> i) & 1)
            chk ^= gen[i];
    }
    return chk;
}

/* The checksum state after the human-readable part, expanded as BIP-173 says; the checksum covers it in lower case. */
static uint32_t hrp_polymod(const char *hrp, size_t len)
{
    uint32_t chk = 1;

    for (size_t i = 0; i < len; i++)
        chk = polymod_step(chk, (unsigned char)lower(hrp[i]) >> 5);
    chk = polymod_step(chk, 0);
    for (size_t i = 0; i < len; i++)
        chk = polymod_step(chk, (unsigned char)lower(hrp[i]) & 31);
    return chk;
}

static bool hrp_is(const char *s, size_t hrplen, const char *name)
{
    if (hrplen != strlen(name))
        return false;
    for (size_t i = 0; i < hrplen; i++) {
        if (lower(s[i]) != name[i])
            return false;
    }
    return true;
}

/*
 * Checks `s` as BIP-173 bech32, its human-readable part ending at the separator
 * `sep` (which is before `len`), and writes its data part, regrouped from 5-bit
 * to 8-bit values, to `out` (room for len * 5 / 8 bytes).
 */
static int bech32_decode(const char *s, size_t len, size_t sep, uint8_t *out, size_t *outlen, const char **why)
{
    bool has_lower = false, has_upper = false;
    size_t ndata;
    uint32_t chk, acc = 0;
    unsigned bits = 0;

    for (size_t i = 0; i < len; i++) {
        if (s[i] < 33 || s[i] > 126) {
            *why = NOT_A_KEY;
            return -EINVAL;
        }
        has_lower |= s[i] >= 'a' && s[i] <= 'z';
        has_upper |= s[i] >= 'A' && s[i] <= 'Z';
    }
    if (has_lower && has_upper) {
        *why = "mixed case";
        return -EINVAL;
    }
    if (len - sep - 1 < CHECKSUM_LEN) {
        *why = NOT_A_KEY;
        return -EINVAL;
    }
    chk = hrp_polymod(s, sep);
    ndata = len - sep - 1 - CHECKSUM_LEN;
    *outlen = 0;
    for (size_t i = sep + 1; i < len; i++) {
        const char *p = strchr(charset, lower(s[i]));
        if (p == NULL) {
            *why = "character outside the bech32 alphabet";
            return -EINVAL;
        }
        unsigned v = (unsigned)(p - charset);
        chk = polymod_step(chk, v);
        if (i - sep - 1 < ndata) {
            /* Twelve bits are enough: at most seven are left over before five more arrive. */
            acc = ((acc << 5) | v) & 0xfff;
            bits += 5;
            if (bits >= 8) {
                bits -= 8;
                out[(*outlen)++] = (uint8_t)(acc >> bits);
            }
        }
    }
    if (chk != 1) {
        *why = "bad bech32 checksum";
        return -EINVAL;
    }
    /* BIP-173 allows only the zero bits that complete the last byte, fewer than five. */
    if (bits >= 5 || (acc & ((1u << bits) - 1)) != 0) {
        *why = "bad bech32 padding";
        return -EINVAL;
    }
    return 0;
}

/* Writes hrp "1" data checksum with a NUL. Returns the length, or 0 if `outlen` is too small. */
static size_t bech32_encode(const char *hrp, const uint8_t *data, size_t n, char *out, size_t outlen)
{
    size_t hrplen = strlen(hrp), len = hrplen + 1;
    size_t total = len + (n * 8 + 4) / 5 + CHECKSUM_LEN;
    uint32_t chk = hrp_polymod(hrp, hrplen), acc = 0;
    unsigned bits = 0;

    if (outlen <= total)
        return 0;
    memcpy(out, hrp, hrplen);
    out[hrplen] = '1';
    for (size_t i = 0; i < n; i++) {
        acc = ((acc << 8) | data[i]) & 0xfff;
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            chk = polymod_step(chk, (acc >> bits) & 31);
            out[len++] = charset[(acc >> bits) & 31];
        }
    }
    if (bits > 0) {
        chk = polymod_step(chk, (acc << (5 - bits)) & 31);
        out[len++] = charset[(acc << (5 - bits)) & 31];
    }
    for (int i = 0; i < CHECKSUM_LEN; i++)
        chk = polymod_step(chk, 0);
    chk ^= 1;
    for (int i = 0; i < CHECKSUM_LEN; i++)
        out[len++] = charset[(chk >> (5 * (5 - i))) & 31];
    out[len] = '\0';
    return len;
}

/*
 * Finds TLV record 0, the public key, in the data of an nprofile, and the relay records (1) when `relays` is not
 * NULL: those that fit, up to NIP19_MAX_RELAYS; unknown types are skipped.
 */
static int nprofile_pubkey(const uint8_t *p, size_t n, uint8_t out[32], struct nip19_relays *relays, const char **why)
{
    const uint8_t *key = NULL;

    for (size_t i = 0; i < n;) {
        if (n - i < 2 || p[i + 1] > n - i - 2) {
            *why = "truncated nprofile record";
            return -EINVAL;
        }
        if (p[i] == 0) {
            if (p[i + 1] != 32) {
                *why = "an nprofile public key must be 32 bytes";
                return -EINVAL;
            }
            /* Two keys would leave it to chance which profile is fetched. */
            if (key != NULL) {
                *why = "nprofile has two public keys";
                return -EINVAL;
            }
            key = p + i + 2;
        } else if (p[i] == 1 && relays != NULL && relays->n < NIP19_MAX_RELAYS &&
                   memchr(p + i + 2, '\0', p[i + 1]) == NULL) {
            memcpy(relays->urls[relays->n], p + i + 2, p[i + 1]);
            relays->urls[relays->n++][p[i + 1]] = '\0';
        }
        i += 2 + (size_t)p[i + 1];
    }
    if (key == NULL) {
        *why = "nprofile has no public key";
        return -EINVAL;
    }
    memcpy(out, key, 32);
    return 0;
}

static int decode_pubkey(const char *s, size_t len, uint8_t out[32], struct nip19_relays *relays, const char **why)
{
    uint8_t data[MAX_INPUT * 5 / 8];
    size_t sep = len, n;
    bool npub;

    if (len == 64 && hex_decode_any_case(s, len, out, 32) == 0)
        return 0;
    if (len > MAX_INPUT) {
        *why = "longer than 5000 characters";
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '1')
            sep = i;
    }
    if (sep == len) {
        *why = NOT_A_KEY;
        return -EINVAL;
    }
    /*
     * The prefix is looked at before the checksum: a pasted nsec is named as
     * such even when mistyped, and anything else is not taken for a damaged key.
     */
    for (size_t i = 0; i < sizeof(other_prefixes) / sizeof(other_prefixes[0]); i++) {
        if (hrp_is(s, sep, other_prefixes[i][0])) {
            *why = other_prefixes[i][1];
            return -EINVAL;
        }
    }
    npub = hrp_is(s, sep, "npub");
    if (!npub && !hrp_is(s, sep, "nprofile")) {
        *why = NOT_A_KEY;
        return -EINVAL;
    }
    if (bech32_decode(s, len, sep, data, &n, why) != 0)
        return -EINVAL;
    if (!npub)
        return nprofile_pubkey(data, n, out, relays, why);
    if (n != 32) {
        *why = "an npub must hold 32 bytes";
        return -EINVAL;
    }
    memcpy(out, data, 32);
    return 0;
}

int nip19_decode_profile(const char *s, size_t len, uint8_t out[32], struct nip19_relays *relays, char *err,
                         size_t errlen)
{
    const char *why = NULL;
    int r;

    if (relays != NULL)
        relays->n = 0;
    if ((r = decode_pubkey(s, len, out, relays, &why)) != 0)
        snprintf(err, errlen, "%s", why);
    return r;
}

int nip19_decode_pubkey(const char *s, size_t len, uint8_t out[32], char *err, size_t errlen)
{
    return nip19_decode_profile(s, len, out, NULL, err, errlen);
}

size_t nip19_encode_npub(const uint8_t pubkey[32], char *out, size_t outlen)
{
    return bech32_encode("npub", pubkey, 32, out, outlen);
}
