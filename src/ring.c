/* ring.c -- nginx's consistent-hash ring: its points, their order, and the lookup of a key. */
#include "ring.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct point {
    uint32_t hash;
    size_t server;
};

struct ring {
    struct point *points;
    size_t n;
};

static uint32_t crc_table[256];

static void crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t ring_crc32(uint32_t crc, const void *data, size_t len)
{
    const uint8_t *p = data;

    if (crc_table[1] == 0)
        crc_table_init();
    crc = ~crc;
    while (len-- > 0)
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static int cmp_points(const void *a, const void *b)
{
    const struct point *x = a, *y = b;

    return x->hash < y->hash ? -1 : x->hash > y->hash ? 1 : 0;
}

/*
 * As nginx splits a server's name: the port is the digits after the last ':',
 * if all that follows it is digits; "unix:" sockets have a path and no port.
 */
static void split_name(const char *name, const char **host, size_t *hlen, const char **port, size_t *plen)
{
    size_t len = strlen(name);

    *host = name;
    *hlen = len;
    *port = NULL;
    *plen = 0;
    if (len >= 5 && strncasecmp(name, "unix:", 5) == 0) {
        *host = name + 5;
        *hlen = len - 5;
        return;
    }
    for (size_t j = 0; j < len; j++) {
        char c = name[len - j - 1];
        if (c == ':') {
            *hlen = len - j - 1;
            *port = name + len - j;
            *plen = j;
            return;
        }
        if (c < '0' || c > '9')
            return;
    }
}

struct ring *ring_new(const char *const *servers, const unsigned *weights, size_t n)
{
    struct ring *r;
    size_t total = 0, i, j;

    for (i = 0; i < n; i++) {
        if (weights[i] == 0)
            return NULL;
        total += (size_t)weights[i] * 160;
    }
    if (n == 0 || (r = calloc(1, sizeof(*r))) == NULL || (r->points = malloc(total * sizeof(*r->points))) == NULL) {
        if (n != 0)
            abort();
        return NULL;
    }
    for (i = 0; i < n; i++) {
        const char *host, *port;
        size_t hlen, plen;
        uint32_t base, prev = 0;

        /* crc32(HOST \0 PORT PREV_HASH), compatible with Cache::Memcached::Fast as nginx says. */
        split_name(servers[i], &host, &hlen, &port, &plen);
        base = ring_crc32(0, host, hlen);
        base = ring_crc32(base, "", 1);
        base = ring_crc32(base, port, plen);
        for (j = 0; j < (size_t)weights[i] * 160; j++) {
            /* The previous point's hash, in the little-endian byte order nginx hashes it in. */
            uint8_t le[4] = {(uint8_t)prev, (uint8_t)(prev >> 8), (uint8_t)(prev >> 16), (uint8_t)(prev >> 24)};
            uint32_t h = ring_crc32(base, le, 4);
            r->points[r->n++] = (struct point){h, i};
            prev = h;
        }
    }
    /* nginx sorts with its own qsort and keeps the first of equal hashes; ties cannot be ordered otherwise. */
    qsort(r->points, r->n, sizeof(*r->points), cmp_points);
    for (i = 0, j = 1; j < r->n; j++)
        if (r->points[i].hash != r->points[j].hash)
            r->points[++i] = r->points[j];
    r->n = i + 1;
    return r;
}

void ring_free(struct ring *r)
{
    if (r != NULL)
        free(r->points);
    free(r);
}

void ring_shares(const struct ring *r, double *shares, size_t n)
{
    memset(shares, 0, n * sizeof(*shares));
    /* A point owns the hashes from just above the one before it up to its own; the first, those past the last. */
    for (size_t i = 0; i < r->n; i++) {
        uint64_t from = i > 0 ? r->points[i - 1].hash : r->points[r->n - 1].hash, to = r->points[i].hash;
        uint64_t span = i > 0 ? to - from : to + ((uint64_t)1 << 32) - from;
        shares[r->points[i].server] += (double)span / (double)((uint64_t)1 << 32);
    }
}

size_t ring_owner(const struct ring *r, const char *key, size_t len)
{
    uint32_t hash = ring_crc32(0, key, len);
    size_t i = 0, j = r->n;

    while (i < j) {
        size_t k = (i + j) / 2;
        if (hash > r->points[k].hash)
            i = k + 1;
        else if (hash < r->points[k].hash)
            j = k;
        else
            return r->points[k].server;
    }
    return r->points[i % r->n].server;
}
