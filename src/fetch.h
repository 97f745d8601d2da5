/*
 * fetch.h -- picture downloads: libcurl multi on the libuv loop, bounded in size,
 * time and speed, guarded; a connection is reused only after a clean answer.
 */
#ifndef PFP_FETCH_H
#define PFP_FETCH_H

#include <curl/curl.h>
#include <h2o/linklist.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "netguard.h"

enum fetch_error {
    FETCH_OK,
    FETCH_BAD_URL,         /* not http(s), or unparsable */
    FETCH_REFUSED_ADDRESS, /* every address was one the guard refuses */
    FETCH_TOO_BIG,         /* more than the options' max_bytes */
    FETCH_TIMEOUT,
    FETCH_HTTP_STATUS, /* an answer other than 2xx */
    FETCH_REDIRECTS,   /* more than 5 redirects, a redirect to another scheme, or any with no_redirects */
    FETCH_NETWORK,     /* DNS, TLS, connection reset... */
    FETCH_TOO_SLOW,    /* slower than the options' min_speed_bytes for min_speed_seconds */
};

/* How many values enum fetch_error has, for arrays counted by error. */
#define FETCH_ERRORS (FETCH_TOO_SLOW + 1)

/* A stable name for the error, as logs and metrics label it: "timeout", "too_big", ... */
const char *fetch_error_name(enum fetch_error e);

/* The most response headers a fetcher keeps (fetch_options.keep_headers). */
#define FETCH_KEPT_MAX 16

/* A response header kept, as the last answer (after redirects) had it. */
struct fetch_header {
    const char *name; /* the fetcher's keep_headers entry */
    char *value;      /* the fetch's */
};

/* What a download produced. `body` belongs to the fetch; the callback may take it and set it to NULL. */
struct fetch_result {
    enum fetch_error error;
    long http_status;
    char detail[256]; /* for logs: what went wrong, in words */
    uint8_t *body;
    size_t len;
    struct fetch_header kept[FETCH_KEPT_MAX]; /* those of keep_headers the answer had */
    size_t nkept;
};

/* Called once, on the loop thread, never from inside fetch_start(). The fetch is freed after it returns. */
typedef void (*fetch_cb)(void *data, struct fetch_result *res);

struct fetch;

/* What downloads may do. The strings stay the caller's and must outlive the fetcher. */
struct fetch_options {
    size_t max_bytes;           /* the largest body, counted as it arrives */
    const char *max_bytes_name; /* how a FETCH_TOO_BIG detail names that limit (the configuration's key) */
    long connect_timeout_ms, timeout_ms;
    /* Once connected, a download slower than min_speed_bytes a second for min_speed_seconds ends (0: never). */
    long min_speed_bytes, min_speed_seconds;
    struct netguard_options guard;
    bool no_redirects;   /* a redirect is FETCH_REDIRECTS (NIP-05 forbids them); else up to 5 are followed */
    const char *accept;  /* the Accept header; NULL: pictures' */
    const char *ca_file; /* PEM certificates trusted besides the system's; NULL or "": the system's only */
    /* Every complete answer is FETCH_OK, whatever its status (in http_status), with its body: for a fetcher that
       relays answers rather than downloading pictures. */
    bool any_status;
    const char *const *keep_headers; /* names of response headers to keep, NULL-terminated (at most FETCH_KEPT_MAX) */
};

struct fetch_stats {
    /* Kept-alive connections closed before any reuse: after a failed download, or because bytes or a close
       arrived while no request was waiting for them (a response longer than it said). */
    uint64_t connections_closed;
};

struct watch;

/* Embedded in its owner; the fields are private to fetch.c. */
struct fetcher {
    uv_loop_t *_loop;
    CURLM *_multi;
    uv_timer_t _timer;
    uv_timer_t _ready_timer;   /* answers that need no transfer (bad URLs) */
    h2o_linklist_t _ready;     /* answered, to be delivered from the loop */
    h2o_linklist_t _transfers; /* under way in libcurl */
    struct netguard _guard;
    struct fetch_options _opts;
    struct curl_slist *_headers;
    size_t _active;
    struct watch **_sockets; /* by descriptor: the sockets the fetcher opened for libcurl, until it closes them */
    size_t _nsockets;        /* room in _sockets */
    struct fetch_stats _stats;
    unsigned _closing;         /* handles still closing after fetcher_free() */
    void (*_freed)(void *ctx); /* fetcher_free_then()'s */
    void *_freed_ctx;
};

/*
 * Sets `fr` up on `loop`. Returns 0, -ENOMEM when libcurl cannot be set up (with
 * `err` saying so), or -EINVAL when a network of `o->guard` does not parse (with
 * `err` quoting it). Call fetcher_free() in either case.
 */
int fetcher_init(struct fetcher *fr, uv_loop_t *loop, const struct fetch_options *o, char *err, size_t errlen);

/*
 * Starts downloading `url` (http or https). The URL is copied.
 * The fetch is the fetcher's: it is freed after its callback returns, or by
 * fetch_cancel().
 */
struct fetch *fetch_start(struct fetcher *fr, const char *url, fetch_cb cb, void *data);

/*
 * As fetch_start(), with request headers of its own ("Name: value" each, NULL-terminated; copied), which take the
 * place of the fetcher's of the same name, and with `method` (NULL: GET; "HEAD" asks for no body; static).
 */
struct fetch *fetch_start_with(struct fetcher *fr, const char *url, const char *const *headers, const char *method,
                               fetch_cb cb, void *data);

/* Abandons a download: its callback is not called. */
void fetch_cancel(struct fetch *f);

/* Abandons every download and releases libcurl; the fetcher's handles close with the loop. */
void fetcher_free(struct fetcher *fr);

/* As fetcher_free(), then `done(ctx)` once its handles have closed: the memory holding `fr` may go then. */
void fetcher_free_then(struct fetcher *fr, void (*done)(void *ctx), void *ctx);

void fetcher_stats(const struct fetcher *fr, struct fetch_stats *out);

#endif
