/* fetch.h -- picture downloads: libcurl's multi interface on the libuv loop, bounded in size and time, guarded. */
#ifndef PFP_FETCH_H
#define PFP_FETCH_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "netguard.h"

enum fetch_error {
    FETCH_OK,
    FETCH_BAD_URL,         /* not http(s) or data:, or unparsable */
    FETCH_REFUSED_ADDRESS, /* every address was one the guard refuses */
    FETCH_TOO_BIG,         /* more than max_source_bytes */
    FETCH_TIMEOUT,
    FETCH_HTTP_STATUS, /* an answer other than 2xx */
    FETCH_REDIRECTS,   /* more than 5 redirects, or a redirect to another scheme */
    FETCH_NETWORK,     /* DNS, TLS, connection reset... */
};

/* A stable name for the error, as logs and metrics label it: "timeout", "too_big", ... */
const char *fetch_error_name(enum fetch_error e);

/* What a download produced. `body` belongs to the fetch; the callback may take it and set it to NULL. */
struct fetch_result {
    enum fetch_error error;
    long http_status;
    char detail[256]; /* for logs: what went wrong, in words */
    uint8_t *body;
    size_t len;
};

/* Called once, on the loop thread, never from inside fetch_start(). The fetch is freed after it returns. */
typedef void (*fetch_cb)(void *data, struct fetch_result *res);

struct fetch;

struct fetcher {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    uv_timer_t ready_timer;  /* answers that need no transfer (data: URIs, bad URLs) */
    struct fetch *ready;     /* answered, to be delivered from the loop */
    struct fetch *transfers; /* under way in libcurl */
    struct netguard guard;
    size_t max_bytes;
    long connect_timeout_ms, timeout_ms;
    struct curl_slist *headers;
    size_t active;
};

/* Returns 0, or a negative error when libcurl cannot be set up. */
int fetcher_init(struct fetcher *fr, uv_loop_t *loop, const struct config *cfg);

/* Starts downloading `url` (http, https or a base64 data: URI). The URL is copied. */
struct fetch *fetch_start(struct fetcher *fr, const char *url, fetch_cb cb, void *data);

/* Abandons a download: its callback is not called. */
void fetch_cancel(struct fetch *f);

/* Abandons every download and releases libcurl; the fetcher's handles close with the loop. */
void fetcher_close(struct fetcher *fr);

#endif
