/*
 * nip05.h -- NIP-05 names: "name@domain" (or "domain" for "_@domain"), and
 * the /.well-known/nostr.json document that maps names to pubkeys and pubkeys
 * to relays. Parsing only; fetching is the download machinery's.
 */
#ifndef PFP_NIP05_H
#define PFP_NIP05_H

#include <stddef.h>
#include <stdint.h>

#include "nip65.h"

#define NIP05_NAME_MAX   64
#define NIP05_DOMAIN_MAX 259 /* 253 and ":65535" */
#define NIP05_MAX_RELAYS 16

struct nip05_id {
    char name[NIP05_NAME_MAX + 1];     /* lower case; "_" for a bare domain */
    char domain[NIP05_DOMAIN_MAX + 1]; /* lower case */
};

/*
 * Parses an identifier of `len` bytes. The name is letters, digits, '-', '_'
 * and '.'; the domain is dot-separated labels of letters, digits and '-',
 * and may end in ":port". A bare domain must have a dot, so that other words
 * stay errors. Returns 0, or -EINVAL.
 */
int nip05_parse_id(const char *s, size_t len, struct nip05_id *out);

struct nip05_result {
    uint8_t pubkey[32];
    char relays[NIP05_MAX_RELAYS][NIP65_MAX_URL]; /* the document's relays for the pubkey, canonical */
    size_t nrelays;
};

/*
 * Looks `name` up in a nostr.json document of `len` bytes, names compared
 * without regard to case. Returns 0, -ENOENT when the document has no such
 * name, or -EINVAL when it is malformed (not an object, "names" not an object,
 * the name's value not a 64-digit hex key), with the reason in `err`.
 */
int nip05_parse_doc(const char *doc, size_t len, const char *name, struct nip05_result *out, char *err, size_t errlen);

#endif
