/* listener.c -- the listening socket, its accept loop, the cap per client address, and running out of descriptors. */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keymap.h"
#include "log.h"
#include "url.h"

/* Connections accepted per readable event, so that a burst does not hold the loop. */
#define ACCEPT_BATCH 64
/* At most one warning per this long about refused connections, of each kind. */
#define REFUSAL_LOG_MS 10000

/* One accepted connection: its TCP handle and the address it counts against. */
struct conn {
    uv_tcp_t tcp;
    struct listener *server;
    uint8_t ip[16]; /* IPv6, or IPv4 mapped into it */
    bool counted;   /* against max_connections_per_ip */
};

/* The client's address as 16 bytes, IPv4 mapped (::ffff:a.b.c.d) so that both listeners' forms agree. */
static void ip_key(const struct sockaddr_storage *ss, uint8_t key[16])
{
    if (ss->ss_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
        return;
    }
    memset(key, 0, 10);
    key[10] = key[11] = 0xff;
    memcpy(key + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
}

/* 127.0.0.1 and ::1: tests and a reverse proxy on the same machine, never capped. Other loopback addresses are. */
static bool ip_exempt(const uint8_t key[16])
{
    static const uint8_t v4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
    static const uint8_t v6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return memcmp(key, v4, 16) == 0 || memcmp(key, v6, 16) == 0;
}

static void ip_format(const uint8_t key[16], char *out, size_t len)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

    if (memcmp(key, mapped, 12) == 0)
        inet_ntop(AF_INET, key + 12, out, (socklen_t)len);
    else
        inet_ntop(AF_INET6, key, out, (socklen_t)len);
}

/* Whether a warning of a kind last given at `*at` may be given now. */
static bool may_warn(struct listener *s, uint64_t *at)
{
    uint64_t now = uv_now(s->_loop);

    if (*at != 0 && now - *at < REFUSAL_LOG_MS)
        return false;
    *at = now;
    return true;
}

static void on_conn_closed(uv_handle_t *h)
{
    struct conn *c = H2O_STRUCT_FROM_MEMBER(struct conn, tcp, (uv_tcp_t *)h);
    struct listener *s = c->server;
    size_t *n;

    if (c->counted && (n = keymap_get(s->_per_ip, c->ip)) != NULL && --*n == 0)
        free(keymap_del(s->_per_ip, c->ip));
    free(c);
    if (--s->_stats.connections == 0 && s->_freed) {
        keymap_free(s->_per_ip, free);
        s->_per_ip = NULL;
    }
}

/* Hands an accepted socket to h2o, unless its address has max_connections_per_ip open already. */
static void admit(struct listener *s, int fd, const struct sockaddr_storage *ss)
{
    struct conn *c;
    uint8_t ip[16];
    size_t *n = NULL;

    ip_key(ss, ip);
    if (s->_max_per_ip > 0 && !ip_exempt(ip)) {
        if ((n = keymap_get(s->_per_ip, ip)) != NULL && *n >= s->_max_per_ip) {
            char addr[INET6_ADDRSTRLEN];
            close(fd);
            s->_stats.refused_per_ip++;
            if (may_warn(s, &s->_per_ip_logged_at)) {
                ip_format(ip, addr, sizeof(addr));
                log_warn("accept: refusing connections from %s, which has %zu open (max_connections_per_ip); %llu "
                         "refused so far",
                         addr, *n, (unsigned long long)s->_stats.refused_per_ip);
            }
            return;
        }
        if (n == NULL) {
            if ((n = calloc(1, sizeof(*n))) == NULL)
                abort();
            keymap_put(s->_per_ip, ip, n);
        }
        ++*n;
    }
    if ((c = calloc(1, sizeof(*c))) == NULL)
        abort();
    c->server = s;
    memcpy(c->ip, ip, 16);
    c->counted = n != NULL;
    s->_stats.connections++;
    uv_tcp_init(s->_loop, &c->tcp);
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    h2o_accept(s->_accept_ctx, h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_closed));
}

/*
 * No file descriptor is left for the connections waiting: the reserved one is
 * given up to accept each and close it at once (otherwise they would wait, and
 * the listening socket stay readable, forever), and an operator is told.
 */
static void out_of_descriptors(struct listener *s, int err)
{
    struct rlimit rl = {0, 0};
    uint64_t dropped = 0;
    int fd;

    if (s->_reserve_fd >= 0) {
        close(s->_reserve_fd);
        while ((fd = accept4(s->_listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0 || errno == EINTR) {
            if (fd >= 0) {
                close(fd);
                dropped++;
            }
        }
        s->_reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    s->_stats.refused_no_fd += dropped;
    if (may_warn(s, &s->_no_fd_logged_at)) {
        getrlimit(RLIMIT_NOFILE, &rl);
        log_warn("accept: %s (%zu connections open, soft RLIMIT_NOFILE %llu): closing new connections at once, %llu "
                 "so far; raise LimitNOFILE",
                 strerror(err), s->_stats.connections, (unsigned long long)rl.rlim_cur,
                 (unsigned long long)s->_stats.refused_no_fd);
    }
}

static void on_acceptable(uv_poll_t *p, int status, int events)
{
    struct listener *s = p->data;
    struct sockaddr_storage ss;
    socklen_t len;
    int fd;

    (void)events;
    if (status != 0) {
        log_warn("accept: %s", uv_strerror(status));
        return;
    }
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        len = sizeof(ss);
        if ((fd = accept4(s->_listen_fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
            admit(s, fd, &ss);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE)
            out_of_descriptors(s, errno);
        else if (errno != EAGAIN && errno != EWOULDBLOCK)
            log_warn("accept: %s", strerror(errno));
        return;
    }
}

static void format_url(struct listener *s, const char *scheme, bool wildcard)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN + 2] = "localhost";
    int port;

    getsockname(s->_listen_fd, (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        port = ntohs(sin6->sin6_port);
        if (!wildcard) {
            char a[INET6_ADDRSTRLEN];
            inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a));
            snprintf(host, sizeof(host), "[%s]", a);
        }
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        port = ntohs(sin->sin_port);
        if (!wildcard)
            inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
    }
    snprintf(s->_url, sizeof(s->_url), "%s://%s:%d", scheme, host, port);
}

/* A listening socket on `addr`; IPv6 ones take IPv4 too, as the system's default is. Returns it or -errno. */
static int open_listener(const struct sockaddr_storage *addr)
{
    socklen_t len = addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1, r;

    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (const struct sockaddr *)addr, len) != 0 || listen(fd, SOMAXCONN) != 0) {
        r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

static void on_listener_closed(uv_handle_t *h)
{
    struct listener *s = h->data;

    close(s->_listen_fd);
    s->_listen_fd = -1;
    if (s->_reserve_fd >= 0)
        close(s->_reserve_fd);
    s->_reserve_fd = -1;
}

void listener_shutdown(struct listener *s)
{
    if (!s->_listening)
        return;
    s->_listening = false;
    uv_close((uv_handle_t *)&s->_accept, on_listener_closed);
}

int listener_open(struct listener *s, const char *listen_addr, const char *scheme, char *err, size_t errlen)
{
    struct sockaddr_storage addr;
    bool wildcard;
    int fd, r;

    if (url_parse_listen(listen_addr, &addr, &wildcard) != 0) {
        snprintf(err, errlen, "cannot listen on \"%s\": not an address and port", listen_addr);
        return -EINVAL;
    }
    fd = open_listener(&addr);
    if (fd == -EAFNOSUPPORT && wildcard) {
        /* A host without IPv6 still serves ":port" on every IPv4 interface. */
        struct sockaddr_storage any = {.ss_family = AF_INET};
        ((struct sockaddr_in *)&any)->sin_port = ((struct sockaddr_in6 *)&addr)->sin6_port;
        fd = open_listener(&any);
    }
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on \"%s\": %s", listen_addr, strerror(-fd));
        return fd;
    }
    if ((r = uv_poll_init_socket(s->_loop, &s->_accept, fd)) != 0) {
        close(fd);
        snprintf(err, errlen, "cannot listen on \"%s\": %s", listen_addr, uv_strerror(r));
        return r;
    }
    s->_listen_fd = fd;
    s->_reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    s->_accept.data = s;
    s->_listening = true;
    uv_poll_start(&s->_accept, UV_READABLE, on_acceptable);
    format_url(s, scheme, wildcard);
    log_info("listening on %s", s->_url);
    return 0;
}

void listener_init(struct listener *s, uv_loop_t *loop, h2o_accept_ctx_t *accept_ctx, size_t max_per_ip)
{
    memset(s, 0, sizeof(*s));
    s->_loop = loop;
    s->_accept_ctx = accept_ctx;
    s->_listen_fd = s->_reserve_fd = -1;
    s->_max_per_ip = max_per_ip;
    s->_per_ip = keymap_new(16);
}

void listener_free(struct listener *s)
{
    listener_shutdown(s);
    /* Connections still closing count themselves off the map when they have: the last one frees it. */
    s->_freed = true;
    if (s->_stats.connections == 0) {
        keymap_free(s->_per_ip, free);
        s->_per_ip = NULL;
    }
}

void listener_stats(const struct listener *s, struct listener_stats *out)
{
    *out = s->_stats;
}
