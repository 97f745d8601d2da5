/* blobcache.c -- recently served pictures kept in memory, shared by the responses still sending them. */
#include "blobcache.h"

#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include "keymap.h"

void blobcache_init(struct blobcache *c, size_t max_bytes)
{
    memset(c, 0, sizeof(*c));
    c->index = keymap_new(32);
    c->max_bytes = max_bytes;
}

void blob_retain(struct blob_ref *r)
{
    r->refs++;
}

void blob_release(struct blob_ref *r)
{
    if (--r->refs == 0)
        free(r);
}

static void unlink_lru(struct blobcache *c, struct blob_ref *r)
{
    if (r->newer != NULL)
        r->newer->older = r->older;
    else
        c->newest = r->older;
    if (r->older != NULL)
        r->older->newer = r->newer;
    else
        c->oldest = r->newer;
    r->newer = r->older = NULL;
}

static void push_newest(struct blobcache *c, struct blob_ref *r)
{
    r->older = c->newest;
    r->newer = NULL;
    if (c->newest != NULL)
        c->newest->newer = r;
    else
        c->oldest = r;
    c->newest = r;
}

/* Takes `r` out of the cache; the cache's own reference goes with it. */
static void evict(struct blobcache *c, struct blob_ref *r)
{
    keymap_del(c->index, r->hash);
    unlink_lru(c, r);
    r->cached = false;
    c->bytes -= r->len;
    blob_release(r);
}

struct blob_ref *blobcache_get(struct blobcache *c, const uint8_t hash[32])
{
    struct blob_ref *r = keymap_get(c->index, hash);

    if (r != NULL) {
        unlink_lru(c, r);
        push_newest(c, r);
        r->refs++;
    }
    return r;
}

struct blob_ref *blobcache_put(struct blobcache *c, const uint8_t hash[32], const uint8_t *data, size_t len)
{
    struct blob_ref *r = blobcache_get(c, hash);

    if (r != NULL)
        return r;
    if ((r = malloc(sizeof(*r) + len)) == NULL)
        abort();
    memset(r, 0, sizeof(*r));
    memcpy(r->hash, hash, 32);
    r->etag[0] = '"';
    hex_encode(hash, 32, r->etag + 1);
    r->etag[65] = '"';
    r->etag[66] = '\0';
    r->len = len;
    memcpy(r->data, data, len);
    r->refs = 1;
    if (len > c->max_bytes)
        return r;

    while (c->bytes + len > c->max_bytes && c->oldest != NULL)
        evict(c, c->oldest);
    keymap_put(c->index, hash, r);
    push_newest(c, r);
    r->cached = true;
    r->refs++;
    c->bytes += len;
    return r;
}

void blobcache_drop(struct blobcache *c, const uint8_t hash[32])
{
    struct blob_ref *r = keymap_get(c->index, hash);

    if (r != NULL)
        evict(c, r);
}

void blobcache_free(struct blobcache *c)
{
    while (c->oldest != NULL)
        evict(c, c->oldest);
    if (c->index != NULL)
        keymap_free(c->index, NULL);
    c->index = NULL;
}
