/*
 * hints.h -- relays a pubkey's events were said to be on (an nprofile's relays, a NIP-05 document's, a contact
 * list's p tags): a few per pubkey, the newest replacing the oldest, and a bounded number of pubkeys, the oldest
 * forgotten first. Memory only; the URLs are kept as given (callers make them canonical).
 */
#ifndef PFP_HINTS_H
#define PFP_HINTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Hints kept per pubkey. */
#define HINTS_PER_PUBKEY 4

struct hints;

/* A set of hints for at most `max_pubkeys` pubkeys (at least 1). Aborts when memory fails. */
struct hints *hints_new(size_t max_pubkeys);

/* Remembers `url` for `pubkey`. Returns whether it was not known for it already. */
bool hints_add(struct hints *h, const uint8_t pubkey[32], const char *url);

/* The hints of `pubkey`, oldest first, in `*urls` (valid until the next hints_add()). Returns how many. */
size_t hints_get(const struct hints *h, const uint8_t pubkey[32], const char *const **urls);

void hints_free(struct hints *h);

#endif
