/* datauri.c -- data: URIs as profiles inline pictures: base64 only, decoded under a size limit. */
#include "datauri.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"

int datauri_decode(const char *uri, size_t len, size_t max_bytes, uint8_t **out, size_t *outlen)
{
    const char *comma = len >= 5 ? memchr(uri, ',', len) : NULL;
    const char *data;
    size_t n, data_len;
    uint8_t *bytes;

    /* The part before the first comma is "data:", a media type (perhaps with parameters), and ";base64". */
    if (comma == NULL || strncasecmp(uri, "data:", 5) != 0 || comma - uri < 12 ||
        strncasecmp(comma - 7, ";base64", 7) != 0)
        return -EINVAL;
    data = comma + 1;
    data_len = len - (size_t)(data - uri);
    if ((n = base64_decoded_len(data, data_len)) > max_bytes)
        return -EFBIG;
    if (n == 0)
        return -EINVAL;
    if ((bytes = malloc(n)) == NULL)
        abort();
    if (base64_decode(data, data_len, bytes, outlen) != 0) {
        free(bytes);
        return -EINVAL;
    }
    *out = bytes;
    return 0;
}
