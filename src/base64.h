/* base64.h -- standard base64 (RFC 4648, section 4) decoding, padded or not. */
#ifndef PFP_BASE64_H
#define PFP_BASE64_H

#include <stddef.h>
#include <stdint.h>

/*
 * How many bytes base64_decode() writes for the `len` characters at `in`: exact
 * when they are valid base64, an upper bound otherwise. Reads only the trailing
 * '=' padding, so a caller can refuse an input too large before decoding it.
 */
size_t base64_decoded_len(const char *in, size_t len);

/*
 * Decodes `len` characters of standard base64 (A-Z a-z 0-9 + /), with or without
 * up to two '=' of padding, into `out`, which has room for
 * base64_decoded_len(in, len) bytes, and sets `*outlen`. Whitespace, the URL-safe
 * alphabet and '=' anywhere but at the end are refused. Returns 0, or -EINVAL
 * (then `out` holds garbage).
 */
int base64_decode(const char *in, size_t len, uint8_t *out, size_t *outlen);

#endif
