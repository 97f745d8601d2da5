/* url.h -- parsing of the ws:// and wss:// relay URLs the configuration names. */
#ifndef PFP_URL_H
#define PFP_URL_H

#include <stdbool.h>
#include <stdint.h>

#define URL_HOST_MAX 253
#define URL_PATH_MAX 1024

struct ws_url {
    bool tls;                    /* wss:// */
    char host[URL_HOST_MAX + 1]; /* without the brackets of an IPv6 literal */
    uint16_t port;               /* 80 or 443 when the URL gives none */
    char path[URL_PATH_MAX + 1]; /* "/" when the URL gives none; includes any query */
};

/*
 * Parses "ws://host[:port][/path]" or "wss://...". The scheme is matched without
 * regard to case; user info, fragments, whitespace and control characters are
 * refused. Returns 0, or -EINVAL.
 */
int url_parse_ws(const char *s, struct ws_url *out);

#endif
