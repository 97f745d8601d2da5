/*
 * listener.h -- which connections reach the HTTP server: the listening socket,
 * accepted from here rather than by libuv (which hides EMFILE), at most
 * max_connections_per_ip open from one address, and connections closed at once,
 * with a warning, when no file descriptor is left.
 */
#ifndef PFP_LISTENER_H
#define PFP_LISTENER_H

#include <h2o.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct keymap;

struct listener_stats {
    size_t connections;      /* TCP connections open */
    uint64_t refused_per_ip; /* closed as accepted: max_connections_per_ip reached */
    uint64_t refused_no_fd;  /* ... no file descriptor left */
};

/* The fields are private to listener.c. */
struct listener {
    uv_loop_t *_loop;
    h2o_accept_ctx_t *_accept_ctx; /* where admitted connections go */
    int _listen_fd;                /* -1 until listening */
    int _reserve_fd;               /* closed to accept and drop connections when no descriptor is left */
    uv_poll_t _accept;
    bool _listening;
    size_t _max_per_ip;     /* 0: no cap */
    struct keymap *_per_ip; /* client address (16 bytes, IPv4 mapped) -> connections open from it */
    bool _freed;            /* listener_free() ran; the last connection to close frees _per_ip */
    struct listener_stats _stats;
    uint64_t _per_ip_logged_at, _no_fd_logged_at; /* uv_now() of the last such warning */
    char _url[128];
};

/* Prepares `l` to hand connections to `accept_ctx`, which must outlive it. */
void listener_init(struct listener *l, uv_loop_t *loop, h2o_accept_ctx_t *accept_ctx, size_t max_per_ip);

/*
 * Binds and listens on `listen_addr`, which url_parse_listen() accepts, and
 * logs where it can be reached (`scheme` "http" or "https"). Returns 0, or
 * -EINVAL for an address it does not, or a negative errno, with a message in
 * `err`. Refused connections are warned about once per 10 seconds at most.
 */
int listener_open(struct listener *l, const char *listen_addr, const char *scheme, char *err, size_t errlen);

/* Stops accepting connections; those open stay. Idempotent. */
void listener_shutdown(struct listener *l);

/* After listener_shutdown(); connections still closing free what is left when the last one has. */
void listener_free(struct listener *l);

void listener_stats(const struct listener *l, struct listener_stats *out);

#endif
