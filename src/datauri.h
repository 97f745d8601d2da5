/* datauri.h -- data: URIs (RFC 2397) as profiles inline pictures: base64 only, decoded under a size limit. */
#ifndef PFP_DATAURI_H
#define PFP_DATAURI_H

#include <stddef.h>
#include <stdint.h>

/*
 * Decodes the `len` bytes at `uri`, a data: URI with base64 data
 * ("data:[<mediatype>];base64,<data>", the scheme and "base64" in any case;
 * the media type is not trusted, the bytes say what they are). On success,
 * `*out` holds the `*outlen` bytes (free() them) and 0 is returned. Otherwise
 * nothing is allocated and the result is:
 *   -EINVAL  not a data: URI with base64 data, no data, or data that is not base64;
 *   -EFBIG   more than `max_bytes` bytes once decoded (judged before decoding).
 */
int datauri_decode(const char *uri, size_t len, size_t max_bytes, uint8_t **out, size_t *outlen);

#endif
