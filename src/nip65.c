/* nip65.c -- relay lists: the "r" tags of a kind 10002, each URL in one canonical form. */
#include "nip65.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

int nip65_canonical(const char *url, char *out, size_t outlen)
{
    struct ws_url u;
    char host[URL_HOST_MAX + 1], port[8] = "";
    bool v6;
    int n;

    if (url_parse_ws(url, &u) != 0 || u.host[0] == '\0')
        return -EINVAL;
    for (size_t i = 0; i <= strlen(u.host); i++)
        host[i] = (char)tolower((unsigned char)u.host[i]);
    v6 = strchr(host, ':') != NULL;
    if (u.port != (u.tls ? 443 : 80))
        snprintf(port, sizeof(port), ":%u", u.port);
    n = snprintf(out, outlen, "%s://%s%s%s%s%s", u.tls ? "wss" : "ws", v6 ? "[" : "", host, v6 ? "]" : "", port,
                 strcmp(u.path, "/") == 0 ? "" : u.path);
    return n < 0 || (size_t)n >= outlen ? -EINVAL : 0;
}

size_t nip65_parse(const json_t *tags, struct nip65_list *out)
{
    size_t i;
    const json_t *tag;

    out->n = 0;
    json_array_foreach(tags, i, tag)
    {
        const char *name = json_string_value(json_array_get(tag, 0)), *url = json_string_value(json_array_get(tag, 1));
        const char *marker = json_string_value(json_array_get(tag, 2));
        bool read = marker == NULL || strcmp(marker, "read") == 0,
             write = marker == NULL || strcmp(marker, "write") == 0;
        char canon[NIP65_MAX_URL];
        size_t k;

        if (name == NULL || strcmp(name, "r") != 0 || url == NULL || (!read && !write) ||
            nip65_canonical(url, canon, sizeof(canon)) != 0)
            continue;
        for (k = 0; k < out->n && strcmp(out->relays[k].url, canon) != 0; k++)
            ;
        if (k == out->n) {
            if (out->n == NIP65_MAX_RELAYS)
                continue;
            memcpy(out->relays[k].url, canon, strlen(canon) + 1);
            out->relays[k].read = out->relays[k].write = false;
            out->n++;
        }
        out->relays[k].read |= read;
        out->relays[k].write |= write;
    }
    return out->n;
}
