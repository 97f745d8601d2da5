/* profile.c -- what a kind 0's content says about pictures: its picture and banner URLs, checked before use. */
#include "profile.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "blob.h"
#include "datauri.h"
#include "hex.h"

/* Whether libcurl, which downloads it, parses `url` as http(s) with a host. */
static bool http_with_host(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    bool ok;

    if (u == NULL)
        return false;
    ok = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
         curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
         curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host[0] != '\0' &&
         (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

bool profile_url_is_http(const char *url)
{
    return http_with_host(url);
}

/* A data: URI's bytes, and the name they are known by. */
static void take_data(const char *uri, size_t n, size_t max_bytes, struct profile_url *out)
{
    uint8_t hash[32];
    int r;

    if ((r = datauri_decode(uri, n, max_bytes, &out->data, &out->data_len)) != 0) {
        out->state = r == -EFBIG ? PROFILE_DATA_TOO_BIG : PROFILE_URL_BAD;
        return;
    }
    blob_hash(out->data, out->data_len, hash);
    out->len = sizeof(PROFILE_DATA_PREFIX) - 1 + 64;
    memcpy(out->url, PROFILE_DATA_PREFIX, sizeof(PROFILE_DATA_PREFIX) - 1);
    hex_encode(hash, 32, out->url + sizeof(PROFILE_DATA_PREFIX) - 1);
    out->url[out->len] = '\0';
    out->state = PROFILE_URL_OK;
}

/* A URL is kept and may later be sent in a Location header: no spaces, no control characters. */
static void take_url(json_t *v, size_t max_data_bytes, struct profile_url *out)
{
    const char *url = json_string_value(v);
    size_t n = json_string_length(v);

    out->state = PROFILE_URL_BAD;
    if (memchr(url, '\0', n) != NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)url[i] <= ' ' || url[i] == 0x7f)
            return;
    }
    /* A data: URI has no authority for curl_url() to check, and its length is its picture's. */
    if (n >= 5 && strncasecmp(url, "data:", 5) == 0) {
        take_data(url, n, max_data_bytes, out);
        return;
    }
    /* Checked before anything else reads it, and refused whole: a URL cut short would name another picture. */
    if (n > PROFILE_MAX_URL) {
        out->state = PROFILE_URL_TOO_LONG;
        return;
    }
    if (!http_with_host(url))
        return;
    memcpy(out->url, url, n + 1);
    out->len = n;
    out->state = PROFILE_URL_OK;
}

static bool nonempty_string(const json_t *v)
{
    return json_is_string(v) && json_string_length(v) > 0;
}

int profile_parse(const char *content, size_t len, size_t max_data_bytes, struct profile *out)
{
    json_t *obj = json_loadb(content, len, JSON_ALLOW_NUL, NULL), *v;

    out->picture.state = out->banner.state = PROFILE_URL_ABSENT;
    out->picture.len = out->banner.len = 0;
    out->picture.url[0] = out->banner.url[0] = '\0';
    out->picture.data = out->banner.data = NULL;
    out->picture.data_len = out->banner.data_len = 0;
    if (!json_is_object(obj)) {
        json_decref(obj);
        return -EINVAL;
    }
    v = json_object_get(obj, "picture");
    if (!nonempty_string(v))
        v = json_object_get(obj, "image");
    if (nonempty_string(v))
        take_url(v, max_data_bytes, &out->picture);
    if (nonempty_string(v = json_object_get(obj, "banner")))
        take_url(v, max_data_bytes, &out->banner);
    json_decref(obj);
    return 0;
}

void profile_free(struct profile *p)
{
    free(p->picture.data);
    free(p->banner.data);
    p->picture.data = p->banner.data = NULL;
}
