/* fuzz_url.c -- libFuzzer driver for relay URLs and listen addresses from the configuration. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    struct ws_url u;
    struct sockaddr_storage ss;
    bool wildcard;

    memcpy(s, data, size);
    s[size] = '\0';
    if (url_parse_ws(s, &u) == 0 && (u.host[0] == '\0' || u.port == 0 || u.path[0] != '/'))
        abort();
    (void)url_parse_listen(s, &ss, &wildcard);
    free(s);
    return 0;
}
