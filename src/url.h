/* url.h -- parsing of the addresses the configuration names: ws:// and wss:// relay URLs, listen addresses. */
#ifndef PFP_URL_H
#define PFP_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

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

/*
 * Parses the `len` bytes of a port: 1 to 5 decimal digits, a value from 0 to
 * 65535 (each caller decides whether 0 makes sense). The one port syntax of both
 * relay URLs and listen addresses. Returns 0, or -EINVAL.
 */
int url_parse_port(const char *s, size_t len, uint16_t *port);

/*
 * Parses a listen address: ":8080", "127.0.0.1:8080", "[::1]:8080",
 * "localhost:8080". An empty host means every interface; `*wildcard` is set then
 * and `addr` holds the IPv6 any-address. Port 0 asks the kernel for a free port.
 * Returns 0, or -EINVAL.
 */
int url_parse_listen(const char *s, struct sockaddr_storage *addr, bool *wildcard);

#endif
