/* keymap.c -- a hash map from fixed-length binary keys (pubkeys, hashes) to pointers. */
#include "keymap.h"

#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct node {
    struct node *next;
    uint64_t hash; /* kept so that growing does not hash again and most mismatches skip memcmp */
    void *value;
    unsigned char key[];
};

struct keymap {
    struct node **buckets;
    size_t nbuckets, count, keylen;
};

/*
 * Clients choose many of the keys (REQ authors, ids in URLs), so a bucket must
 * not be predictable from the key: keys are placed by SipHash-2-4 under a key
 * drawn once per process from the OS.
 */
static uint64_t sip_k0, sip_k1;
static pthread_once_t sip_once = PTHREAD_ONCE_INIT;

static void sip_seed(void)
{
    uint64_t k[2];
    size_t got = 0;

    while (got < sizeof(k)) {
        ssize_t n = getrandom((unsigned char *)k + got, sizeof(k) - got, 0);
        if (n < 0 && errno != EINTR)
            abort();
        if (n > 0)
            got += (size_t)n;
    }
    sip_k0 = k[0];
    sip_k1 = k[1];
}

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define SIPROUND                                                                                                       \
    do {                                                                                                               \
        v0 += v1;                                                                                                      \
        v1 = rotl(v1, 13);                                                                                             \
        v1 ^= v0;                                                                                                      \
        v0 = rotl(v0, 32);                                                                                             \
        v2 += v3;                                                                                                      \
        v3 = rotl(v3, 16);                                                                                             \
        v3 ^= v2;                                                                                                      \
        v0 += v3;                                                                                                      \
        v3 = rotl(v3, 21);                                                                                             \
        v3 ^= v0;                                                                                                      \
        v2 += v1;                                                                                                      \
        v1 = rotl(v1, 17);                                                                                             \
        v1 ^= v2;                                                                                                      \
        v2 = rotl(v2, 32);                                                                                             \
    } while (0)

/* SipHash-2-4 of `p` (`n` bytes) under the key (k0, k1), the key and words read little-endian. */
static uint64_t siphash24(uint64_t k0, uint64_t k1, const unsigned char *p, size_t n)
{
    uint64_t v0 = k0 ^ 0x736f6d6570736575ull, v1 = k1 ^ 0x646f72616e646f6dull;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ull, v3 = k1 ^ 0x7465646279746573ull;
    uint64_t m, last = (uint64_t)n << 56;
    size_t i;

    for (i = 0; i + 8 <= n; i += 8) {
        memcpy(&m, p + i, 8);
        m = le64toh(m);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t j = 0; i + j < n; j++)
        last |= (uint64_t)p[i + j] << (8 * j);
    v3 ^= last;
    SIPROUND;
    SIPROUND;
    v0 ^= last;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static uint64_t hash(const struct keymap *m, const void *key)
{
    return siphash24(sip_k0, sip_k1, key, m->keylen);
}

static size_t slot(const struct keymap *m, uint64_t h)
{
    return (size_t)(h & (m->nbuckets - 1));
}

struct keymap *keymap_new(size_t keylen)
{
    struct keymap *m = calloc(1, sizeof(*m));

    pthread_once(&sip_once, sip_seed);
    if (m == NULL || keylen < 8 || keylen > KEYMAP_MAX_KEY || (m->buckets = calloc(64, sizeof(*m->buckets))) == NULL)
        abort();
    m->nbuckets = 64;
    m->keylen = keylen;
    return m;
}

void *keymap_get(const struct keymap *m, const void *key)
{
    uint64_t h = hash(m, key);

    for (struct node *n = m->buckets[slot(m, h)]; n != NULL; n = n->next) {
        if (n->hash == h && memcmp(n->key, key, m->keylen) == 0)
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
            size_t s = slot(m, n->hash);
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
    n->hash = hash(m, key);
    s = slot(m, n->hash);
    memcpy(n->key, key, m->keylen);
    n->value = value;
    n->next = m->buckets[s];
    m->buckets[s] = n;
    m->count++;
}

void *keymap_del(struct keymap *m, const void *key)
{
    uint64_t h = hash(m, key);

    for (struct node **p = &m->buckets[slot(m, h)]; *p != NULL; p = &(*p)->next) {
        if ((*p)->hash == h && memcmp((*p)->key, key, m->keylen) == 0) {
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
