/* cluster.c -- the ring of the cluster's nodes, the owner of each key, and the canonical URLs of keyed routes. */
#include "cluster.h"

#include <stdlib.h>
#include <string.h>

#include "hex.h"
#include "http.h"
#include "ring.h"

struct cluster {
    struct ring *ring;
    char **nodes;
    double *shares;
    size_t n, self;
    struct cluster_stats stats;
};

struct cluster *cluster_new(const struct cluster_options *o)
{
    struct cluster *c;
    unsigned *weights;

    if (o->nnodes == 0)
        return NULL;
    if ((c = calloc(1, sizeof(*c))) == NULL || (c->nodes = calloc(o->nnodes, sizeof(*c->nodes))) == NULL ||
        (weights = malloc(o->nnodes * sizeof(*weights))) == NULL)
        abort();
    c->n = o->nnodes;
    for (size_t i = 0; i < o->nnodes; i++) {
        if ((c->nodes[i] = strdup(o->nodes[i])) == NULL)
            abort();
        weights[i] = 1;
        if (strcmp(o->nodes[i], o->self) == 0)
            c->self = i;
    }
    c->ring = ring_new((const char *const *)c->nodes, weights, c->n);
    free(weights);
    if ((c->shares = malloc(c->n * sizeof(*c->shares))) == NULL)
        abort();
    ring_shares(c->ring, c->shares, c->n);
    return c;
}

void cluster_free(struct cluster *c)
{
    if (c == NULL)
        return;
    ring_free(c->ring);
    for (size_t i = 0; i < c->n; i++)
        free(c->nodes[i]);
    free(c->nodes);
    free(c->shares);
    free(c);
}

size_t cluster_size(const struct cluster *c)
{
    return c->n;
}

size_t cluster_self(const struct cluster *c)
{
    return c->self;
}

const char *cluster_node(const struct cluster *c, size_t i)
{
    return c->nodes[i];
}

double cluster_share(const struct cluster *c, size_t i)
{
    return c->shares[i];
}

size_t cluster_owner(const struct cluster *c, const uint8_t pubkey[32])
{
    char hex[65];

    hex_encode(pubkey, 32, hex);
    return ring_owner(c->ring, hex, 64);
}

bool cluster_route(struct cluster *c, h2o_req_t *req, const uint8_t pubkey[32])
{
    size_t end = req->query_at != SIZE_MAX ? req->query_at : req->path.len, start = end;
    const char *owner;
    char hex[65];

    if (c == NULL)
        return false;
    hex_encode(pubkey, 32, hex);
    hex[64] = '\0';
    while (start > 0 && req->path.base[start - 1] != '/')
        start--;
    if (end - start != 64 || memcmp(req->path.base + start, hex, 64) != 0) {
        /* The balancer hashes the lowercase hex; any other spelling of the key lands anywhere. */
        size_t tail = req->path.len - end;
        char *loc = h2o_mem_alloc_pool(&req->pool, start + 64 + tail);

        memcpy(loc, req->path.base, start);
        memcpy(loc + start, hex, 64);
        memcpy(loc + start + 64, req->path.base + end, tail);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, loc, start + 64 + tail);
        c->stats.redirected++;
        http_reply_error(req, 307, "the canonical URL names the key in lowercase hex");
        return true;
    }
    owner = c->nodes[cluster_owner(c, pubkey)];
    owner == c->nodes[c->self] ? c->stats.owned++ : c->stats.not_owned++;
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-pfp-owner"), 0, NULL, owner, strlen(owner));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-served-by"), 0, NULL, c->nodes[c->self],
                          strlen(c->nodes[c->self]));
    return false;
}

bool cluster_valid_node(const char *s)
{
    const char *colon = strrchr(s, ':');
    long port = 0;

    if (colon == NULL || colon == s || colon[1] == '\0' || strlen(colon + 1) > 5)
        return false;
    for (const char *p = colon + 1; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return false;
        port = port * 10 + (*p - '0');
    }
    /* A bracketed IPv6 address, or a name or IPv4 address without ':' or spaces. */
    if (s[0] == '[' ? colon[-1] != ']' : memchr(s, ':', (size_t)(colon - s)) != NULL)
        return false;
    for (const char *p = s; p < colon; p++)
        if ((unsigned char)*p <= ' ' || *p == '/' || *p == ';')
            return false;
    return port >= 1 && port <= 65535;
}

void cluster_stats(const struct cluster *c, struct cluster_stats *out)
{
    if (c == NULL)
        memset(out, 0, sizeof(*out));
    else
        *out = c->stats;
}
