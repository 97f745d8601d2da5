/* hex.h -- lowercase hexadecimal, as Nostr writes ids, keys and signatures. */
#ifndef PFP_HEX_H
#define PFP_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Decodes exactly 2*n lowercase hex characters of `s` (slen must be 2*n) into n bytes. Returns 0 or -EINVAL. */
int hex_decode(const char *s, size_t slen, uint8_t *out, size_t n);

/* Writes 2*n lowercase hex characters to `out`, without a terminating NUL. */
void hex_encode(const uint8_t *in, size_t n, char *out);

#endif
