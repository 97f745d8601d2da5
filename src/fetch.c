/*
 * fetch.c -- picture downloads: libcurl multi on the libuv loop, bounded in size,
 * time and speed, guarded; a connection is reused only after a clean answer.
 */
#include "fetch.h"

#include <errno.h>
#include <h2o/memory.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

struct fetch {
    struct fetcher *fr;
    CURL *easy;
    fetch_cb cb;
    void *data;
    struct buf body;
    struct fetch_result res;
    bool too_big;
    char refused[128]; /* the guard's reason, when it refused an address; "" otherwise */
    char errbuf[CURL_ERROR_SIZE];
    char *url;
    struct curl_slist *headers; /* the fetcher's and the fetch's own, when it has any */
    h2o_linklist_t link;        /* in the fetcher's list of transfers, or of ready answers */
};

/*
 * A socket libcurl asked to be watched. Those the fetcher opened for it stay
 * until libcurl closes them, and are watched while their connection waits in
 * libcurl's pool: nothing may arrive then.
 */
struct watch {
    uv_poll_t poll;
    curl_socket_t fd;
    struct fetcher *fr;
    bool owned;   /* opened by on_open_socket(), closed by on_close_socket() */
    bool busy;    /* a transfer uses it: libcurl has asked for it since it last removed it */
    bool retired; /* shut down: it carries no further request */
};

const char *fetch_error_name(enum fetch_error e)
{
    switch (e) {
    case FETCH_OK: return "ok";
    case FETCH_BAD_URL: return "bad_url";
    case FETCH_REFUSED_ADDRESS: return "refused_address";
    case FETCH_TOO_BIG: return "too_big";
    case FETCH_TIMEOUT: return "timeout";
    case FETCH_HTTP_STATUS: return "http_status";
    case FETCH_REDIRECTS: return "redirects";
    case FETCH_NETWORK: return "network";
    case FETCH_TOO_SLOW: return "too_slow";
    }
    return "network";
}

static void fetch_free(struct fetch *f)
{
    buf_free(&f->body);
    free(f->res.body);
    free(f->url);
    for (size_t i = 0; i < f->res.nkept; i++)
        free(f->res.kept[i].value);
    curl_slist_free_all(f->headers);
    free(f);
}

/* The answer's headers the fetcher keeps, read before the handle goes. */
static void keep_headers(struct fetcher *fr, struct fetch *f, CURL *easy)
{
    for (const char *const *n = fr->_opts.keep_headers; n != NULL && *n != NULL && f->res.nkept < FETCH_KEPT_MAX; n++) {
        struct curl_header *h;

        if (curl_easy_header(easy, *n, 0, CURLH_HEADER, -1, &h) != CURLHE_OK)
            continue;
        f->res.kept[f->res.nkept].name = *n;
        if ((f->res.kept[f->res.nkept++].value = strdup(h->value)) == NULL)
            abort();
    }
}

static void deliver(struct fetch *f)
{
    if (f->res.error == FETCH_OK) {
        f->res.len = f->body.len;
        f->res.body = (uint8_t *)buf_steal(&f->body);
    }
    f->cb(f->data, &f->res);
    fetch_free(f);
}

/* --- transfers ---------------------------------------------------------------------------------------------- */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userp)
{
    struct fetch *f = userp;
    size_t n = size * nmemb;

    /* Counted as it arrives, whatever Content-Length claimed. */
    if (f->body.len + n > f->fr->_opts.max_bytes) {
        f->too_big = true;
        return 0;
    }
    buf_append(&f->body, ptr, n);
    return n;
}

/* --- the sockets the fetcher opens for libcurl ------------------------------------------------------------------ */

static void on_watch_closed(uv_handle_t *h)
{
    free(h->data);
}

static struct watch *new_watch(struct fetcher *fr, curl_socket_t fd)
{
    struct watch *w = calloc(1, sizeof(*w));

    if (w == NULL)
        abort();
    w->fd = fd;
    w->fr = fr;
    if (uv_poll_init_socket(fr->_loop, &w->poll, fd) != 0) {
        free(w);
        return NULL;
    }
    w->poll.data = w;
    return w;
}

static void close_watch(struct watch *w)
{
    uv_poll_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, on_watch_closed);
}

/* The watch of a socket the fetcher opened and libcurl has not closed, or NULL. */
static struct watch *owned(const struct fetcher *fr, curl_socket_t fd)
{
    return fd >= 0 && (size_t)fd < fr->_nsockets ? fr->_sockets[fd] : NULL;
}

/*
 * Makes sure no further request goes over this connection: a response that ran
 * past its end, or a failed one, leaves the stream where the next answer cannot
 * be trusted. Shut down and emptied, the socket reads as closed, and libcurl's
 * check of a pooled connection before reuse drops it.
 */
static void retire(struct watch *w)
{
    char sink[4096];

    if (w->retired)
        return;
    w->retired = true;
    uv_poll_stop(&w->poll);
    shutdown(w->fd, SHUT_RDWR);
    while (recv(w->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
        ;
    w->fr->_stats.connections_closed++;
}

/* Bytes, or a close, on a connection waiting in libcurl's pool: no request is waiting for them. */
static void on_idle(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    retire(h->data);
}

/* Every connection, first or after a redirect, to each address DNS gave, passes here before it is made. */
static curl_socket_t on_open_socket(void *userp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct fetch *f = userp;
    struct fetcher *fr = f->fr;
    curl_socket_t fd;
    struct watch *w;

    (void)purpose;
    if (netguard_check(&fr->_guard, &addr->addr, f->refused, sizeof(f->refused)) != 0)
        return CURL_SOCKET_BAD;
    if ((fd = socket(addr->family, addr->socktype, addr->protocol)) < 0)
        return CURL_SOCKET_BAD;
    if ((size_t)fd >= fr->_nsockets) {
        size_t n = (size_t)fd + 64;
        struct watch **grown = realloc(fr->_sockets, n * sizeof(*grown));
        if (grown == NULL)
            abort();
        memset(grown + fr->_nsockets, 0, (n - fr->_nsockets) * sizeof(*grown));
        fr->_sockets = grown;
        fr->_nsockets = n;
    }
    if ((w = new_watch(fr, fd)) == NULL) {
        close(fd);
        return CURL_SOCKET_BAD;
    }
    w->owned = true;
    fr->_sockets[fd] = w;
    return fd;
}

/* libcurl is done with a socket the fetcher opened: its pooled connection was dropped, or never got used. */
static int on_close_socket(void *userp, curl_socket_t fd)
{
    struct fetcher *fr = userp;
    struct watch *w = owned(fr, fd);

    if (w != NULL) {
        fr->_sockets[fd] = NULL;
        close_watch(w);
    }
    return close(fd);
}

/* The detail of FETCH_TOO_BIG. */
static void too_big(struct fetch *f)
{
    f->res.error = FETCH_TOO_BIG;
    snprintf(f->res.detail, sizeof(f->res.detail), "larger than %s (%zu bytes)", f->fr->_opts.max_bytes_name,
             f->fr->_opts.max_bytes);
}

/*
 * A failed download whose connection libcurl kept for reuse: it is closed
 * instead. One that other transfers still share (HTTP/2) is left to them.
 */
static void retire_connection(struct fetcher *fr, CURL *easy)
{
    curl_socket_t s;
    struct watch *w;

    if (curl_easy_getinfo(easy, CURLINFO_ACTIVESOCKET, &s) == CURLE_OK && (w = owned(fr, s)) != NULL && !w->busy)
        retire(w);
}

static void finish_transfer(struct fetcher *fr, CURL *easy, CURLcode rc)
{
    struct fetch *f;
    struct fetch_result *res;

    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&f);
    res = &f->res;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &res->http_status);
    if (rc == CURLE_OK && fr->_opts.any_status) {
        /* Redirects and 304s included: they are answers to pass on. */
        res->error = FETCH_OK;
    } else if (rc == CURLE_OK && fr->_opts.no_redirects && res->http_status >= 300 && res->http_status <= 399) {
        res->error = FETCH_REDIRECTS;
        snprintf(res->detail, sizeof(res->detail), "a redirect (%ld), which is not followed", res->http_status);
    } else if (rc == CURLE_OK && (res->http_status < 200 || res->http_status > 299)) {
        res->error = FETCH_HTTP_STATUS;
        snprintf(res->detail, sizeof(res->detail), "the server answered %ld", res->http_status);
    } else if (rc == CURLE_OK) {
        res->error = FETCH_OK;
    } else if (f->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        too_big(f);
    } else if (f->refused[0] != '\0' && (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)) {
        res->error = FETCH_REFUSED_ADDRESS;
        snprintf(res->detail, sizeof(res->detail), "refused address: %s", f->refused);
    } else if (rc == CURLE_OPERATION_TIMEDOUT && strncmp(f->errbuf, "Operation too slow", 18) == 0) {
        /* libcurl ends its speed check and its timeouts with the same code; only its message tells them apart. */
        res->error = FETCH_TOO_SLOW;
        snprintf(res->detail, sizeof(res->detail), "less than %ld bytes a second for %ld seconds",
                 fr->_opts.min_speed_bytes, fr->_opts.min_speed_seconds);
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        res->error = FETCH_TIMEOUT;
        snprintf(res->detail, sizeof(res->detail), "timed out: %.200s", f->errbuf[0] ? f->errbuf : "no detail");
    } else if (rc == CURLE_TOO_MANY_REDIRECTS || rc == CURLE_UNSUPPORTED_PROTOCOL) {
        res->error = FETCH_REDIRECTS;
        snprintf(res->detail, sizeof(res->detail), "%s", f->errbuf[0] ? f->errbuf : curl_easy_strerror(rc));
    } else if (rc == CURLE_URL_MALFORMAT) {
        res->error = FETCH_BAD_URL;
        snprintf(res->detail, sizeof(res->detail), "malformed URL");
    } else {
        res->error = FETCH_NETWORK;
        snprintf(res->detail, sizeof(res->detail), "%s", f->errbuf[0] ? f->errbuf : curl_easy_strerror(rc));
    }
    if (res->error == FETCH_OK)
        keep_headers(fr, f, easy);
    else
        retire_connection(fr, easy);
    curl_multi_remove_handle(fr->_multi, easy);
    curl_easy_cleanup(easy);
    f->easy = NULL;
    h2o_linklist_unlink(&f->link);
    fr->_active--;
    deliver(f);
}

static void check_done(struct fetcher *fr)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(fr->_multi, &left)) != NULL) {
        if (msg->msg == CURLMSG_DONE)
            finish_transfer(fr, msg->easy_handle, msg->data.result);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct watch *w = h->data;
    int flags = 0, running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(w->fr->_multi, w->fd, flags, &running);
    check_done(w->fr);
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct fetcher *fr = userp;
    struct watch *w = socketp != NULL ? socketp : owned(fr, s);
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (w == NULL)
            return 0;
        curl_multi_assign(fr->_multi, s, NULL);
        w->busy = false;
        if (!w->owned)
            close_watch(w);
        else if (w->retired)
            uv_poll_stop(&w->poll);
        else
            uv_poll_start(&w->poll, UV_READABLE | UV_DISCONNECT, on_idle);
        return 0;
    }
    /* Not one the fetcher opened: a socket of libcurl's own, such as its resolver's. */
    if (w == NULL && (w = new_watch(fr, s)) == NULL)
        abort();
    w->busy = true;
    curl_multi_assign(fr->_multi, s, w);
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&w->poll, events, on_poll);
    return 0;
}

static void on_timeout(uv_timer_t *t)
{
    struct fetcher *fr = t->data;
    int running;

    curl_multi_socket_action(fr->_multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(fr);
}

static int on_timer_change(CURLM *multi, long timeout_ms, void *userp)
{
    struct fetcher *fr = userp;

    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&fr->_timer);
    else
        uv_timer_start(&fr->_timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* --- answers without a transfer ----------------------------------------------------------------------------- */

static void on_ready(uv_timer_t *t)
{
    struct fetcher *fr = t->data;

    while (!h2o_linklist_is_empty(&fr->_ready)) {
        struct fetch *f = H2O_STRUCT_FROM_MEMBER(struct fetch, link, fr->_ready.next);
        h2o_linklist_unlink(&f->link);
        deliver(f);
    }
}

static void answer_later(struct fetch *f)
{
    h2o_linklist_insert(&f->fr->_ready, &f->link);
    uv_timer_start(&f->fr->_ready_timer, on_ready, 0, 0);
}

/* Whether `headers` has one of the name `line` ("Name: value") has. */
static bool names_header(const char *const *headers, const char *line)
{
    size_t n = strcspn(line, ":");

    for (size_t i = 0; headers[i] != NULL; i++)
        if (strncasecmp(headers[i], line, n) == 0 && headers[i][n] == ':')
            return true;
    return false;
}

struct fetch *fetch_start(struct fetcher *fr, const char *url, fetch_cb cb, void *data)
{
    return fetch_start_with(fr, url, NULL, NULL, cb, data);
}

struct fetch *fetch_start_with(struct fetcher *fr, const char *url, const char *const *headers, const char *method,
                               fetch_cb cb, void *data)
{
    struct fetch *f = calloc(1, sizeof(*f));
    CURL *e;

    if (f == NULL || (f->url = strdup(url)) == NULL)
        abort();
    f->fr = fr;
    f->cb = cb;
    f->data = data;

    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
        f->res.error = FETCH_BAD_URL;
        snprintf(f->res.detail, sizeof(f->res.detail), "not an http or https URL");
        answer_later(f);
        return f;
    }

    if ((e = curl_easy_init()) == NULL)
        abort();
    f->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, f->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, f);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, fr->_opts.no_redirects ? 0L : 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
    if (fr->_opts.ca_file != NULL && fr->_opts.ca_file[0] != '\0')
        curl_easy_setopt(e, CURLOPT_CAINFO, fr->_opts.ca_file);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, fr->_opts.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, fr->_opts.timeout_ms);
    if (fr->_opts.min_speed_bytes > 0) {
        /* An origin that accepts and then sends nothing, or next to nothing, lets go of its slot early. */
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, fr->_opts.min_speed_bytes);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, fr->_opts.min_speed_seconds);
    }
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    /* A proxy from the environment would be the only address the guard sees. */
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "pfpcache-relay/" PFP_VERSION);
    if (headers != NULL && headers[0] != NULL) {
        for (struct curl_slist *l = fr->_headers; l != NULL; l = l->next)
            if (!names_header(headers, l->data))
                f->headers = curl_slist_append(f->headers, l->data);
        for (size_t i = 0; headers[i] != NULL; i++)
            f->headers = curl_slist_append(f->headers, headers[i]);
        if (f->headers == NULL)
            abort();
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->headers != NULL ? f->headers : fr->_headers);
    if (method != NULL && strcmp(method, "HEAD") == 0)
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (method != NULL)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)fr->_opts.max_bytes);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, f);
    /* libcurl closes a pooled connection long after the fetch that opened it: the fetcher hears of it. */
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, fr);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, f->errbuf);
    fr->_active++;
    h2o_linklist_insert(&fr->_transfers, &f->link);
    curl_multi_add_handle(fr->_multi, e);
    return f;
}

void fetch_cancel(struct fetch *f)
{
    struct fetcher *fr = f->fr;

    if (f->easy != NULL) {
        curl_multi_remove_handle(fr->_multi, f->easy);
        curl_easy_cleanup(f->easy);
        fr->_active--;
    }
    h2o_linklist_unlink(&f->link);
    fetch_free(f);
}

int fetcher_init(struct fetcher *fr, uv_loop_t *loop, const struct fetch_options *o, char *err, size_t errlen)
{
    char accept[256];
    int r;

    memset(fr, 0, sizeof(*fr));
    h2o_linklist_init_anchor(&fr->_ready);
    h2o_linklist_init_anchor(&fr->_transfers);
    if ((r = netguard_init(&fr->_guard, &o->guard, err, errlen)) != 0)
        return r;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (fr->_multi = curl_multi_init()) == NULL) {
        netguard_free(&fr->_guard);
        snprintf(err, errlen, "cannot start libcurl");
        return -ENOMEM;
    }
    fr->_loop = loop;
    fr->_opts = *o;
    snprintf(accept, sizeof(accept), "Accept: %s",
             o->accept != NULL ? o->accept : "image/avif,image/webp,image/png,image/jpeg,image/gif,*/*;q=0.5");
    fr->_headers = curl_slist_append(NULL, accept);
    uv_timer_init(loop, &fr->_timer);
    uv_timer_init(loop, &fr->_ready_timer);
    fr->_timer.data = fr->_ready_timer.data = fr;
    curl_multi_setopt(fr->_multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(fr->_multi, CURLMOPT_SOCKETDATA, fr);
    curl_multi_setopt(fr->_multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
    curl_multi_setopt(fr->_multi, CURLMOPT_TIMERDATA, fr);
    return 0;
}

static void cancel_all(h2o_linklist_t *list)
{
    while (!h2o_linklist_is_empty(list))
        fetch_cancel(H2O_STRUCT_FROM_MEMBER(struct fetch, link, list->next));
}

static void on_handle_closed(uv_handle_t *h)
{
    struct fetcher *fr = h->data;

    if (--fr->_closing == 0 && fr->_freed != NULL)
        fr->_freed(fr->_freed_ctx);
}

void fetcher_free_then(struct fetcher *fr, void (*done)(void *ctx), void *ctx)
{
    if (fr->_multi == NULL) {
        done(ctx);
        return;
    }
    fr->_freed = done;
    fr->_freed_ctx = ctx;
    fetcher_free(fr);
}

void fetcher_free(struct fetcher *fr)
{
    if (fr->_multi == NULL)
        return;
    cancel_all(&fr->_ready);
    cancel_all(&fr->_transfers);
    curl_multi_cleanup(fr->_multi);
    fr->_multi = NULL;
    free(fr->_sockets);
    fr->_sockets = NULL;
    curl_slist_free_all(fr->_headers);
    netguard_free(&fr->_guard);
    fr->_closing = 2;
    uv_close((uv_handle_t *)&fr->_timer, on_handle_closed);
    uv_close((uv_handle_t *)&fr->_ready_timer, on_handle_closed);
    curl_global_cleanup();
}

void fetcher_stats(const struct fetcher *fr, struct fetch_stats *out)
{
    *out = fr->_stats;
}
