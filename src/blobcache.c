/* blobcache.c -- recently served pictures kept in memory, shared by the responses still sending them. */
#include "blobcache.h"

#include <stdlib.h>
#include <string.h>

#include "hex.h"

static size_t slot(const struct blobcache *c, const uint8_t hash[32])
{
    uint64_t h;
    memcpy(&h, hash, 8);
    return (size_t)(h & (c->nbuckets - 1));
}

void blobcache_init(struct blobcache *c, size_t max_bytes)
{
    memset(c, 0, sizeof(*c));
    c->nbuckets = 1024;
    if ((c->buckets = calloc(c->nbuckets, sizeof(*c->buckets))) == NULL)
        abort();
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
    for (struct blob_ref **p = &c->buckets[slot(c, r->hash)]; *p != NULL; p = &(*p)->hnext) {
        if (*p == r) {
            *p = r->hnext;
            break;
        }
    }
    unlink_lru(c, r);
    r->cached = false;
    c->bytes -= r->len;
    c->count--;
    blob_release(r);
}

static void grow(struct blobcache *c)
{
    struct blob_ref **old = c->buckets;
    size_t nold = c->nbuckets;

    c->nbuckets *= 2;
    if ((c->buckets = calloc(c->nbuckets, sizeof(*c->buckets))) == NULL)
        abort();
    for (size_t i = 0; i < nold; i++) {
        for (struct blob_ref *r = old[i], *next; r != NULL; r = next) {
            size_t s = slot(c, r->hash);
            next = r->hnext;
            r->hnext = c->buckets[s];
            c->buckets[s] = r;
        }
    }
    free(old);
}

struct blob_ref *blobcache_get(struct blobcache *c, const uint8_t hash[32])
{
    for (struct blob_ref *r = c->buckets[slot(c, hash)]; r != NULL; r = r->hnext) {
        if (memcmp(r->hash, hash, 32) == 0) {
            unlink_lru(c, r);
            push_newest(c, r);
            r->refs++;
            return r;
        }
    }
    return NULL;
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
    if (c->count >= c->nbuckets)
        grow(c);
    r->hnext = c->buckets[slot(c, hash)];
    c->buckets[slot(c, hash)] = r;
    push_newest(c, r);
    r->cached = true;
    r->refs++;
    c->bytes += len;
    c->count++;
    return r;
}

void blobcache_drop(struct blobcache *c, const uint8_t hash[32])
{
    for (struct blob_ref *r = c->buckets[slot(c, hash)]; r != NULL; r = r->hnext) {
        if (memcmp(r->hash, hash, 32) == 0) {
            evict(c, r);
            return;
        }
    }
}

void blobcache_free(struct blobcache *c)
{
    while (c->oldest != NULL)
        evict(c, c->oldest);
    free(c->buckets);
    c->buckets = NULL;
}
