/* nip05.c -- NIP-05 identifiers and nostr.json documents. */
#include "nip05.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "hex.h"
#include "url.h"

static bool name_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.';
}

/* Labels of letters, digits and '-', not starting or ending with '-', each at most 63 long. */
static bool domain_ok(const char *d, size_t len, bool *dotted)
{
    size_t label = 0;

    *dotted = false;
    if (len == 0 || len > 253 || d[0] == '.' || d[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = d[i];
        if (c == '.') {
            if (label == 0 || d[i - 1] == '-')
                return false;
            *dotted = true;
            label = 0;
        } else if (isalnum((unsigned char)c) || (c == '-' && label > 0)) {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return d[len - 1] != '-';
}

int nip05_parse_id(const char *s, size_t len, struct nip05_id *out)
{
    const char *at = memchr(s, '@', len);
    const char *domain = at != NULL ? at + 1 : s;
    size_t nlen = at != NULL ? (size_t)(at - s) : 1, dlen = len - (size_t)(domain - s), hlen = dlen;
    const char *colon = memchr(domain, ':', dlen);
    uint16_t port;
    bool dotted;

    /* A port is not in NIP-05, but costs nothing and lets a name live on a test server or an odd port. */
    if (colon != NULL) {
        hlen = (size_t)(colon - domain);
        if (url_parse_port(colon + 1, dlen - hlen - 1, &port) != 0 || port == 0)
            return -EINVAL;
    }
    if (!domain_ok(domain, hlen, &dotted) || (at == NULL && !dotted) || nlen == 0 || nlen > NIP05_NAME_MAX ||
        dlen > NIP05_DOMAIN_MAX)
        return -EINVAL;
    if (at == NULL) {
        strcpy(out->name, "_");
    } else {
        for (size_t i = 0; i < nlen; i++) {
            if (!name_char(s[i]))
                return -EINVAL;
            out->name[i] = (char)tolower((unsigned char)s[i]);
        }
        out->name[nlen] = '\0';
    }
    for (size_t i = 0; i < dlen; i++)
        out->domain[i] = (char)tolower((unsigned char)domain[i]);
    out->domain[dlen] = '\0';
    return 0;
}

int nip05_parse_doc(const char *doc, size_t len, const char *name, struct nip05_result *out, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(doc, len, JSON_REJECT_DUPLICATES, &jerr), *names, *value = NULL, *v, *relays;
    const char *key, *hex;
    char pk[65];
    int r = 0;

    out->nrelays = 0;
    if (root == NULL || !json_is_object(root)) {
        r = err_set(err, errlen, -EINVAL, "malformed document: %s", root == NULL ? jerr.text : "not a JSON object");
        goto out;
    }
    if (!json_is_object(names = json_object_get(root, "names"))) {
        r = err_set(err, errlen, -EINVAL, "malformed document: \"names\" is not an object");
        goto out;
    }
    json_object_foreach(names, key, v)
    {
        if (strcasecmp(key, name) == 0) {
            value = v;
            break;
        }
    }
    if (value == NULL) {
        r = err_set(err, errlen, -ENOENT, "no such name: %s", name);
        goto out;
    }
    if ((hex = json_string_value(value)) == NULL || strlen(hex) != 64 ||
        hex_decode_any_case(hex, 64, out->pubkey, 32) != 0) {
        r = err_set(err, errlen, -EINVAL, "malformed document: the name's key is not 64 hex digits");
        goto out;
    }
    /* Relays are listed under the key in lower-case hex, as NIP-05 writes keys. */
    hex_encode(out->pubkey, 32, pk);
    pk[64] = '\0';
    relays = json_object_get(json_object_get(root, "relays"), pk);
    if (relays == NULL)
        relays = json_object_get(json_object_get(root, "relays"), hex);
    if (json_is_array(relays)) {
        size_t i;
        json_array_foreach(relays, i, v)
        {
            const char *url = json_string_value(v);
            if (out->nrelays < NIP05_MAX_RELAYS && url != NULL &&
                nip65_canonical(url, out->relays[out->nrelays], sizeof(out->relays[0])) == 0)
                out->nrelays++;
        }
    }
out:
    json_decref(root);
    return r;
}
