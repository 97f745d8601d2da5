/* http.h -- the HTTP server: h2o on the libuv loop, one listener for HTTP/1.1, HTTP/2 over TLS and upgrades. */
#ifndef PFP_HTTP_H
#define PFP_HTTP_H

#include <h2o.h>
#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "buf.h"
#include "listener.h"
#include "router.h"

/*
 * A route's handler. It answers now or later, but exactly once, with one of the
 * http_reply_* functions or its own h2o generator. `param` is the segment the
 * route's "*" matched (empty for routes without one) and lives as long as `req`.
 */
typedef void (*http_handler_fn)(void *data, h2o_req_t *req, h2o_iovec_t param);

struct http_route_target {
    http_handler_fn fn;
    void *data;
};

/* Requests that took one route, by the status they were answered with. */
#define HTTP_STATUSES_TRACKED 24
struct http_route_stats {
    int status[HTTP_STATUSES_TRACKED]; /* 0 marks the end of those seen so far */
    uint64_t count[HTTP_STATUSES_TRACKED];
    uint64_t other; /* statuses past the first HTTP_STATUSES_TRACKED seen */
};

struct keymap;

/* The fields are private to http.c. */
struct http_server {
    uv_loop_t *_loop;
    h2o_globalconf_t _globalconf;
    h2o_context_t _ctx;
    h2o_accept_ctx_t _accept_ctx;
    SSL_CTX *_ssl_ctx;
    struct listener _listener; /* which connections are let in */
    struct router _router;
    struct http_route_target _targets[ROUTER_MAX_ROUTES];        /* the router's route data points here */
    size_t _inflight;                                            /* requests handed to a handler and not yet finished */
    struct http_route_stats _route_stats[ROUTER_MAX_ROUTES + 1]; /* the last: requests no route took */
    bool _draining;
    uv_timer_t _drain_timer;
    void (*_on_drained)(struct http_server *s, bool timed_out);
};

/* How the server is set up. The strings stay the caller's and are read only by http_server_init(). */
struct http_options {
    size_t max_request_body_bytes;
    size_t max_connections_per_ip; /* from one address but 127.0.0.1 and ::1; 0 for no cap */
    const char *access_log;        /* a file to append to, or "" for none */
    const char *tls_cert_file;     /* PEM certificate chain and private key, or "" and "" for plain HTTP */
    const char *tls_key_file;
    /* How messages name the three files to the operator: app.c gives the configuration's keys. */
    struct {
        const char *access_log, *tls_cert_file, *tls_key_file, *max_connections_per_ip;
    } names;
};

/*
 * Sets the server up from `o` without listening yet. Returns 0, or -EINVAL with
 * a message naming the option at fault in `err` (an unreadable certificate or key,
 * an access log that cannot be opened). Call http_server_free() in either case.
 */
int http_server_init(struct http_server *s, uv_loop_t *loop, const struct http_options *o, char *err, size_t errlen);

/*
 * Routes `methods` on `pattern` (see router.h) to `fn`; `pattern` and `data` must
 * outlive the server. Returns 0, -ENOSPC past ROUTER_MAX_ROUTES, or -EINVAL for a
 * pattern router_add() refuses.
 */
int http_route(struct http_server *s, unsigned methods, const char *pattern, http_handler_fn fn, void *data);

/*
 * Binds and listens on `listen_addr`, which url_parse_listen() accepts. Returns 0,
 * or -EINVAL for an address it does not, or a negative errno, with a message in
 * `err`. Connections past max_connections_per_ip from one address are closed as
 * they are accepted; when no file descriptor is left (EMFILE, ENFILE), waiting
 * connections are closed too and a warning says so, once per 10 seconds at most.
 */
int http_server_listen(struct http_server *s, const char *listen_addr, char *err, size_t errlen);

/*
 * Stops accepting connections, turns keep-alive off, sends HTTP/2 GOAWAY, and calls
 * `done` on the loop once every request in flight has finished, or after
 * `timeout_ms` with `timed_out` set.
 */
void http_server_shutdown(struct http_server *s, uint64_t timeout_ms,
                          void (*done)(struct http_server *s, bool timed_out));

/* Closes the server's own handles and frees its configuration. Connections still open are dropped with the process. */
void http_server_free(struct http_server *s);

/*
 * Appends the pfpcache_http_requests_total family (requests by route and status),
 * pfpcache_http_connections and pfpcache_http_connections_refused_total to `b`. Loop thread.
 */
void http_server_metrics(const struct http_server *s, struct buf *b);

/* Sends `body` as JSON with `status`, and drops the reference to `body`. */
void http_reply_json(h2o_req_t *req, int status, json_t *body);

/* Sends `body` as JSON with `status` and the given content type; `body` stays the caller's. */
void http_reply_json_as(h2o_req_t *req, int status, const char *content_type, const json_t *body);

/* Sends `len` bytes of `text` (copied) with `status` and `content_type`. */
void http_reply_text(h2o_req_t *req, int status, const char *content_type, const char *text, size_t len);

/* Sends {"error": "<formatted message>"} with `status`. */
void http_reply_error(h2o_req_t *req, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The reason phrase for a status code, "" for an unknown one. */
const char *http_reason(int status);

/* Adds the headers every response carries and prepares the response for the status; call before sending. */
void http_begin_response(h2o_req_t *req, int status);

/*
 * The raw value of query parameter `name` (no percent-decoding) in `req`'s query.
 * Returns false when it is absent; `value` points into the request and lives as
 * long as it.
 */
bool http_query_param(h2o_req_t *req, const char *name, h2o_iovec_t *value);

/*
 * The same, in `query` (what follows '?'): the first "name=value" or bare "name"
 * between '&'s. `value` points into `query`.
 */
bool http_query_find(h2o_iovec_t query, const char *name, h2o_iovec_t *value);

/* Parses a count given in a query: decimal digits, from 1 to `max` (at most 9 digits). Returns 0 or -EINVAL. */
int http_parse_count(h2o_iovec_t v, size_t max, size_t *out);

/*
 * Whether the request's If-None-Match fields match `etag` (the response's
 * entity-tag, quoted, perhaps W/-prefixed), by RFC 9110's weak comparison:
 * "*", or a comma-separated list of entity-tags with optional whitespace, each
 * compared with any W/ ignored. Several fields count as one list. A malformed
 * list does not match from the element at fault on. The caller answers 304 when
 * it returns true (for GET and HEAD).
 */
bool http_if_none_match(h2o_req_t *req, h2o_iovec_t etag);

/*
 * A request answered later, after work that may outlive it: http_held() is the
 * request, or NULL once h2o has freed it (the client went away). The hold is
 * shared by the request's pool and the caller, and freed when both let go:
 * release it with http_unhold() once answered or abandoned.
 */
struct http_hold;
struct http_hold *http_hold(h2o_req_t *req);
h2o_req_t *http_held(const struct http_hold *h);
void http_unhold(struct http_hold *h);

#endif
