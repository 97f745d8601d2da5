/* app.c -- start-up, wiring of the services, signals and an orderly shutdown. */
#include "app.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "web.h"
#include "log.h"

#define SHUTDOWN_POLL_MS 20

static struct app *app_of_http(struct http_server *s)
{
    return (struct app *)((char *)s - offsetof(struct app, http));
}

static void on_health(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    struct app *a = data;
    uint64_t uptime = (uv_hrtime() - a->started_ns) / 1000000000u;

    (void)param;
    http_reply_json(req, a->stopping ? 503 : 200,
                    json_pack("{s:s, s:s, s:I}", "status", a->stopping ? "shutting_down" : "ok", "version", PFP_VERSION,
                              "uptime_seconds", (json_int_t)uptime));
}

/* Waits for requests in flight and relay connections to finish, up to the deadline, then stops the loop. */
static void on_shutdown_timer(uv_timer_t *t)
{
    struct app *a = t->data;

    size_t upstream = upstream_open(&a->upstream);

    if ((a->http_drained && a->relay.nconns == 0 && upstream == 0) || uv_now(&a->loop) >= a->shutdown_deadline) {
        if (a->relay.nconns != 0 || upstream != 0)
            log_warn("shutdown: %zu client and %zu upstream connection(s) still open at the deadline", a->relay.nconns,
                     upstream);
        uv_timer_stop(t);
        uv_stop(&a->loop);
    }
}

static void on_http_drained(struct http_server *s, bool timed_out)
{
    (void)timed_out;
    app_of_http(s)->http_drained = true;
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct app *a = h->data;
    const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
    uint64_t timeout = (uint64_t)a->cfg.shutdown_timeout_seconds * 1000;

    if (a->stopping) {
        log_warn("second %s during shutdown: exiting now", name);
        exit(APP_EXIT_FAILURE);
    }
    a->stopping = true;
    log_info("%s: shutting down, waiting up to %lld s for requests in flight", name,
             (long long)a->cfg.shutdown_timeout_seconds);
    relay_shutdown(&a->relay);
    lookup_shutdown(&a->lookup);
    upstream_shutdown(&a->upstream);
    http_server_drain(&a->http, timeout, on_http_drained);
    a->shutdown_deadline = uv_now(&a->loop) + timeout;
    uv_timer_start(&a->shutdown_timer, on_shutdown_timer, 0, SHUTDOWN_POLL_MS);
}

static int config_error(const struct app *a, const char *msg)
{
    fprintf(stderr, "pfpcache-relay: %s: %s\n", a->config_path, msg);
    return APP_EXIT_CONFIG;
}

static int make_data_dirs(const struct config *cfg)
{
    int r;

    if ((r = fs_mkdir_parent(cfg->database_path, 0755)) != 0) {
        log_error("cannot create the directory of \"database_path\" %s: %s", cfg->database_path, strerror(-r));
        return r;
    }
    if ((r = fs_mkdir_p(cfg->media_cache_path, 0755)) != 0) {
        log_error("cannot create \"media_cache_path\" %s: %s", cfg->media_cache_path, strerror(-r));
        return r;
    }
    return 0;
}

/* Starts the services in dependency order. Returns 0, or an exit status after logging why. */
static int start(struct app *a)
{
    char err[1024];
    int r;

    if (make_data_dirs(&a->cfg) != 0)
        return APP_EXIT_FAILURE;
    if ((r = store_open(&a->store, a->cfg.database_path, (uint64_t)a->cfg.database_max_size_mb, &a->inbox, err,
                        sizeof(err))) != 0) {
        log_error("%s", err);
        return APP_EXIT_FAILURE;
    }
    if ((r = workpool_init(&a->verify, (size_t)a->cfg.verify_threads, &a->inbox)) != 0) {
        log_error("cannot start the signature threads: %s", strerror(-r));
        return APP_EXIT_FAILURE;
    }
    lookup_init(&a->lookup, &a->loop, &a->cfg, &a->upstream, &a->store, &a->verify);
    relay_init(&a->relay, &a->cfg, &a->store, &a->verify, &a->lookup);
    if ((r = blobs_init(&a->blobs, a->cfg.media_cache_path, err, sizeof(err))) != 0) {
        log_error("media_cache_path: %s", err);
        return APP_EXIT_FAILURE;
    }
    blobcache_init(&a->picture_bytes, (size_t)a->cfg.memory_cache_mb << 20);
    if ((r = pictures_open(&a->pictures, &a->loop, &a->cfg, &a->store, &a->blobs, &a->picture_bytes)) != 0) {
        log_error("cannot open the picture index: %s", strerror(-r));
        return APP_EXIT_FAILURE;
    }
    a->pictures_ready = true;
    if ((r = fetcher_init(&a->fetcher, &a->loop, &a->cfg)) != 0) {
        log_error("cannot start libcurl");
        return APP_EXIT_FAILURE;
    }
    a->fetcher_ready = true;
    {
        /* Picture files are read on threads of their own, not libuv's pool that getaddrinfo shares. */
        struct pfp_options po = {
            .image_threads = (size_t)a->cfg.image_threads,
            .read_threads = 2,
            .max_concurrent = (size_t)a->cfg.max_concurrent,
            .image = {a->cfg.resize_images, (int)a->cfg.max_image_size, (int)a->cfg.image_quality,
                      a->cfg.max_source_pixels},
            .max_age = (uint64_t)(a->cfg.cache_expiration_days * 86400),
            .precache_on_metadata = a->cfg.precache_on_metadata,
        };
        struct pfp_services sv = {&a->store,         &a->lookup,  &a->pictures, &a->blobs,
                                  &a->picture_bytes, &a->fetcher, &a->inbox};
        r = pfp_init(&a->pfp, &a->loop, &po, &sv, err, sizeof(err));
    }
    if (r != 0) {
        log_error("%s", err);
        return APP_EXIT_FAILURE;
    }
    a->pfp_ready = true;
    if ((r = jobs_open(&a->jobs, &a->loop, &a->store, a->pfp)) != 0) {
        log_error("cannot open the job database: %s", strerror(-r));
        return APP_EXIT_FAILURE;
    }
    a->jobs_ready = true;
    if ((r = store_start(&a->store)) != 0) {
        log_error("cannot start the database writer: %s", strerror(-r));
        return APP_EXIT_FAILURE;
    }
    pictures_start(&a->pictures);
    if ((r = jobs_start(&a->jobs)) != 0) {
        log_error("cannot read the job database: %s", strerror(-r));
        return APP_EXIT_FAILURE;
    }
    auth_init(&a->auth, &a->cfg);
    a->admin = (struct admin){&a->auth, &a->jobs, a->pfp, &a->store, &a->lookup};
    a->stats = (struct stats){.cfg = &a->cfg,
                              .http = &a->http,
                              .store = &a->store,
                              .upstream = &a->upstream,
                              .lookup = &a->lookup,
                              .relay = &a->relay,
                              .pfp = a->pfp,
                              .jobs = &a->jobs,
                              .started_ns = a->started_ns};
    stats_init(&a->stats);

    http_route(&a->http, HTTP_GET, "/health", on_health, a);
    relay_route(&a->relay, &a->http, web_page, NULL);
    pfp_route(a->pfp, &a->http);
    admin_route(&a->admin, &a->http);
    stats_route(&a->stats, &a->http);
    web_route(&a->http);

    if ((r = http_server_listen(&a->http, &a->cfg, err, sizeof(err))) != 0) {
        log_error("%s", err);
        return APP_EXIT_FAILURE;
    }
    return 0;
}

/*
 * Stops what start() started, in the order that loses nothing: the signature
 * threads finish and hand their events to the writer, the writer commits
 * everything queued, and the last completions run on the loop.
 */
static void stop(struct app *a)
{
    if (a->pfp != NULL)
        pfp_shutdown(a->pfp);
    if (a->pictures_ready)
        pictures_shutdown(&a->pictures);
    if (a->verify.threads != NULL)
        workpool_stop(&a->verify);
    inbox_drain(&a->inbox);
    if (a->jobs_ready)
        jobs_shutdown(&a->jobs);
    store_close(&a->store);
    inbox_close(&a->inbox);
    pfp_free(a->pfp);
    a->pfp = NULL;
    if (a->pfp_ready)
        image_shutdown();
    if (a->fetcher_ready)
        fetcher_close(&a->fetcher);
    if (a->pictures_ready)
        pictures_close(&a->pictures);
    blobcache_free(&a->picture_bytes);
    blobs_free(&a->blobs);
    if (a->jobs_ready)
        jobs_free(&a->jobs);
    auth_free(&a->auth);
    relay_free(&a->relay);
    if (a->upstream_ready)
        upstream_free(&a->upstream);
}

int app_run(struct app *a, const char *config_path, bool check_only)
{
    char err[1024];
    int status;

    memset(a, 0, sizeof(*a));
    a->config_path = config_path;
    a->started_ns = uv_hrtime();

    if (config_load(config_path, &a->cfg, err, sizeof(err)) != 0)
        return config_error(a, err);
    log_level_parse(a->cfg.log_level, &log_threshold);

    uv_loop_init(&a->loop);
    inbox_init(&a->inbox, &a->loop);
    if (http_server_init(&a->http, &a->loop, &a->cfg, err, sizeof(err)) != 0 ||
        upstream_init(&a->upstream, &a->loop, &a->cfg, err, sizeof(err)) != 0) {
        status = config_error(a, err);
        goto out;
    }
    a->upstream_ready = true;
    if (check_only) {
        printf("%s: configuration OK\n", config_path);
        status = APP_EXIT_OK;
        goto out;
    }
    if ((status = start(a)) != 0)
        goto out;

    uv_signal_init(&a->loop, &a->sigint);
    uv_signal_init(&a->loop, &a->sigterm);
    uv_timer_init(&a->loop, &a->shutdown_timer);
    a->sigint.data = a->sigterm.data = a->shutdown_timer.data = a;
    uv_signal_start(&a->sigint, on_signal, SIGINT);
    uv_signal_start(&a->sigterm, on_signal, SIGTERM);

    uv_run(&a->loop, UV_RUN_DEFAULT);

    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->shutdown_timer, NULL);
    status = APP_EXIT_OK;

out:
    stop(a);
    http_server_close(&a->http);
    /* Let close callbacks run; connections still open are dropped with the process. */
    uv_run(&a->loop, UV_RUN_NOWAIT);
    if (status == APP_EXIT_OK && !check_only)
        log_info("stopped");
    config_free(&a->cfg);
    return status;
}
