/* blobcache.h -- recently served pictures kept in memory, shared by the responses still sending them. */
#ifndef PFP_BLOBCACHE_H
#define PFP_BLOBCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One picture's bytes. Counted references keep it alive while responses send it, even once evicted. */
struct blob_ref {
    uint8_t hash[32];
    char etag[67]; /* "\"<64 hex digits>\"", the strong ETag of these bytes */
    size_t len;
    unsigned refs;
    bool cached; /* still in the cache (not evicted or dropped) */
    struct blob_ref *newer, *older;
    uint8_t data[];
};

struct keymap;

struct blobcache {
    struct keymap *index; /* hash -> its blob_ref */
    size_t bytes, max_bytes;
    struct blob_ref *newest, *oldest;
};

/* Sets up a cache holding at most `max_bytes` of pictures. Loop thread, like everything here. */
void blobcache_init(struct blobcache *c, size_t max_bytes);
void blobcache_free(struct blobcache *c);

/* The picture `hash` with a reference taken (release it with blob_release()), or NULL when it is not cached. */
struct blob_ref *blobcache_get(struct blobcache *c, const uint8_t hash[32]);

/*
 * Copies `data` into a new reference for `hash` and caches it when it fits,
 * evicting the least recently used. Returns the reference, taken once for the
 * caller, whether or not it could be cached.
 */
struct blob_ref *blobcache_put(struct blobcache *c, const uint8_t hash[32], const uint8_t *data, size_t len);

/* Forgets `hash` (a purge); responses still sending it keep their reference. */
void blobcache_drop(struct blobcache *c, const uint8_t hash[32]);

void blob_retain(struct blob_ref *r);
void blob_release(struct blob_ref *r);

#endif
