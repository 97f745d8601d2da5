/* url.c -- parsing of ws:// and wss:// URLs. */
#include "url.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

static int parse_port(const char *s, size_t len, uint16_t *port)
{
    unsigned long v = 0;

    if (len == 0 || len > 5)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
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
        if (parse_port(port, (size_t)(path - port), &out->port) != 0)
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
