/* http.c -- the HTTP server: h2o on the libuv loop, routing, JSON replies and a draining shutdown. */
#include "http.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h2o/http2.h"
#include "log.h"
#include "metrics.h"
#include "url.h"

struct root_handler {
    h2o_handler_t super;
    struct http_server *server;
};

const char *http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
    }
}

void http_begin_response(h2o_req_t *req, int status)
{
    req->res.status = status;
    req->res.reason = http_reason(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL, H2O_STRLIT("*"));
    /* A response finished while the server drains closes its connection, so clients move on. */
    if (req->conn->ctx->shutdown_requested)
        req->http1_is_persistent = 0;
}

bool http_query_find(h2o_iovec_t query, const char *name, h2o_iovec_t *value)
{
    size_t nlen = strlen(name);
    const char *p = query.base, *end = query.base + query.len;

    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        size_t len = amp != NULL ? (size_t)(amp - p) : (size_t)(end - p);
        if (len >= nlen && memcmp(p, name, nlen) == 0 && (len == nlen || p[nlen] == '=')) {
            *value = len == nlen ? h2o_iovec_init(p + nlen, 0) : h2o_iovec_init(p + nlen + 1, len - nlen - 1);
            return true;
        }
        p += len + 1;
    }
    return false;
}

bool http_query_param(h2o_req_t *req, const char *name, h2o_iovec_t *value)
{
    if (req->query_at == SIZE_MAX)
        return false;
    return http_query_find(h2o_iovec_init(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1), name,
                           value);
}

int http_parse_count(h2o_iovec_t v, size_t max, size_t *out)
{
    size_t n = 0;

    if (v.len == 0 || v.len > 9)
        return -EINVAL;
    for (size_t i = 0; i < v.len; i++) {
        if (v.base[i] < '0' || v.base[i] > '9')
            return -EINVAL;
        n = n * 10 + (size_t)(v.base[i] - '0');
    }
    if (n < 1 || n > max)
        return -EINVAL;
    *out = n;
    return 0;
}

struct http_hold {
    h2o_req_t *req;
    unsigned refs; /* one for the request's pool, one for the work */
};

static void hold_unref(struct http_hold *h)
{
    if (--h->refs == 0)
        free(h);
}

static void on_held_req_gone(void *ptr)
{
    struct http_hold *h = *(struct http_hold **)ptr;

    h->req = NULL;
    hold_unref(h);
}

struct http_hold *http_hold(h2o_req_t *req)
{
    struct http_hold *h = malloc(sizeof(*h));
    struct http_hold **slot;

    if (h == NULL)
        abort();
    h->req = req;
    h->refs = 2;
    slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), on_held_req_gone);
    *slot = h;
    return h;
}

h2o_req_t *http_held(const struct http_hold *h)
{
    return h->req;
}

void http_unhold(struct http_hold *h)
{
    hold_unref(h);
}

/* Sends a body the pool already owns, or only the headers for HEAD. */
static void send_pooled(h2o_req_t *req, h2o_iovec_t body)
{
    static h2o_generator_t generator = {NULL, NULL};

    req->res.content_length = body.len;
    h2o_start_response(req, &generator);
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    else
        h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
}

/* JSON text for `body`, with a trailing newline, in the request's pool. */
static h2o_iovec_t json_in_pool(h2o_mem_pool_t *pool, const json_t *body)
{
    size_t len = json_dumpb(body, NULL, 0, JSON_COMPACT);
    char *buf = h2o_mem_alloc_pool(pool, len + 1);

    json_dumpb(body, buf, len, JSON_COMPACT);
    buf[len] = '\n';
    return h2o_iovec_init(buf, len + 1);
}

/* Sends a body the pool already owns, as `content_type`, not to be cached. */
static void reply_pooled(h2o_req_t *req, int status, const char *content_type, h2o_iovec_t body)
{
    http_begin_response(req, status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    send_pooled(req, body);
}

void http_reply_json(h2o_req_t *req, int status, json_t *body)
{
    reply_pooled(req, status, "application/json", json_in_pool(&req->pool, body));
    json_decref(body);
}

void http_reply_json_as(h2o_req_t *req, int status, const char *content_type, const json_t *body)
{
    reply_pooled(req, status, content_type, json_in_pool(&req->pool, body));
}

void http_reply_text(h2o_req_t *req, int status, const char *content_type, const char *text, size_t len)
{
    reply_pooled(req, status, content_type, h2o_strdup(&req->pool, text, len));
}

/* Error messages may quote what a client sent; anything outside printable ASCII becomes '?', so the JSON is valid. */
static json_t *error_body(const char *msg, size_t len)
{
    char clean[512];

    if (len >= sizeof(clean))
        len = sizeof(clean) - 1;
    for (size_t i = 0; i < len; i++)
        clean[i] = (msg[i] >= 0x20 && msg[i] < 0x7f) ? msg[i] : '?';
    return json_pack("{s:s%}", "error", clean, len);
}

void http_reply_error(h2o_req_t *req, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    http_reply_json(req, status, error_body(msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1));
}

/*
 * h2o answers some requests itself before any route sees them (a body over the
 * limit, broken chunked encoding) with a text body. This filter, on the fallback
 * path those answers use, rewrites them as {"error": "..."} like every other error.
 */
struct json_error_ostream {
    h2o_ostream_t super;
    bool sent;
};

static void json_error_do_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt,
                               h2o_send_state_t state)
{
    struct json_error_ostream *o = (struct json_error_ostream *)self;
    char text[256];
    size_t len = 0;
    json_t *body;
    h2o_iovec_t out;

    if (o->sent) {
        h2o_ostream_send_next(&o->super, req, NULL, 0, state);
        return;
    }
    o->sent = true;

    if (req->res.status == 413) {
        len = (size_t)snprintf(text, sizeof(text), "request body is larger than the limit of %zu bytes",
                               req->conn->ctx->globalconf->max_request_entity_size);
    } else {
        for (size_t i = 0; i < bufcnt && len < sizeof(text); i++) {
            size_t n = bufs[i].len < sizeof(text) - len ? bufs[i].len : sizeof(text) - len;
            memcpy(text + len, bufs[i].base, n);
            len += n;
        }
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
            len--;
        if (len == 0)
            len = (size_t)snprintf(text, sizeof(text), "%s", req->res.reason);
    }
    body = error_body(text, len);
    out = json_in_pool(&req->pool, body);
    json_decref(body);

    req->res.content_length = out.len;
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
        h2o_ostream_send_next(&o->super, req, NULL, 0, state);
    else
        h2o_ostream_send_next(&o->super, req, &out, 1, state);
}

static void json_error_setup(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    (void)self;
    if (req->res.status >= 400) {
        struct json_error_ostream *o;
        h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, H2O_STRLIT("application/json"), 1);
        h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, H2O_STRLIT("*"), 1);
        o = (struct json_error_ostream *)h2o_add_ostream(req, sizeof(*o), slot);
        o->super.do_send = json_error_do_send;
        o->sent = false;
        slot = &o->super.next;
    }
    h2o_setup_next_ostream(req, slot);
}

static void on_drain_timer(uv_timer_t *t)
{
    struct http_server *s = t->data;
    bool timed_out = s->_inflight != 0;

    if (s->_on_drained == NULL)
        return;
    if (timed_out)
        log_warn("shutdown: %zu request(s) still in flight after the timeout, closing", s->_inflight);
    void (*done)(struct http_server *, bool) = s->_on_drained;
    s->_on_drained = NULL;
    uv_timer_stop(t);
    done(s, timed_out);
}

/* What a request's pool carries so that its end is counted: the route it took, and the status it got. */
struct req_track {
    struct http_server *s;
    h2o_req_t *req;
    size_t route; /* index into the router's routes, or ROUTER_MAX_ROUTES for no route */
};

static void count_status(struct http_route_stats *rs, int status)
{
    size_t i;

    for (i = 0; i < HTTP_STATUSES_TRACKED && rs->status[i] != 0; i++) {
        if (rs->status[i] == status)
            break;
    }
    if (i == HTTP_STATUSES_TRACKED) {
        rs->other++;
        return;
    }
    rs->status[i] = status;
    rs->count[i]++;
}

static void on_req_disposed(void *p)
{
    struct req_track *t = p;
    struct http_server *s = t->s;

    count_status(&s->_route_stats[t->route], t->req->res.status);
    s->_inflight--;
    if (s->_draining && s->_inflight == 0 && s->_on_drained != NULL)
        uv_timer_start(&s->_drain_timer, on_drain_timer, 0, 0);
}

static void reply_options(h2o_req_t *req, unsigned allowed)
{
    char methods[128];
    size_t n = router_format_methods(allowed, methods, sizeof(methods));
    h2o_iovec_t allow = h2o_strdup(&req->pool, methods, n);

    http_begin_response(req, 204);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow.base, allow.len);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-methods"), 0, NULL,
                          allow.base, allow.len);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-headers"), 0, NULL,
                          H2O_STRLIT("Authorization, Content-Type, Accept"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-max-age"), 0, NULL,
                          H2O_STRLIT("86400"));
    send_pooled(req, h2o_iovec_init(NULL, 0));
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct http_server *s = ((struct root_handler *)self)->server;
    unsigned method = router_method(req->method.base, req->method.len);
    struct router_match m;
    enum router_result found;
    struct req_track *track;

    /* The request counts as in flight until h2o frees its pool, after the last byte of the response. */
    track = h2o_mem_alloc_shared(&req->pool, sizeof(*track), on_req_disposed);
    *track = (struct req_track){s, req, ROUTER_MAX_ROUTES};
    s->_inflight++;

    log_debug("%.*s %.*s", (int)req->method.len, req->method.base, (int)req->path.len, req->path.base);
    found = router_match(&s->_router, method, req->path_normalized.base, req->path_normalized.len, &m);
    switch (found) {
    case ROUTER_FOUND: {
        const struct http_route_target *t = m.route->data;
        track->route = (size_t)(m.route - s->_router.routes);
        t->fn(t->data, req, h2o_iovec_init(m.param, m.param_len));
        break;
    }
    case ROUTER_NOT_FOUND:
        http_reply_error(req, 404, "no such endpoint: %.*s", (int)req->path_normalized.len, req->path_normalized.base);
        break;
    case ROUTER_METHOD_NOT_ALLOWED: {
        char methods[128];
        unsigned allowed = m.allowed | HTTP_OPTIONS;
        size_t n;
        h2o_iovec_t allow;

        if (method == HTTP_OPTIONS) {
            reply_options(req, allowed);
            break;
        }
        n = router_format_methods(allowed, methods, sizeof(methods));
        allow = h2o_strdup(&req->pool, methods, n);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow.base, allow.len);
        http_reply_error(req, 405, "method %.*s is not allowed on %.*s; allowed: %s", (int)req->method.len,
                         req->method.base, (int)req->path_normalized.len, req->path_normalized.base, methods);
        break;
    }
    }
    return 0;
}

int http_route(struct http_server *s, unsigned methods, const char *pattern, http_handler_fn fn, void *data)
{
    struct http_route_target *t;

    if (s->_router.count == ROUTER_MAX_ROUTES)
        return -ENOSPC;
    t = &s->_targets[s->_router.count];
    *t = (struct http_route_target){fn, data};
    return router_add(&s->_router, methods, pattern, t);
}

static int tls_error(char *err, size_t errlen, const char *key, const char *value, const char *what)
{
    char reason[256] = "";
    unsigned long e = ERR_get_error();

    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    snprintf(err, errlen, "\"%s\" is \"%s\"; allowed: %s (%s)", key, value, what, reason[0] ? reason : "no detail");
    return -EINVAL;
}

static int setup_tls(struct http_server *s, const struct http_options *o, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char what[128];

    if (ctx == NULL)
        return tls_error(err, errlen, o->names.tls_cert_file, o->tls_cert_file, "a usable TLS setup");
    s->_ssl_ctx = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert_file) != 1)
        return tls_error(err, errlen, o->names.tls_cert_file, o->tls_cert_file, "a readable PEM certificate chain");
    if (SSL_CTX_use_PrivateKey_file(ctx, o->tls_key_file, SSL_FILETYPE_PEM) != 1)
        return tls_error(err, errlen, o->names.tls_key_file, o->tls_key_file, "a readable PEM private key");
    snprintf(what, sizeof(what), "the private key of \"%s\"", o->names.tls_cert_file);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return tls_error(err, errlen, o->names.tls_key_file, o->tls_key_file, what);
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    return 0;
}

int http_server_init(struct http_server *s, uv_loop_t *loop, const struct http_options *o, char *err, size_t errlen)
{
    h2o_hostconf_t *host;
    h2o_pathconf_t *root;
    struct root_handler *handler;
    h2o_filter_t *filter;
    int r;

    memset(s, 0, sizeof(*s));
    s->_loop = loop;
    listener_init(&s->_listener, loop, &s->_accept_ctx, o->max_connections_per_ip);
    h2o_config_init(&s->_globalconf);
    s->_globalconf.server_name = h2o_iovec_init(H2O_STRLIT("pfpcache-relay/" PFP_VERSION));
    s->_globalconf.max_request_entity_size = o->max_request_body_bytes;

    host = h2o_config_register_host(&s->_globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    root = h2o_config_register_path(host, "/", 0);
    handler = (struct root_handler *)h2o_create_handler(root, sizeof(*handler));
    handler->super.on_req = on_req;
    handler->server = s;
    filter = h2o_create_filter(&host->fallback_path, sizeof(*filter));
    filter->on_setup_ostream = json_error_setup;

    if (o->access_log[0] != '\0') {
        h2o_access_log_filehandle_t *fh;
        /* Opened once here first, because h2o reports its own failure on a line of its own. */
        int fd = open(o->access_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            snprintf(err, errlen, "\"%s\" is \"%s\"; allowed: a file that can be opened for appending (%s)",
                     o->names.access_log, o->access_log, strerror(errno));
            return -EINVAL;
        }
        close(fd);
        if ((fh = h2o_access_log_open_handle(o->access_log, NULL, H2O_LOGCONF_ESCAPE_APACHE)) == NULL) {
            snprintf(err, errlen, "\"%s\" is \"%s\"; allowed: a file that can be opened for appending",
                     o->names.access_log, o->access_log);
            return -EINVAL;
        }
        h2o_access_log_register(root, fh);
        h2o_access_log_register(&host->fallback_path, fh);
    }

    if (o->tls_cert_file[0] != '\0' && (r = setup_tls(s, o, err, errlen)) != 0)
        return r;

    h2o_context_init(&s->_ctx, loop, &s->_globalconf);
    s->_accept_ctx.ctx = &s->_ctx;
    s->_accept_ctx.hosts = s->_globalconf.hosts;
    s->_accept_ctx.ssl_ctx = s->_ssl_ctx;

    uv_timer_init(loop, &s->_drain_timer);
    s->_drain_timer.data = s;
    return 0;
}

int http_server_listen(struct http_server *s, const char *listen_addr, char *err, size_t errlen)
{
    return listener_open(&s->_listener, listen_addr, s->_ssl_ctx != NULL ? "https" : "http", err, errlen);
}

void http_server_shutdown(struct http_server *s, uint64_t timeout_ms,
                          void (*done)(struct http_server *s, bool timed_out))
{
    listener_shutdown(&s->_listener);
    h2o_context_request_shutdown(&s->_ctx);
    s->_draining = true;
    s->_on_drained = done;
    uv_timer_start(&s->_drain_timer, on_drain_timer, s->_inflight == 0 ? 0 : timeout_ms, 0);
}

void http_server_free(struct http_server *s)
{
    listener_free(&s->_listener);
    if (s->_drain_timer.loop != NULL && !uv_is_closing((uv_handle_t *)&s->_drain_timer))
        uv_close((uv_handle_t *)&s->_drain_timer, NULL);
    if (s->_ssl_ctx != NULL) {
        SSL_CTX_free(s->_ssl_ctx);
        s->_ssl_ctx = NULL;
    }
}

static void route_sample(struct buf *b, struct buf *l, const char *route, const char *status, uint64_t count)
{
    l->len = 0;
    metrics_label(l, "route", route);
    metrics_label(l, "status", status);
    metrics_u64(b, "pfpcache_http_requests_total", l->data, count);
}

void http_server_metrics(const struct http_server *s, struct buf *b)
{
    struct buf l = BUF_INIT;
    struct listener_stats ls;
    char status[8];

    listener_stats(&s->_listener, &ls);
    metrics_single(b, "pfpcache_http_connections", "gauge", "TCP connections open.", ls.connections);
    metrics_family(b, "pfpcache_http_connections_refused_total", "counter",
                   "Connections closed as they were accepted: max_connections_per_ip reached, or no file "
                   "descriptor left.");
    l.len = 0;
    metrics_label(&l, "reason", "max_connections_per_ip");
    metrics_u64(b, "pfpcache_http_connections_refused_total", l.data, ls.refused_per_ip);
    l.len = 0;
    metrics_label(&l, "reason", "no_file_descriptors");
    metrics_u64(b, "pfpcache_http_connections_refused_total", l.data, ls.refused_no_fd);

    metrics_family(b, "pfpcache_http_requests_total", "counter", "HTTP requests answered, by route and status.");
    for (size_t r = 0; r <= s->_router.count; r++) {
        const struct http_route_stats *rs = &s->_route_stats[r == s->_router.count ? ROUTER_MAX_ROUTES : r];
        const char *route = r == s->_router.count ? "none" : s->_router.routes[r].pattern;
        for (size_t i = 0; i < HTTP_STATUSES_TRACKED && rs->status[i] != 0; i++) {
            snprintf(status, sizeof(status), "%d", rs->status[i]);
            route_sample(b, &l, route, status, rs->count[i]);
        }
        if (rs->other > 0)
            route_sample(b, &l, route, "other", rs->other);
    }
    buf_free(&l);
}

/* --- If-None-Match ------------------------------------------------------------------------------------------------ */

static bool etag_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 9110's etagc: visible characters but the double quote, and obs-text. */
static bool etag_char(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c != 0x7f);
}

/*
 * Whether one If-None-Match field value names `tag` (an opaque-tag, quotes
 * included) by weak comparison. A malformed element ends the list unmatched:
 * answering in full is always safe, a wrong 304 is not.
 */
static bool none_match_value(const char *p, const char *end, h2o_iovec_t tag)
{
    while (p < end) {
        const char *start;
        bool same;

        while (p < end && (etag_ows(*p) || *p == ','))
            p++;
        if (p == end)
            return false;
        if (*p == '*') {
            for (p++; p < end && etag_ows(*p); p++)
                ;
            return p == end || *p == ',';
        }
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/')
            p += 2;
        if (p == end || *p != '"')
            return false;
        for (start = p++; p < end && *p != '"'; p++) {
            if (!etag_char((unsigned char)*p))
                return false;
        }
        if (p == end)
            return false;
        p++;
        same = (size_t)(p - start) == tag.len && memcmp(start, tag.base, tag.len) == 0;
        while (p < end && etag_ows(*p))
            p++;
        if (p < end && *p != ',')
            return false;
        if (same)
            return true;
    }
    return false;
}

bool http_if_none_match(h2o_req_t *req, h2o_iovec_t etag)
{
    ssize_t i = -1;

    if (etag.len >= 2 && etag.base[0] == 'W' && etag.base[1] == '/') {
        etag.base += 2;
        etag.len -= 2;
    }
    while ((i = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, i)) != -1) {
        h2o_iovec_t v = req->headers.entries[i].value;
        if (none_match_value(v.base, v.base + v.len, etag))
            return true;
    }
    return false;
}
