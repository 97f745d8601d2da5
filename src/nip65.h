/*
 * nip65.h -- a pubkey's relay list (NIP-65, kind 10002): the relays it writes
 * to, where clients following the outbox model look for its events, and those
 * it reads from. URLs are checked and written one way, so that one relay has
 * one name.
 */
#ifndef PFP_NIP65_H
#define PFP_NIP65_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "url.h"

/* Relays kept from one list: more than any client writes to; the rest are ignored. */
#define NIP65_MAX_RELAYS 32
/* The longest relay URL kept, with its NUL: relay URLs are short, and a list names few. */
#define NIP65_MAX_URL 512

struct nip65_relay {
    char url[NIP65_MAX_URL]; /* canonical: scheme and host in lower case, no default port, no lone "/" */
    bool read, write;
};

struct nip65_list {
    struct nip65_relay relays[NIP65_MAX_RELAYS];
    size_t n;
};

/*
 * Reads the "r" tags of a kind 10002 (`tags`, the event's array of arrays):
 * ["r", url] is both read and write, ["r", url, "read"] or "write" one of them.
 * Tags with a URL that is not ws:// or wss:// (or longer than NIP65_MAX_URL),
 * or another marker, are skipped;
 * the same relay named twice is kept once with both markers. Returns how many
 * relays `out` holds.
 */
size_t nip65_parse(const json_t *tags, struct nip65_list *out);

/* Writes the canonical form of a ws:// or wss:// URL into `out`. Returns 0, or -EINVAL when it is not one. */
int nip65_canonical(const char *url, char *out, size_t outlen);

#endif
