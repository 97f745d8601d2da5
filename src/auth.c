/* auth.c -- who may call the admin endpoints: a bearer token, NIP-98 signed events, or else loopback clients only. */
#include "auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "clock.h"
#include "err.h"
#include "event.h"
#include "hex.h"
#include "http.h"
#include "keymap.h"

#define STR(x)  #x
#define XSTR(x) STR(x)

#define NIP98_USAGE   "\"Authorization: Nostr <base64 of a NIP-98 event>\""
#define LOOPBACK_ONLY "admin endpoints are open to loopback clients only"

/* The headers a reverse proxy adds: behind one on the same machine, every client would look like loopback. */
static const char *const proxy_headers[] = {"forwarded", "x-forwarded-for", "x-real-ip"};

void auth_init(struct auth *a, const struct auth_options *o)
{
    bool token, keys;

    memset(a, 0, sizeof(*a));
    a->_opts = *o;
    a->_token_len = strlen(o->token);
    token = a->_token_len != 0;
    keys = o->npubkeys != 0;
    if (token && keys) {
        a->_schemes = "Bearer, Nostr";
        snprintf(a->_usage, sizeof(a->_usage), "send \"Authorization: Bearer <%s>\" or " NIP98_USAGE, o->names.token);
    } else if (token) {
        a->_schemes = "Bearer";
        snprintf(a->_usage, sizeof(a->_usage), "send \"Authorization: Bearer <%s>\"", o->names.token);
    } else {
        a->_schemes = "Nostr";
        snprintf(a->_usage, sizeof(a->_usage), "send " NIP98_USAGE);
    }
    snprintf(a->_open_up, sizeof(a->_open_up), "set %s (or %s) in the configuration to allow others", o->names.token,
             o->names.pubkeys);
    a->_seen = keymap_new(32);
    if ((a->_ring = calloc(AUTH_REPLAY_MAX, sizeof(*a->_ring))) == NULL)
        abort();
}

void auth_free(struct auth *a)
{
    if (a->_seen != NULL)
        keymap_free(a->_seen, NULL);
    free(a->_ring);
    a->_seen = NULL;
    a->_ring = NULL;
}

/* The length may leak through timing; the bytes may not. */
static bool token_ok(const struct auth *a, h2o_iovec_t given)
{
    return a->_token_len != 0 && given.len == a->_token_len &&
           CRYPTO_memcmp(given.base, a->_opts.token, given.len) == 0;
}

/* True when `v` is "<scheme> <rest>", the scheme in any case as HTTP allows; `rest` is what follows the spaces. */
static bool scheme_is(h2o_iovec_t v, const char *scheme, h2o_iovec_t *rest)
{
    size_t n = strlen(scheme), i;

    if (v.len <= n || strncasecmp(v.base, scheme, n) != 0 || v.base[n] != ' ')
        return false;
    for (i = n; i < v.len && v.base[i] == ' '; i++)
        ;
    *rest = h2o_iovec_init(v.base + i, v.len - i);
    return true;
}

/* The second item of the first tag named `name` that has one. */
static bool tag_value(const struct event *ev, const char *name, h2o_iovec_t *value)
{
    size_t i;
    json_t *tag;

    json_array_foreach(ev->tags, i, tag)
    {
        json_t *first = json_array_get(tag, 0), *second = json_array_get(tag, 1);
        if (second != NULL && strcmp(json_string_value(first), name) == 0) {
            *value = h2o_iovec_init(json_string_value(second), json_string_length(second));
            return true;
        }
    }
    return false;
}

static bool pubkey_listed(const struct auth *a, const uint8_t pubkey[32])
{
    for (size_t i = 0; i < a->_opts.npubkeys; i++) {
        if (memcmp(a->_opts.pubkeys[i], pubkey, 32) == 0)
            return true;
    }
    return false;
}

static bool iovec_eq(h2o_iovec_t a, h2o_iovec_t b)
{
    return a.base != NULL && h2o_memis(a.base, a.len, b.base, b.len);
}

/* Checks the tags that bind the event to this request: u, method, and payload when there is a body or a tag. */
static int check_binding(const struct event *ev, const struct nip98_request *rq, char *err, size_t errlen)
{
    h2o_iovec_t v;
    uint8_t digest[32];
    char hex[64];

    if (!tag_value(ev, "u", &v))
        return err_set(err, errlen, -EACCES, "NIP-98: the event has no u tag");
    if (!iovec_eq(rq->url, v) && !iovec_eq(rq->proxied_url, v))
        return err_set(err, errlen, -EACCES, "NIP-98: the u tag does not match the request URL, %.*s",
                       (int)(rq->url.len < 160 ? rq->url.len : 160), rq->url.base);
    if (!tag_value(ev, "method", &v))
        return err_set(err, errlen, -EACCES, "NIP-98: the event has no method tag");
    if (!iovec_eq(rq->method, v))
        return err_set(err, errlen, -EACCES, "NIP-98: the method tag does not match the request method, %.*s",
                       (int)(rq->method.len < 16 ? rq->method.len : 16), rq->method.base);
    /* A payload tag binds the event to one body, so it is checked even against an empty one. */
    if (!tag_value(ev, "payload", &v)) {
        if (rq->body.len != 0)
            return err_set(err, errlen, -EACCES, "NIP-98: the request has a body but the event has no payload tag");
        return 0;
    }
    SHA256((const unsigned char *)(rq->body.len != 0 ? rq->body.base : ""), rq->body.len, digest);
    hex_encode(digest, 32, hex);
    if (!h2o_memis(v.base, v.len, hex, 64))
        return err_set(err, errlen, -EACCES,
                       "NIP-98: the payload tag is not the lowercase hex SHA-256 of the request body");
    return 0;
}

/* Checks a parsed event in order of cost, the signature last. Returns 0 or -EACCES with what failed. */
static int check_event(const struct auth *a, const struct event *ev, const struct nip98_request *rq, int64_t now,
                       char *err, size_t errlen)
{
    int r;

    if (ev->kind != AUTH_NIP98_KIND)
        return err_set(err, errlen, -EACCES, "NIP-98: the event's kind is not " XSTR(AUTH_NIP98_KIND));
    if (!pubkey_listed(a, ev->pubkey))
        return err_set(err, errlen, -EACCES, "NIP-98: the event's pubkey is not in %s", a->_opts.names.pubkeys);
    if (now - ev->created_at > AUTH_NIP98_WINDOW)
        return err_set(err, errlen, -EACCES,
                       "NIP-98: stale created_at, more than " XSTR(AUTH_NIP98_WINDOW) " seconds old");
    if (ev->created_at - now > AUTH_NIP98_WINDOW)
        return err_set(
            err, errlen, -EACCES,
            "NIP-98: created_at is more than " XSTR(AUTH_NIP98_WINDOW) " seconds ahead of the server's clock");
    if ((r = check_binding(ev, rq, err, errlen)) != 0)
        return r;
    if (!event_id_valid(ev))
        return err_set(err, errlen, -EACCES, "NIP-98: the event's id is not the hash of its content");
    if (!event_verify_sig(ev->id, ev->pubkey, ev->sig))
        return err_set(err, errlen, -EACCES, "NIP-98: bad signature");
    return 0;
}

/* Forgets ids accepted more than AUTH_REPLAY_SECONDS ago: by then their created_at is stale. */
static void forget_expired(struct auth *a, int64_t now)
{
    while (a->_count > 0 && a->_ring[a->_head].forget_after < now) {
        keymap_del(a->_seen, a->_ring[a->_head].id);
        a->_head = (a->_head + 1) % AUTH_REPLAY_MAX;
        a->_count--;
    }
}

/* Refuses an event seen before, or else remembers it. Returns 0 or -EACCES. */
static int check_replay(struct auth *a, const uint8_t id[32], int64_t now, char *err, size_t errlen)
{
    struct auth_seen *s;

    forget_expired(a, now);
    if (keymap_get(a->_seen, id) != NULL)
        return err_set(err, errlen, -EACCES, "NIP-98: event already used");
    if (a->_count == AUTH_REPLAY_MAX)
        return err_set(err, errlen, -EACCES, "NIP-98: more than %d admin requests in %d seconds; try again later",
                       AUTH_REPLAY_MAX, AUTH_REPLAY_SECONDS);
    s = &a->_ring[(a->_head + a->_count++) % AUTH_REPLAY_MAX];
    memcpy(s->id, id, 32);
    s->forget_after = now + AUTH_REPLAY_SECONDS;
    keymap_put(a->_seen, id, s);
    return 0;
}

/* The event JSON of a "Nostr <base64>" header, malloc()ed for the caller to free, or NULL with `err` saying why. */
static uint8_t *decode_header(h2o_iovec_t header, size_t *len, char *err, size_t errlen)
{
    h2o_iovec_t b64;
    uint8_t *json;

    if (!scheme_is(header, "Nostr", &b64)) {
        err_set(err, errlen, -EACCES, "NIP-98: the Authorization header must be \"Nostr <base64 of the event>\"");
        return NULL;
    }
    if (b64.len > AUTH_MAX_HEADER) {
        err_set(err, errlen, -EACCES,
                "NIP-98: the event is longer than " XSTR(AUTH_MAX_HEADER) " characters of base64");
        return NULL;
    }
    if ((json = malloc(base64_decoded_len(b64.base, b64.len) + 1)) == NULL)
        abort();
    if (base64_decode(b64.base, b64.len, json, len) != 0) {
        err_set(err, errlen, -EACCES, "NIP-98: the Authorization header is not valid base64");
        free(json);
        return NULL;
    }
    return json;
}

int nip98_check(struct auth *a, h2o_iovec_t header, const struct nip98_request *rq, int64_t now, char *err,
                size_t errlen)
{
    uint8_t *json;
    size_t len;
    json_t *root = NULL;
    struct event ev = {0};
    char reason[128];
    int r = -EACCES;

    if ((json = decode_header(header, &len, err, errlen)) == NULL)
        return -EACCES;
    if ((root = json_loadb((const char *)json, len, JSON_REJECT_DUPLICATES, NULL)) == NULL)
        err_set(err, errlen, -EACCES, "NIP-98: the event is not valid JSON");
    else if (event_parse(root, &ev, reason, sizeof(reason)) != 0)
        err_set(err, errlen, -EACCES, "NIP-98: malformed event: %s", reason);
    else if ((r = check_event(a, &ev, rq, now, err, errlen)) == 0)
        r = check_replay(a, ev.id, now, err, errlen);

    event_free(&ev);
    json_decref(root);
    free(json);
    return r;
}

static bool peer_is_loopback(const struct sockaddr *sa, socklen_t len)
{
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in))
        return ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24 == 127;
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
    }
    return false;
}

/* Everything about a request that the rules look at. */
struct auth_request {
    h2o_iovec_t authorization; /* {NULL, 0} when absent */
    struct nip98_request nip98;
    const struct sockaddr *peer;
    socklen_t peer_len;       /* 0 when unknown */
    const char *proxy_header; /* the first of proxy_headers present, or NULL */
};

/* Applies the rules: 0 when `in` is admitted, else 401 or 403 with `err` saying why. */
static int decide(struct auth *a, const struct auth_request *in, int64_t now, char *err, size_t errlen)
{
    h2o_iovec_t rest;

    if (a->_token_len == 0 && a->_opts.npubkeys == 0) {
        if (in->proxy_header != NULL) {
            snprintf(err, errlen, "%s, and this request came through a proxy (it has the %s header); %s", LOOPBACK_ONLY,
                     in->proxy_header, a->_open_up);
            return 403;
        }
        snprintf(err, errlen, "%s; %s", LOOPBACK_ONLY, a->_open_up);
        return in->peer_len != 0 && peer_is_loopback(in->peer, in->peer_len) ? 0 : 403;
    }
    if (in->authorization.base == NULL) {
        snprintf(err, errlen, "missing Authorization header; %s", a->_usage);
    } else if (a->_token_len != 0 && scheme_is(in->authorization, "Bearer", &rest)) {
        if (token_ok(a, rest))
            return 0;
        snprintf(err, errlen, "wrong token in the Authorization header; %s", a->_usage);
    } else if (a->_opts.npubkeys != 0 && scheme_is(in->authorization, "Nostr", &rest)) {
        return nip98_check(a, in->authorization, &in->nip98, now, err, errlen) == 0 ? 0 : 401;
    } else {
        snprintf(err, errlen, "the Authorization header's scheme is not accepted; %s", a->_usage);
    }
    return 401;
}

static h2o_iovec_t request_url(h2o_req_t *req, h2o_iovec_t scheme)
{
    return h2o_concat(&req->pool, scheme, h2o_iovec_init(H2O_STRLIT("://")), req->authority, req->path);
}

/* X-Forwarded-Proto, from a proxy that terminates TLS: the URL the client signed may be the https one. */
static h2o_iovec_t proxied_url(h2o_req_t *req)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-forwarded-proto"), -1);
    h2o_iovec_t v;

    if (i < 0)
        return h2o_iovec_init(NULL, 0);
    v = req->headers.entries[i].value;
    if (h2o_lcstris(v.base, v.len, H2O_STRLIT("https")))
        return request_url(req, h2o_iovec_init(H2O_STRLIT("https")));
    if (h2o_lcstris(v.base, v.len, H2O_STRLIT("http")))
        return request_url(req, h2o_iovec_init(H2O_STRLIT("http")));
    return h2o_iovec_init(NULL, 0);
}

bool auth_admit(struct auth *a, h2o_req_t *req)
{
    struct sockaddr_storage ss;
    struct auth_request in = {0};
    ssize_t i;
    char why[512];
    int status;

    if ((i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1)) >= 0)
        in.authorization = req->headers.entries[i].value;
    if (a->_opts.npubkeys != 0) {
        in.nip98.url = request_url(req, req->scheme->name);
        in.nip98.proxied_url = proxied_url(req);
        in.nip98.method = req->method;
        in.nip98.body = req->entity;
    }
    in.peer = (struct sockaddr *)&ss;
    in.peer_len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    for (size_t k = 0; k < sizeof(proxy_headers) / sizeof(proxy_headers[0]) && in.proxy_header == NULL; k++) {
        if (h2o_find_header_by_str(&req->headers, proxy_headers[k], strlen(proxy_headers[k]), -1) >= 0)
            in.proxy_header = proxy_headers[k];
    }

    if ((status = decide(a, &in, clock_now_s(), why, sizeof(why))) == 0)
        return true;
    if (status == 401)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, a->_schemes,
                       strlen(a->_schemes));
    http_reply_error(req, status, "%s", why);
    return false;
}

void auth_stats(const struct auth *a, struct auth_stats *out)
{
    out->token = a->_opts.token[0] != '\0';
    out->nip98 = a->_opts.npubkeys > 0;
    out->loopback_only = !out->token && !out->nip98;
}
