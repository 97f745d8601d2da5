/* cluster.c -- the ring of the cluster's nodes, the owner of each key, and the canonical URLs of keyed routes. */
#include "cluster.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "clock.h"
#include "fetch.h"
#include "hex.h"
#include "http.h"
#include "log.h"
#include "ring.h"

/* After an owner could not be reached, its keys are answered here for this long before it is asked again. */
#define DOWN_MS 5000

/*
 * What an owner's answer passes on, named as h2o names headers. The rest (X-Pfp-Owner, X-Served-By, Surrogate-Key,
 * the picture routes' own) this node has added already, as it would to its own answer.
 */
static const char *const KEPT[] = {"content-type", "content-length", "cache-control", "etag",        "last-modified",
                                   "vary",         "x-cache",        "location",      "retry-after", NULL};

struct cluster {
    struct cluster_options o;
    struct ring *ring;
    char **nodes;
    double *shares;
    uint64_t *down_until; /* by node: clock_mono_ns() / 1e6 before which it is not asked */
    size_t n, self;
    bool started, closing;
    struct fetcher fetcher;
    char **allowed; /* the guard's networks: the nodes' addresses */
    size_t nallowed;
    h2o_linklist_t forwards;
    struct cluster_stats stats;
};

/* A request waiting for its key's owner. */
struct forward {
    h2o_linklist_t link;
    struct cluster *c;
    struct http_hold *hold;
    struct fetch *fetch;
    size_t node;
    bool head;
    bool any; /* asking each other node in turn, until one has it */
    cluster_local_fn local;
    size_t ctxlen;
    uint8_t ctx[];
};

struct cluster *cluster_new(const struct cluster_options *o)
{
    struct cluster *c;
    unsigned *weights;

    if (o->nnodes == 0)
        return NULL;
    if ((c = calloc(1, sizeof(*c))) == NULL || (c->nodes = calloc(o->nnodes, sizeof(*c->nodes))) == NULL ||
        (c->down_until = calloc(o->nnodes, sizeof(*c->down_until))) == NULL ||
        (weights = malloc(o->nnodes * sizeof(*weights))) == NULL)
        abort();
    c->o = *o;
    c->n = o->nnodes;
    h2o_linklist_init_anchor(&c->forwards);
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
    cluster_shutdown(c);
    ring_free(c->ring);
    for (size_t i = 0; i < c->n; i++)
        free(c->nodes[i]);
    for (size_t i = 0; i < c->nallowed; i++)
        free(c->allowed[i]);
    free(c->allowed);
    free(c->nodes);
    free(c->shares);
    free(c->down_until);
    /* The fetcher's handles close with the loop's next turn; the memory holding them goes after. */
    if (c->started)
        fetcher_free_then(&c->fetcher, free, c);
    else
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

/* --- asking the owner ------------------------------------------------------------------------------------------ */

static uint64_t now_ms(void)
{
    return clock_mono_ns() / 1000000u;
}

static void allow(struct cluster *c, const char *addr)
{
    if ((c->allowed = realloc(c->allowed, (c->nallowed + 1) * sizeof(*c->allowed))) == NULL ||
        (c->allowed[c->nallowed++] = strdup(addr)) == NULL)
        abort();
}

int cluster_start(struct cluster *c, uv_loop_t *loop, char *err, size_t errlen)
{
    struct fetch_options fo = {
        .max_bytes = c->o.max_bytes,
        .max_bytes_name = "max_source_bytes",
        .connect_timeout_ms = 2000,
        .timeout_ms = (long)c->o.timeout_ms,
        .no_redirects = true,
        .any_status = true,
        .keep_headers = KEPT,
    };
    int r;

    /* The guard refuses private addresses; the nodes' own are let through, and nothing else. */
    for (size_t i = 0; i < c->n; i++) {
        const char *colon = strrchr(c->nodes[i], ':');
        char host[256];
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
        int gai;

        if (i == c->self)
            continue;
        snprintf(host, sizeof(host), "%.*s", (int)(colon - c->nodes[i]), c->nodes[i]);
        if (host[0] == '[') {
            memmove(host, host + 1, strlen(host));
            host[strlen(host) - 1] = '\0';
        }
        if ((gai = getaddrinfo(host, NULL, &hints, &res)) != 0) {
            snprintf(err, errlen, "cluster_nodes: cannot resolve \"%s\": %s", host, gai_strerror(gai));
            return -EINVAL;
        }
        for (ai = res; ai != NULL; ai = ai->ai_next) {
            char addr[64];
            if (getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof(addr), NULL, 0, NI_NUMERICHOST) == 0)
                allow(c, addr);
        }
        freeaddrinfo(res);
    }
    fo.guard = (struct netguard_options){false, c->allowed, c->nallowed};
    if ((r = fetcher_init(&c->fetcher, loop, &fo, err, errlen)) != 0) {
        fetcher_free(&c->fetcher);
        return r;
    }
    c->started = true;
    return 0;
}

static void on_owner(void *data, struct fetch_result *res);

static void forward_free(struct forward *f)
{
    h2o_linklist_unlink(&f->link);
    http_unhold(f->hold);
    free(f);
}

static void relay_answer(struct forward *f, h2o_req_t *req, struct fetch_result *res)
{
    static h2o_generator_t generator = {NULL, NULL};
    h2o_iovec_t body = h2o_iovec_init(NULL, 0);

    http_begin_response(req, (int)res->http_status);
    for (size_t i = 0; i < res->nkept; i++) {
        const struct fetch_header *h = &res->kept[i];
        if (strcmp(h->name, "content-length") == 0) {
            if (f->head)
                req->res.content_length = strtoull(h->value, NULL, 10);
            continue;
        }
        h2o_add_header_by_str(&req->pool, &req->res.headers, h->name, strlen(h->name), 1, NULL,
                              h2o_strdup(&req->pool, h->value, SIZE_MAX).base, strlen(h->value));
    }
    if (!f->head) {
        body = h2o_strdup(&req->pool, (const char *)res->body, res->len);
        req->res.content_length = res->len;
    }
    h2o_start_response(req, &generator);
    h2o_send(req, &body, body.len > 0 ? 1 : 0, H2O_SEND_STATE_FINAL);
}

/* The first node from `from` on that is another and not known to be down; c->n when there is none. */
static size_t next_node(const struct cluster *c, size_t from)
{
    uint64_t now = now_ms();

    while (from < c->n && (from == c->self || now < c->down_until[from]))
        from++;
    return from;
}

/* Asks node f->node for the request's URL, with its Accept and If-None-Match, and the hop header. */
static bool send_to(struct forward *f, h2o_req_t *req)
{
    struct cluster *c = f->c;
    char url[1024], accept[512], inm[512], hop[300];
    const char *headers[4];
    size_t nh = 0;
    ssize_t i;

    if ((size_t)snprintf(url, sizeof(url), "http://%s%.*s", c->nodes[f->node], (int)req->path.len, req->path.base) >=
        sizeof(url))
        return false;
    if ((i = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT, -1)) != -1 &&
        (size_t)snprintf(accept, sizeof(accept), "Accept: %.*s", (int)req->headers.entries[i].value.len,
                         req->headers.entries[i].value.base) < sizeof(accept))
        headers[nh++] = accept;
    if ((i = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, -1)) != -1 &&
        (size_t)snprintf(inm, sizeof(inm), "If-None-Match: %.*s", (int)req->headers.entries[i].value.len,
                         req->headers.entries[i].value.base) < sizeof(inm))
        headers[nh++] = inm;
    snprintf(hop, sizeof(hop), "X-Pfp-Hop: %s", c->nodes[c->self]);
    headers[nh++] = hop;
    headers[nh] = NULL;
    f->fetch = fetch_start_with(&c->fetcher, url, headers, f->head ? "HEAD" : NULL, on_owner, f);
    return true;
}

static void on_owner(void *data, struct fetch_result *res)
{
    struct forward *f = data;
    struct cluster *c = f->c;
    h2o_req_t *req = http_held(f->hold);
    bool answered = res->error == FETCH_OK && !(f->any && res->http_status == 404);

    f->fetch = NULL;
    if (req != NULL && answered) {
        c->stats.from_owner++;
        relay_answer(f, req, res);
    } else if (req != NULL) {
        if (res->error != FETCH_OK) {
            c->stats.owner_failures++;
            c->down_until[f->node] = now_ms() + DOWN_MS;
            log_warn("cluster: %s could not answer (%s)", c->nodes[f->node], res->detail);
        }
        /* Asking every node: the next one, if any is left. */
        if (f->any && (f->node = next_node(c, f->node + 1)) < c->n && send_to(f, req))
            return;
        f->local(f->ctx, req);
    }
    forward_free(f);
}

/* Asks `node` for `req`, `local` answering should it not; false (nothing done) when the request cannot be sent. */
static bool forward(struct cluster *c, h2o_req_t *req, size_t node, bool any, cluster_local_fn local, const void *ctx,
                    size_t ctxlen)
{
    struct forward *f = calloc(1, sizeof(*f) + ctxlen);

    if (f == NULL)
        abort();
    f->c = c;
    f->node = node;
    f->any = any;
    f->local = local;
    f->head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    f->ctxlen = ctxlen;
    if (ctxlen > 0)
        memcpy(f->ctx, ctx, ctxlen);
    f->hold = http_hold(req);
    h2o_linklist_insert(&c->forwards, &f->link);
    if (!send_to(f, req)) {
        forward_free(f);
        return false;
    }
    return true;
}

static bool may_forward(const struct cluster *c, h2o_req_t *req)
{
    /* A request another node sent is answered where it lands: nothing goes round in circles. */
    return c != NULL && c->started && !c->closing &&
           h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-pfp-hop"), -1) == -1;
}

bool cluster_forward(struct cluster *c, h2o_req_t *req, const uint8_t pubkey[32], cluster_local_fn local,
                     const void *ctx, size_t ctxlen)
{
    size_t node;

    if (!may_forward(c, req) || (node = cluster_owner(c, pubkey)) == c->self || now_ms() < c->down_until[node])
        return false;
    return forward(c, req, node, false, local, ctx, ctxlen);
}

bool cluster_ask_others(struct cluster *c, h2o_req_t *req, cluster_local_fn none, const void *ctx, size_t ctxlen)
{
    size_t node;

    if (!may_forward(c, req) || (node = next_node(c, 0)) >= c->n)
        return false;
    return forward(c, req, node, true, none, ctx, ctxlen);
}

void cluster_shutdown(struct cluster *c)
{
    if (c == NULL || c->closing)
        return;
    c->closing = true;
    while (!h2o_linklist_is_empty(&c->forwards)) {
        struct forward *f = H2O_STRUCT_FROM_MEMBER(struct forward, link, c->forwards.next);
        h2o_req_t *req = http_held(f->hold);

        if (f->fetch != NULL)
            fetch_cancel(f->fetch);
        if (req != NULL)
            http_reply_error(req, 503, "the relay is shutting down");
        forward_free(f);
    }
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
