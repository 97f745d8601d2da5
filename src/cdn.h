/*
 * cdn.h -- telling a CDN in front (Varnish, a purge API) that a pubkey's answers changed: one HTTP request per
 * change, from a template, with the pubkey in a Surrogate-Key header as the answers carry it.
 */
#ifndef PFP_CDN_H
#define PFP_CDN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct cdn_options {
    /*
     * The URL to send to: "{pubkey}" is replaced by the lowercase hex pubkey and "{path}" by each of its paths
     * ("/profile-pic/<hex>", "/profile-banner/<hex>", "/profile/<hex>"), one request for each; without "{path}",
     * one request. Outlives the cdn.
     */
    const char *url;
    const char *method; /* "BAN" or "PURGE" (static) */
    const char *ca_file;
};

struct cdn_stats {
    uint64_t sent;   /* requests answered 2xx */
    uint64_t failed; /* ... not answered, or answered otherwise */
};

struct cdn;

/* NULL when `o->url` is "" (no CDN). Returns 0, or a negative errno with `err` saying why. */
int cdn_init(struct cdn **out, uv_loop_t *loop, const struct cdn_options *o, char *err, size_t errlen);

/* Whether `url` is a usable cdn_purge_url: http:// or https://, and every "{" one of the two placeholders. */
bool cdn_valid_url(const char *url);

/* `pubkey`'s picture or banner changed, or was purged: the CDN drops what it holds of it. Accepts NULL. */
void cdn_purge(struct cdn *c, const uint8_t pubkey[32]);

void cdn_stats(const struct cdn *c, struct cdn_stats *out);

/* Requests under way are abandoned. Accepts NULL. */
void cdn_free(struct cdn *c);

#endif
