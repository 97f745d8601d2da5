/* keymap.c -- a hash map from fixed-length binary keys (pubkeys, hashes) to pointers. */
#include "keymap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct node {
    struct node *next;
    void *value;
    unsigned char key[];
};

struct keymap {
    struct node **buckets;
    size_t nbuckets, count, keylen;
};

/* Keys are pubkeys and hashes: their first and last bytes are as good as any hash of them. */
static size_t slot(const struct keymap *m, const void *key)
{
    uint64_t a, b;
    memcpy(&a, key, 8);
    memcpy(&b, (const unsigned char *)key + m->keylen - 8, 8);
    return (size_t)((a ^ b * 0x9e3779b97f4a7c15ull) & (m->nbuckets - 1));
}

struct keymap *keymap_new(size_t keylen)
{
    struct keymap *m = calloc(1, sizeof(*m));

    if (m == NULL || keylen < 8 || keylen > KEYMAP_MAX_KEY || (m->buckets = calloc(64, sizeof(*m->buckets))) == NULL)
        abort();
    m->nbuckets = 64;
    m->keylen = keylen;
    return m;
}

void *keymap_get(const struct keymap *m, const void *key)
{
    for (struct node *n = m->buckets[slot(m, key)]; n != NULL; n = n->next) {
        if (memcmp(n->key, key, m->keylen) == 0)
            return n->value;
    }
    return NULL;
}

static void grow(struct keymap *m)
{
    struct node **old = m->buckets;
    size_t nold = m->nbuckets;

    m->nbuckets *= 2;
    if ((m->buckets = calloc(m->nbuckets, sizeof(*m->buckets))) == NULL)
        abort();
    for (size_t i = 0; i < nold; i++) {
        for (struct node *n = old[i], *next; n != NULL; n = next) {
            size_t s = slot(m, n->key);
            next = n->next;
            n->next = m->buckets[s];
            m->buckets[s] = n;
        }
    }
    free(old);
}

void keymap_put(struct keymap *m, const void *key, void *value)
{
    struct node *n = malloc(sizeof(*n) + m->keylen);
    size_t s;

    if (n == NULL)
        abort();
    if (m->count >= m->nbuckets)
        grow(m);
    s = slot(m, key);
    memcpy(n->key, key, m->keylen);
    n->value = value;
    n->next = m->buckets[s];
    m->buckets[s] = n;
    m->count++;
}

void *keymap_del(struct keymap *m, const void *key)
{
    for (struct node **p = &m->buckets[slot(m, key)]; *p != NULL; p = &(*p)->next) {
        if (memcmp((*p)->key, key, m->keylen) == 0) {
            struct node *n = *p;
            void *v = n->value;
            *p = n->next;
            free(n);
            m->count--;
            return v;
        }
    }
    return NULL;
}

size_t keymap_count(const struct keymap *m)
{
    return m->count;
}

void keymap_free(struct keymap *m, void (*free_value)(void *))
{
    for (size_t i = 0; i < m->nbuckets; i++) {
        for (struct node *n = m->buckets[i], *next; n != NULL; n = next) {
            next = n->next;
            if (free_value != NULL)
                free_value(n->value);
            free(n);
        }
    }
    free(m->buckets);
    free(m);
}
