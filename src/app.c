/* app.c -- start-up, wiring of the services, signals and an orderly shutdown. */
#include "app.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "log.h"

static void on_health(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    struct app *a = data;
    uint64_t uptime = (uv_hrtime() - a->started_ns) / 1000000000u;
    bool draining = a->http.draining;

    (void)param;
    http_reply_json(req, draining ? 503 : 200,
                    json_pack("{s:s, s:s, s:I}", "status", draining ? "shutting_down" : "ok", "version", PFP_VERSION,
                              "uptime_seconds", (json_int_t)uptime));
}

static void on_drained(struct http_server *s, bool timed_out)
{
    struct app *a = (struct app *)((char *)s - offsetof(struct app, http));

    (void)timed_out;
    uv_stop(&a->loop);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct app *a = h->data;
    const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";

    if (a->stopping) {
        log_warn("second %s during shutdown: exiting now", name);
        exit(APP_EXIT_FAILURE);
    }
    a->stopping = true;
    log_info("%s: shutting down, waiting up to %lld s for requests in flight", name,
             (long long)a->cfg.shutdown_timeout_seconds);
    http_server_drain(&a->http, (uint64_t)a->cfg.shutdown_timeout_seconds * 1000, on_drained);
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

int app_run(struct app *a, const char *config_path, bool check_only)
{
    char err[1024];
    int status = APP_EXIT_FAILURE;
    int r;

    memset(a, 0, sizeof(*a));
    a->config_path = config_path;
    a->started_ns = uv_hrtime();

    if (config_load(config_path, &a->cfg, err, sizeof(err)) != 0)
        return config_error(a, err);
    log_level_parse(a->cfg.log_level, &log_threshold);

    uv_loop_init(&a->loop);
    if (http_server_init(&a->http, &a->loop, &a->cfg, err, sizeof(err)) != 0) {
        status = config_error(a, err);
        goto out;
    }
    if (check_only) {
        printf("%s: configuration OK\n", config_path);
        status = APP_EXIT_OK;
        goto out;
    }
    if (make_data_dirs(&a->cfg) != 0)
        goto out;

    http_route(&a->http, HTTP_GET, "/health", on_health, a);

    if ((r = http_server_listen(&a->http, &a->cfg, err, sizeof(err))) != 0) {
        log_error("%s", err);
        goto out;
    }

    uv_signal_init(&a->loop, &a->sigint);
    uv_signal_init(&a->loop, &a->sigterm);
    a->sigint.data = a->sigterm.data = a;
    uv_signal_start(&a->sigint, on_signal, SIGINT);
    uv_signal_start(&a->sigterm, on_signal, SIGTERM);

    uv_run(&a->loop, UV_RUN_DEFAULT);

    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    log_info("stopped");
    status = APP_EXIT_OK;

out:
    http_server_close(&a->http);
    /* Let close callbacks run; connections still open are dropped with the process. */
    uv_run(&a->loop, UV_RUN_NOWAIT);
    config_free(&a->cfg);
    return status;
}
