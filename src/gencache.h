/*
 * gencache.h -- generated pictures (identicons, blanks) kept in memory, least
 * recently used first out within a byte budget, so that a URL asked again is
 * answered without drawing and encoding again (AVIF takes a tenth of a second).
 * Loop thread only.
 */
#ifndef PFP_GENCACHE_H
#define PFP_GENCACHE_H

#include <stddef.h>
#include <stdint.h>

/* What a generated picture is made from: the pubkey, the kind, the format and the size, packed by the caller. */
#define GENCACHE_KEY 40

/* The strong ETag of the bytes, quoted: "\"" + 64 hex digits + "\"" and a NUL. */
#define GENCACHE_ETAG 67

struct gencache_entry {
    const uint8_t *data;
    size_t len;
    char etag[GENCACHE_ETAG];
};

struct gencache;

/* A cache of at most `max_bytes` of pictures (0: none are kept). Aborts when memory fails. */
struct gencache *gencache_new(size_t max_bytes);

/* Frees the cache and every picture in it. Accepts NULL. */
void gencache_free(struct gencache *c);

/* The picture stored under `key`, now the most recently used, or NULL. Valid until the next gencache_put(). */
const struct gencache_entry *gencache_get(struct gencache *c, const uint8_t key[GENCACHE_KEY]);

/*
 * Keeps `data` (malloc()ed; the cache owns it from now on, and frees it at once
 * when it alone is larger than the budget) under `key`, replacing what was
 * there, and evicts the least recently used pictures until the budget holds.
 */
void gencache_put(struct gencache *c, const uint8_t key[GENCACHE_KEY], uint8_t *data, size_t len,
                  const char etag[GENCACHE_ETAG]);

/* Pictures held, and their bytes. */
size_t gencache_count(const struct gencache *c);
size_t gencache_bytes(const struct gencache *c);

#endif
