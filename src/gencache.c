/* gencache.c -- generated pictures in memory, least recently used first out within a byte budget. */
#include "gencache.h"

#include <h2o/linklist.h>
#include <h2o/memory.h>
#include <stdlib.h>
#include <string.h>

#include "keymap.h"

struct entry {
    struct gencache_entry pub;
    h2o_linklist_t lru; /* most recently used at the front */
    uint8_t key[GENCACHE_KEY];
};

struct gencache {
    struct keymap *map;
    h2o_linklist_t lru;
    size_t bytes, max_bytes;
};

struct gencache *gencache_new(size_t max_bytes)
{
    struct gencache *c = calloc(1, sizeof(*c));

    if (c == NULL)
        abort();
    c->map = keymap_new(GENCACHE_KEY);
    h2o_linklist_init_anchor(&c->lru);
    c->max_bytes = max_bytes;
    return c;
}

static void drop(struct gencache *c, struct entry *e)
{
    keymap_del(c->map, e->key);
    h2o_linklist_unlink(&e->lru);
    c->bytes -= e->pub.len;
    free((void *)e->pub.data);
    free(e);
}

void gencache_free(struct gencache *c)
{
    if (c == NULL)
        return;
    while (!h2o_linklist_is_empty(&c->lru))
        drop(c, H2O_STRUCT_FROM_MEMBER(struct entry, lru, c->lru.next));
    keymap_free(c->map, NULL);
    free(c);
}

const struct gencache_entry *gencache_get(struct gencache *c, const uint8_t key[GENCACHE_KEY])
{
    struct entry *e = keymap_get(c->map, key);

    if (e == NULL)
        return NULL;
    h2o_linklist_unlink(&e->lru);
    h2o_linklist_insert(c->lru.next, &e->lru);
    return &e->pub;
}

void gencache_put(struct gencache *c, const uint8_t key[GENCACHE_KEY], uint8_t *data, size_t len,
                  const char etag[GENCACHE_ETAG])
{
    struct entry *e = keymap_get(c->map, key);

    if (e != NULL)
        drop(c, e);
    if (len > c->max_bytes) {
        free(data);
        return;
    }
    while (c->bytes + len > c->max_bytes)
        drop(c, H2O_STRUCT_FROM_MEMBER(struct entry, lru, c->lru.prev));
    if ((e = calloc(1, sizeof(*e))) == NULL)
        abort();
    e->pub.data = data;
    e->pub.len = len;
    memcpy(e->pub.etag, etag, GENCACHE_ETAG);
    memcpy(e->key, key, GENCACHE_KEY);
    keymap_put(c->map, e->key, e);
    h2o_linklist_insert(c->lru.next, &e->lru);
    c->bytes += len;
}

size_t gencache_count(const struct gencache *c)
{
    return keymap_count(c->map);
}

size_t gencache_bytes(const struct gencache *c)
{
    return c->bytes;
}
