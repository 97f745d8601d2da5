/* url.c -- parsing of ws:// and wss:// URLs and of listen addresses. */
#include "url.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

int url_parse_port(const char *s, size_t len, uint16_t *port)
{
    unsigned long v = 0;

    if (len == 0 || len > 5)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return -EINVAL;
    *port = (uint16_t)v;
    return 0;
}

static bool host_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_';
}

int url_parse_ws(const char *s, struct ws_url *out)
{
    const char *p, *host, *host_end, *port = NULL, *path;
    size_t host_len;

    if (strncasecmp(s, "wss://", 6) == 0) {
        out->tls = true;
        p = s + 6;
    } else if (strncasecmp(s, "ws://", 5) == 0) {
        out->tls = false;
        p = s + 5;
    } else {
        return -EINVAL;
    }
    for (const char *c = s; *c != '\0'; c++) {
        if ((unsigned char)*c <= ' ' || *c == 0x7f || *c == '#')
            return -EINVAL;
    }

    path = p + strcspn(p, "/?");
    if (memchr(p, '@', (size_t)(path - p)) != NULL)
        return -EINVAL;

    if (*p == '[') {
        host = p + 1;
        host_end = memchr(host, ']', (size_t)(path - host));
        if (host_end == NULL || host_end == host)
            return -EINVAL;
        for (const char *c = host; c < host_end; c++) {
            if (!(host_char_ok(*c) || *c == ':'))
                return -EINVAL;
        }
        if (host_end + 1 < path) {
            if (host_end[1] != ':')
                return -EINVAL;
            port = host_end + 2;
        }
    } else {
        host = p;
        host_end = memchr(p, ':', (size_t)(path - p));
        if (host_end != NULL)
            port = host_end + 1;
        else
            host_end = path;
        for (const char *c = host; c < host_end; c++) {
            if (!host_char_ok(*c))
                return -EINVAL;
        }
    }

    host_len = (size_t)(host_end - host);
    if (host_len == 0 || host_len > URL_HOST_MAX)
        return -EINVAL;
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';

    if (port != NULL) {
        /* A relay cannot be reached on port 0. */
        if (url_parse_port(port, (size_t)(path - port), &out->port) != 0 || out->port == 0)
            return -EINVAL;
    } else {
        out->port = out->tls ? 443 : 80;
    }

    if (*path == '\0') {
        strcpy(out->path, "/");
    } else if (*path == '?') {
        if (strlen(path) + 1 > URL_PATH_MAX)
            return -EINVAL;
        out->path[0] = '/';
        strcpy(out->path + 1, path);
    } else {
        if (strlen(path) > URL_PATH_MAX)
            return -EINVAL;
        strcpy(out->path, path);
    }
    return 0;
}

int url_parse_listen(const char *s, struct sockaddr_storage *addr, bool *wildcard)
{
    char host[64];
    uint16_t port;

    memset(addr, 0, sizeof(*addr));
    *wildcard = false;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - s - 1) >= sizeof(host))
            return -EINVAL;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        if (url_parse_port(close + 2, strlen(close + 2), &port) != 0)
            return -EINVAL;
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)addr;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        return inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1 ? 0 : -EINVAL;
    }

    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof(host) || memchr(s, ':', (size_t)(colon - s)) != NULL)
        return -EINVAL;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    if (url_parse_port(colon + 1, strlen(colon + 1), &port) != 0)
        return -EINVAL;

    if (host[0] == '\0') {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)addr;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        sin6->sin6_addr = in6addr_any;
        *wildcard = true;
        return 0;
    }
    struct sockaddr_in *sin = (struct sockaddr_in *)addr;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    if (strcmp(host, "localhost") == 0) {
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return 0;
    }
    return inet_pton(AF_INET, host, &sin->sin_addr) == 1 ? 0 : -EINVAL;
}
