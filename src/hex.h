/* hex.h -- hexadecimal: lowercase as Nostr writes ids, keys and signatures; either case for pasted keys. */
#ifndef PFP_HEX_H
#define PFP_HEX_H

#include <stddef.h>
#include <stdint.h>

/*
 * Decodes exactly 2*n lowercase hex characters of `s` (slen must be 2*n) into n bytes. Returns 0 or -EINVAL;
 * on -EINVAL, `out` holds garbage.
 */
int hex_decode(const char *s, size_t slen, uint8_t *out, size_t n);

/* The same, accepting upper-case digits too (public keys as people paste them). */
int hex_decode_any_case(const char *s, size_t slen, uint8_t *out, size_t n);

/* Writes 2*n lowercase hex characters to `out`, without a terminating NUL. */
void hex_encode(const uint8_t *in, size_t n, char *out);

#endif
