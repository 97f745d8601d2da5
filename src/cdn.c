/* cdn.c -- purge requests to a CDN in front, from the cdn_purge_url template. */
#include "cdn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "fetch.h"
#include "hex.h"
#include "log.h"

static const char *const PATHS[] = {"/profile-pic/", "/profile-banner/", "/profile/"};

struct cdn {
    struct cdn_options o;
    struct fetcher fetcher;
    struct cdn_stats stats;
};

bool cdn_valid_url(const char *url)
{
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return false;
    for (const char *p = strchr(url, '{'); p != NULL; p = strchr(p + 1, '{'))
        if (strncmp(p, "{pubkey}", 8) != 0 && strncmp(p, "{path}", 6) != 0)
            return false;
    return true;
}

int cdn_init(struct cdn **out, uv_loop_t *loop, const struct cdn_options *o, char *err, size_t errlen)
{
    /* The CDN is the operator's, named in the configuration: its address may well be a private one. */
    struct fetch_options fo = {
        .max_bytes = 64 << 10,
        .max_bytes_name = "a purge answer's 64 KiB",
        .connect_timeout_ms = 5000,
        .timeout_ms = 15000,
        .guard = {.allow_private = true},
        .no_redirects = true,
        .accept = "*/*",
        .ca_file = o->ca_file,
    };
    struct cdn *c;
    int r;

    *out = NULL;
    if (o->url == NULL || o->url[0] == '\0')
        return 0;
    if ((c = calloc(1, sizeof(*c))) == NULL)
        abort();
    c->o = *o;
    if ((r = fetcher_init(&c->fetcher, loop, &fo, err, errlen)) != 0) {
        fetcher_free(&c->fetcher);
        free(c);
        return r;
    }
    *out = c;
    return 0;
}

static void on_answer(void *data, struct fetch_result *res)
{
    struct cdn *c = data;

    if (res->error == FETCH_OK) {
        c->stats.sent++;
        return;
    }
    c->stats.failed++;
    log_warn("cdn: a %s request failed: %s", c->o.method, res->detail);
}

/* The template with `hex` and `path` in place of their placeholders. */
static void expand(const char *tmpl, const char *hex, const char *path, struct buf *out)
{
    out->len = 0;
    for (const char *p = tmpl; *p != '\0';) {
        if (strncmp(p, "{pubkey}", 8) == 0) {
            buf_appends(out, hex);
            p += 8;
        } else if (strncmp(p, "{path}", 6) == 0) {
            buf_appends(out, path);
            p += 6;
        } else {
            buf_appendc(out, *p++);
        }
    }
    buf_appendc(out, '\0');
}

void cdn_purge(struct cdn *c, const uint8_t pubkey[32])
{
    char hex[65], key[100], path[100];
    const char *headers[] = {key, NULL};
    struct buf url = BUF_INIT;
    size_t n = strstr(c != NULL ? c->o.url : "", "{path}") != NULL ? sizeof(PATHS) / sizeof(PATHS[0]) : 1;

    if (c == NULL)
        return;
    hex_encode(pubkey, 32, hex);
    hex[64] = '\0';
    snprintf(key, sizeof(key), "Surrogate-Key: %s", hex);
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s%s", PATHS[i], hex);
        expand(c->o.url, hex, path, &url);
        fetch_start_with(&c->fetcher, url.data, headers, c->o.method, on_answer, c);
    }
    buf_free(&url);
}

void cdn_stats(const struct cdn *c, struct cdn_stats *out)
{
    if (c != NULL)
        *out = c->stats;
    else
        memset(out, 0, sizeof(*out));
}

void cdn_free(struct cdn *c)
{
    if (c == NULL)
        return;
    fetcher_free_then(&c->fetcher, free, c);
}
