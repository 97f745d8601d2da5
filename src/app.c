/* app.c -- start-up, wiring of the services, signals and an orderly shutdown. */
#include "app.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "fsutil.h"
#include "web.h"
#include "log.h"
#include "names.h"
#include "proxy.h"
#include "relaybook.h"
#include "negserve.h"
#include "netguard.h"

#define SHUTDOWN_POLL_MS 20

static struct app *app_of_http(struct http_server *s)
{
    return H2O_STRUCT_FROM_MEMBER(struct app, http, s);
}

/* An event a client gave this node, newly stored: the other nodes get it too. */
static void on_accepted(void *ctx, const struct event_view *ev)
{
    struct app *a = ctx;

    if (a->replica != NULL)
        replica_forward(a->replica, ev);
}

static void on_health(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    struct app *a = data;
    uint64_t uptime = (clock_mono_ns() - a->started_ns) / 1000000000u;
    json_t *body;

    (void)param;
    body = json_pack("{s:s, s:s, s:I}", "status", a->stopping ? "shutting_down" : "ok", "version", PFP_VERSION,
                     "uptime_seconds", (json_int_t)uptime);
    /* The node still answers without them (their keys' pictures are made here), so it is not unhealthy. */
    if (a->replica != NULL) {
        json_t *away = json_array();
        for (size_t i = 0; i < replica_peers(a->replica); i++) {
            struct replica_peer_stats ps;
            replica_peer_stats(a->replica, i, &ps);
            if (!ps.connected)
                json_array_append_new(away, json_string(ps.node));
        }
        json_object_set_new(body, "peers_unreachable", away);
    }
    http_reply_json(req, a->stopping ? 503 : 200, body);
}

/* Waits for requests in flight and relay connections to finish, up to the deadline, then stops the loop. */
static void on_shutdown_timer(uv_timer_t *t)
{
    struct app *a = t->data;

    size_t upstream = upstream_open_count(a->upstream) + sync_open_count(a->sync);
    struct relay_stats rs;

    relay_stats(a->relay, &rs);
    if ((a->http_drained && rs.connections == 0 && upstream == 0) || uv_now(&a->loop) >= a->shutdown_deadline) {
        if (rs.connections != 0 || upstream != 0)
            log_warn("shutdown: %llu client and %zu upstream connection(s) still open at the deadline",
                     (unsigned long long)rs.connections, upstream);
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
    /* First: what the lookups and downloads abandon from now on is the jobs' to resume, not failures. */
    if (a->jobs_ready)
        jobs_shutdown(&a->jobs);
    relay_shutdown(a->relay);
    lookup_shutdown(a->lookup);
    upstream_shutdown(a->upstream);
    http_server_shutdown(&a->http, timeout, on_http_drained);
    a->shutdown_deadline = uv_now(&a->loop) + timeout;
    uv_timer_start(&a->shutdown_timer, on_shutdown_timer, 0, SHUTDOWN_POLL_MS);
}

/* The item of allowed_source_addresses that netguard, not the configuration, knows how to parse. */
static bool valid_source_network(const char *s)
{
    struct netguard_net net;
    return netguard_parse_net(s, &net) == 0;
}

/* Loads the configuration and the checks that only the modules can make. Returns 0 or -EINVAL with `err`. */
static int load_config(struct app *a, char *err, size_t errlen)
{
    int r;

    if ((r = config_load(a->config_path, &a->cfg, err, errlen)) != 0)
        return r;
    if ((r = config_check_strings(&a->cfg, "allowed_source_addresses", valid_source_network, err, errlen)) != 0)
        config_free(&a->cfg);
    return r;
}

static void http_options_of(const struct config *cfg, struct http_options *o)
{
    *o = (struct http_options){
        .max_request_body_bytes = (size_t)cfg->max_request_body_bytes,
        .max_connections_per_ip = (size_t)cfg->max_connections_per_ip,
        .access_log = cfg->access_log,
        .tls_cert_file = cfg->tls_cert_file,
        .tls_key_file = cfg->tls_key_file,
        .names = {"access_log", "tls_cert_file", "tls_key_file", "max_connections_per_ip"},
    };
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    return s;
}

/*
 * The relays lookups ask: the upstream relays, then the other nodes of the cluster, each reached with the peer
 * parameter so that it neither passes on what this node sends it nor asks upstream for what it is asked.
 */
static void init_relay_urls(struct app *a)
{
    const struct config_list *nodes = &a->cfg.cluster_nodes;
    size_t n = a->cfg.upstream_relays.count;

    if ((a->relay_urls = calloc(n + nodes->count, sizeof(*a->relay_urls))) == NULL ||
        (a->peer_names = calloc(nodes->count + 1, sizeof(*a->peer_names))) == NULL ||
        (a->peer_sync_urls = calloc(nodes->count + 1, sizeof(*a->peer_sync_urls))) == NULL)
        abort();
    for (size_t i = 0; i < n; i++)
        a->relay_urls[i] = xasprintf("%s", a->cfg.upstream_relays.items[i]);
    for (size_t i = 0; i < nodes->count; i++) {
        if (strcmp(nodes->items[i], a->cfg.cluster_self) == 0)
            continue;
        a->relay_urls[n + a->npeers] =
            xasprintf("ws://%s/?" RELAY_PEER_PARAM "=%s", nodes->items[i], a->cfg.cluster_self);
        a->peer_sync_urls[a->npeers] = xasprintf("ws://%s/", nodes->items[i]);
        a->peer_names[a->npeers++] = nodes->items[i];
    }
    a->nrelay_urls = n + a->npeers;
}

static void free_relay_urls(struct app *a)
{
    for (size_t i = 0; i < a->nrelay_urls; i++)
        free(a->relay_urls[i]);
    for (size_t i = 0; i < a->npeers; i++)
        free(a->peer_sync_urls[i]);
    free(a->relay_urls);
    free(a->peer_sync_urls);
    free(a->peer_names);
}

/* Prepares the upstream connections; a CA file that cannot be loaded is a configuration error named by its key. */
static int init_upstream(struct app *a, char *err, size_t errlen)
{
    init_relay_urls(a);
    struct upstream_options opt = {.urls = (const char *const *)a->relay_urls,
                                   .nurls = a->nrelay_urls,
                                   .ca_file = a->cfg.upstream_ca_file,
                                   .max_message = (size_t)a->cfg.max_message_length,
                                   .max_queue = (size_t)a->cfg.max_client_queue_bytes,
                                   .discovery_guard = {a->cfg.allow_private_sources,
                                                       a->cfg.allowed_source_addresses.items,
                                                       a->cfg.allowed_source_addresses.count},
                                   .max_discovered = (size_t)a->cfg.max_discovery_connections,
                                   .discovered_idle_ms = (uint64_t)a->cfg.discovery_idle_seconds * 1000,
                                   .discovered_dial_ms = (uint64_t)a->cfg.upstream_timeout_ms};
    char reason[256];
    int r;

    if ((r = upstream_init(&a->upstream, &a->loop, &opt, reason, sizeof(reason))) == -EINVAL)
        snprintf(err, errlen, "\"upstream_ca_file\" is \"%s\"; allowed: a readable PEM file of certificates (%s)",
                 a->cfg.upstream_ca_file, reason);
    else if (r != 0)
        snprintf(err, errlen, "%s", reason);
    return r;
}

/* What every download may do: the timeouts, the speed floor and the guard of the configuration's keys. */
static struct fetch_options download_limits(const struct app *a)
{
    return (struct fetch_options){
        .connect_timeout_ms = (long)a->cfg.download_connect_timeout_seconds * 1000,
        .timeout_ms = (long)a->cfg.download_timeout_seconds * 1000,
        .min_speed_bytes = (long)a->cfg.download_min_bytes_per_second,
        .min_speed_seconds = (long)a->cfg.download_min_speed_seconds,
        .guard = {a->cfg.allow_private_sources, a->cfg.allowed_source_addresses.items,
                  a->cfg.allowed_source_addresses.count},
    };
}

/* Sets the picture downloader up; its limits come from the configuration's keys, which its messages name. */
static int init_fetcher(struct app *a, char *err, size_t errlen)
{
    struct fetch_options fo = download_limits(a);

    fo.max_bytes = (size_t)a->cfg.max_source_bytes;
    fo.max_bytes_name = "max_source_bytes";
    return fetcher_init(&a->fetcher, &a->loop, &fo, err, errlen);
}

/* Discovered relays whose record is kept: a few megabytes. */
#define RELAYS_REMEMBERED 20000

/* NIP-05 names remembered at most: a few megabytes. */
#define NAMES_REMEMBERED 100000

/* A NIP-05 document's relays for a pubkey become hints of the lookups. */
static void names_hint(void *ctx, const uint8_t pubkey[32], const char *url)
{
    struct app *a = ctx;

    if (a->lookup != NULL)
        lookup_hint(a->lookup, pubkey, url);
}

/*
 * Sets the NIP-05 resolver up on a fetcher of its own: the pictures' guard and timeouts, but no redirects (NIP-05
 * forbids them), a document of 64 KiB at most, and upstream_ca_file trusted as for relays.
 */
/* The imgproxy endpoint, on the picture service's downloads, answers and cache. */
static void init_proxy(struct app *a)
{
    size_t n = a->cfg.imgproxy_key.count;
    struct imgproxy_key *keys = calloc(n > 0 ? n : 1, sizeof(*keys));
    struct proxy_options o = {
        .prefix = a->cfg.imgproxy_prefix,
        .parse = {.keys = keys,
                  .nkeys = n,
                  .signature_size = (size_t)a->cfg.imgproxy_signature_size,
                  .allow_unsigned = a->cfg.imgproxy_allow_unsigned},
        .max_concurrent =
            (size_t)(a->cfg.imgproxy_max_concurrent > 0 ? a->cfg.imgproxy_max_concurrent : a->cfg.max_concurrent),
        .max_queue = (size_t)a->cfg.imgproxy_max_queue,
        .max_size = (int)a->cfg.master_max_size,
        .quality = (int)a->cfg.image_quality,
        .timeout_ms = (int)a->cfg.image_timeout_ms,
        .max_age = (uint64_t)(a->cfg.cache_expiration_days * 86400),
        .max_data_bytes = (size_t)a->cfg.max_source_bytes,
        .negotiate = a->negotiate,
        .nnegotiate = a->nnegotiate,
    };

    if (keys == NULL)
        abort();
    /* Validated by config_load(): hex, and a salt for each key. */
    for (size_t i = 0; i < n; i++)
        imgproxy_key_parse(a->cfg.imgproxy_key.items[i], a->cfg.imgproxy_salt.items[i], &keys[i]);
    if (o.max_age == 0)
        o.max_age = 1;
    proxy_init(&a->proxy, &o, &(struct proxy_services){&a->pictures, pfp_downloads(a->pfp), pfp_answers(a->pfp)});
    /* The proxy keeps its own copy of the keys. */
    OPENSSL_cleanse(keys, n * sizeof(*keys));
    free(keys);
}

static int init_names(struct app *a, char *err, size_t errlen)
{
    struct fetch_options fo = download_limits(a);
    int r;

    fo.max_bytes = 64 << 10;
    fo.max_bytes_name = "NIP-05's 64 KiB";
    fo.no_redirects = true;
    fo.accept = "application/json";
    fo.ca_file = a->cfg.upstream_ca_file;
    r = fetcher_init(&a->names_fetcher, &a->loop, &fo, err, errlen);

    if (r != 0)
        return r;
    a->names_ready = true;
    return names_init(&a->names, &a->loop, &a->names_fetcher,
                      &(struct names_options){(uint64_t)a->cfg.nip05_cache_seconds, NAMES_REMEMBERED, names_hint, a});
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

/*
 * A database another relay holds, or one that is damaged, is not a passing
 * failure that a restart mends: exit status 2, with one line that says why.
 */
static int data_error(const char *msg, int r)
{
    if (r != -EBUSY && r != -EUCLEAN) {
        log_error("%s", msg);
        return APP_EXIT_FAILURE;
    }
    fprintf(stderr, "pfpcache-relay: %s\n", msg);
    return APP_EXIT_CONFIG;
}

/* Starts the services in dependency order. Returns 0, or an exit status after logging why. */
static int start(struct app *a)
{
    char err[1024];
    int r;

    if (make_data_dirs(&a->cfg) != 0)
        return APP_EXIT_FAILURE;
    if ((r = db_init(&a->db, &(struct db_options){a->cfg.database_path, (uint64_t)a->cfg.database_max_size_mb},
                     &a->inbox, err, sizeof(err))) != 0)
        return data_error(err, r);
    if ((r = store_init(&a->store, a->db)) != 0) {
        log_error("cannot open the event database: %s", strerror(-r));
        return APP_EXIT_FAILURE;
    }
    if ((r = workpool_init(&a->verify, (size_t)a->cfg.verify_threads, &a->inbox)) != 0) {
        log_error("cannot start the signature threads: %s", strerror(-r));
        return APP_EXIT_FAILURE;
    }
    ingest_init(&a->ingest, &(struct ingest_options){.max_future_seconds = a->cfg.max_future_seconds}, &a->store,
                &a->verify);
    if ((r = relaybook_init(&a->relaybook, a->db, &(struct relaybook_options){RELAYS_REMEMBERED})) != 0) {
        log_error("cannot open the relay records: %s", strerror(-r));
        return APP_EXIT_FAILURE;
    }
    lookup_init(&a->lookup, &a->loop,
                &(struct lookup_options){.timeout_ms = (uint64_t)a->cfg.upstream_timeout_ms,
                                         .grace_ms = (uint64_t)a->cfg.upstream_grace_ms,
                                         .batch_ms = (uint64_t)a->cfg.upstream_batch_ms,
                                         .max_concurrent = (size_t)a->cfg.max_concurrent,
                                         .book = a->cfg.max_discovery_connections > 0 ? a->relaybook : NULL,
                                         .max_outbox_relays = (size_t)a->cfg.max_outbox_relays,
                                         .npeers = a->npeers},
                a->upstream, a->ingest, &a->store);
    /* One thread: sessions' reads wait for each other rather than take the signature threads' cores. */
    if ((r = workpool_init(&a->neg_reads, 1, &a->inbox)) != 0) {
        log_error("cannot start the negentropy thread: %s", strerror(-r));
        return APP_EXIT_FAILURE;
    }
    negserve_init(&a->neg, &a->loop, &a->store, &a->neg_reads,
                  &(struct negserve_options){.max_sessions = (size_t)a->cfg.max_negentropy_sessions,
                                             .max_records = (size_t)a->cfg.max_negentropy_records,
                                             .idle_ms = (uint32_t)a->cfg.negentropy_idle_seconds * 1000,
                                             .max_limit = (uint32_t)a->cfg.max_limit,
                                             .max_subid_length = (size_t)a->cfg.max_subid_length});
    /* Syncs reconcile on the negentropy thread too: bulk work queues behind bulk work, not behind lookups. */
    a->sync = sync_init(&a->loop, &a->store, a->ingest, &a->neg_reads,
                        &(struct sync_options){.ssl_ctx = upstream_ssl_ctx(a->upstream),
                                               .timeout_ms = (uint64_t)a->cfg.sync_timeout_seconds * 1000,
                                               .push = a->cfg.sync_push,
                                               .max_limit = (uint32_t)a->cfg.max_limit});
    relay_init(&a->relay, &a->loop,
               &(struct relay_options){.name = a->cfg.relay_name,
                                       .description = a->cfg.relay_description,
                                       .pubkey = a->cfg.relay_pubkey,
                                       .contact = a->cfg.relay_contact,
                                       .accepted_kinds = a->cfg.accepted_kinds.items,
                                       .naccepted_kinds = a->cfg.accepted_kinds.count,
                                       .max_message_length = (size_t)a->cfg.max_message_length,
                                       .max_subscriptions = (size_t)a->cfg.max_subscriptions,
                                       .max_filters = (size_t)a->cfg.max_filters,
                                       .max_limit = (uint32_t)a->cfg.max_limit,
                                       .max_subid_length = (size_t)a->cfg.max_subid_length,
                                       .max_future_seconds = a->cfg.max_future_seconds,
                                       .max_client_queue_bytes = (size_t)a->cfg.max_client_queue_bytes,
                                       .max_total_queue_bytes = (size_t)a->cfg.max_total_queue_bytes,
                                       .on_accepted = on_accepted,
                                       .accepted_ctx = a},
               &a->store, a->ingest, a->lookup, a->neg);
    if ((r = blobs_init(&a->blobs, a->cfg.media_cache_path, err, sizeof(err))) != 0) {
        log_error("media_cache_path: %s", err);
        return APP_EXIT_FAILURE;
    }
    blobcache_init(&a->picture_bytes, (size_t)a->cfg.memory_cache_mb << 20);
    if ((r = pictures_init(&a->pictures, &a->loop,
                           &(struct pictures_options){(uint64_t)a->cfg.max_cache_size_mb << 20,
                                                      (unsigned)a->cfg.lru_low_water_percent,
                                                      (uint64_t)a->cfg.lru_check_interval * 60000},
                           a->db, &a->blobs, &a->picture_bytes, &a->inbox)) != 0) {
        log_error("cannot open the picture index: %s", strerror(-r));
        return APP_EXIT_FAILURE;
    }
    a->pictures_ready = true;
    if ((r = init_fetcher(a, err, sizeof(err))) != 0) {
        log_error("%s", err);
        return APP_EXIT_FAILURE;
    }
    a->fetcher_ready = true;
    if ((r = init_names(a, err, sizeof(err))) != 0) {
        log_error("%s", err);
        return APP_EXIT_FAILURE;
    }
    /* An owner may look the profile up, download and resize the picture before it answers. */
    a->cluster = cluster_new(&(struct cluster_options){
        (const char *const *)a->cfg.cluster_nodes.items, a->cfg.cluster_nodes.count, a->cfg.cluster_self,
        (uint64_t)(a->cfg.upstream_timeout_ms + a->cfg.download_timeout_seconds * 1000 + a->cfg.image_timeout_ms +
                   5000),
        (size_t)a->cfg.max_source_bytes});
    if (a->cluster != NULL && (r = cluster_start(a->cluster, &a->loop, err, sizeof(err))) != 0) {
        log_error("%s", err);
        return APP_EXIT_FAILURE;
    }
    if ((r = cdn_init(&a->cdn, &a->loop,
                      &(struct cdn_options){a->cfg.cdn_purge_url, a->cfg.cdn_purge_method, a->cfg.upstream_ca_file},
                      err, sizeof(err))) != 0) {
        log_error("%s", err);
        return APP_EXIT_FAILURE;
    }
    {
        /* Picture files are read on threads of their own, not libuv's pool that getaddrinfo shares. */
        struct pfp_options po = {
            .image_threads = (size_t)a->cfg.image_threads,
            .read_threads = 2,
            .max_concurrent = (size_t)a->cfg.max_concurrent,
            .max_per_host = (size_t)a->cfg.max_downloads_per_host,
            .max_data_bytes = (size_t)a->cfg.max_source_bytes,
            .image = {a->cfg.resize_images, (int)a->cfg.max_image_size, (int)a->cfg.image_quality,
                      a->cfg.max_source_pixels, (int)a->cfg.image_timeout_ms, a->cfg.image_memory_mb << 20,
                      (int)a->cfg.max_animation_frames},
            .max_age = (uint64_t)(a->cfg.cache_expiration_days * 86400),
            .stale_while_revalidate = (uint64_t)a->cfg.cache_stale_while_revalidate_seconds,
            .stale_if_error = (uint64_t)a->cfg.cache_stale_if_error_seconds,
            .precache_on_metadata = a->cfg.precache_on_metadata,
            .default_avatar = strcmp(a->cfg.default_avatar, "identicon") == 0 ? VARIANT_FALLBACK_IDENTICON
                              : strcmp(a->cfg.default_avatar, "blank") == 0   ? VARIANT_FALLBACK_BLANK
                                                                              : VARIANT_FALLBACK_404,
            .master_max_size = (int)a->cfg.master_max_size,
            .max_banner_size = (int)a->cfg.max_banner_size,
            .negotiate = a->negotiate,
        };
        struct pfp_services sv = {&a->store,   a->lookup, &a->pictures, &a->blobs,  &a->picture_bytes,
                                  &a->fetcher, &a->inbox, a->names,     a->cluster, a->cdn};
        a->nnegotiate = 0;
        for (size_t i = 0; i < a->cfg.negotiate_formats.count; i++) {
            enum variant_format f;
            bool seen = false;
            /* Validated by config_load(). */
            variant_format_parse(
                h2o_iovec_init(a->cfg.negotiate_formats.items[i], strlen(a->cfg.negotiate_formats.items[i])), &f);
            for (size_t j = 0; j < a->nnegotiate; j++)
                seen |= a->negotiate[j] == f;
            if (!seen)
                a->negotiate[a->nnegotiate++] = f;
        }
        po.nnegotiate = a->nnegotiate;
        r = pfp_init(&a->pfp, &a->loop, &po, &sv, err, sizeof(err));
    }
    if (r != 0) {
        log_error("%s", err);
        return APP_EXIT_FAILURE;
    }
    a->pfp_ready = true;
    init_proxy(a);
    if ((r = jobs_init(&a->jobs, &a->loop, a->db, a->pfp, a->sync)) != 0) {
        log_error("cannot open the job database: %s", strerror(-r));
        return APP_EXIT_FAILURE;
    }
    jobs_sync_every(&a->jobs, (const char *const *)a->cfg.sync_relays.items, a->cfg.sync_relays.count,
                    SYNC_DEFAULT_FILTER, (uint64_t)a->cfg.sync_interval_minutes * 60000);
    if (a->npeers > 0)
        a->replica = replica_new(&(struct replica_options){a->upstream, a->cfg.upstream_relays.count, a->npeers,
                                                           a->peer_names, (const char *const *)a->peer_sync_urls,
                                                           &a->jobs, SYNC_DEFAULT_FILTER});
    a->jobs_ready = true;
    auth_init(&a->auth, &(struct auth_options){a->cfg.admin_token,
                                               (const uint8_t(*)[32])a->cfg.admin_pubkeys.keys,
                                               a->cfg.admin_pubkeys.count,
                                               {"admin_token", "admin_pubkeys"}});
    if ((r = hashurl_init(&a->hashurl, &(struct hashurl_services){&a->pictures, &a->blobs, &a->picture_bytes, &a->inbox,
                                                                  a->cluster})) != 0) {
        log_error("cannot start the file reader: %s", strerror(-r));
        return APP_EXIT_FAILURE;
    }
    profileapi_init(&a->profileapi, &a->store, a->lookup, &a->pictures, &a->blobs, a->pfp, a->names, a->cluster);
    admin_init(&a->admin, &(struct admin_options){&a->auth, &a->jobs, &a->pictures, &a->store, a->lookup, a->names,
                                                  a->sync, a->cdn});
    a->stats = (struct stats){.auth = &a->auth,
                              .http = &a->http,
                              .store = &a->store,
                              .upstream = a->upstream,
                              .lookup = a->lookup,
                              .relay = a->relay,
                              .cluster = a->cluster,
                              .replica = a->replica,
                              .cdn = a->cdn,
                              .pfp = a->pfp,
                              .proxy = a->proxy,
                              .neg = a->neg,
                              .sync = a->sync,
                              .profileapi = &a->profileapi,
                              .fetcher = &a->fetcher,
                              .pictures = &a->pictures,
                              .jobs = &a->jobs,
                              .names = a->names,
                              .relaybook = a->relaybook,
                              .started_ns = a->started_ns};
    stats_init(&a->stats);

    /* Routes before anything starts: a configuration they refuse stops start-up with nothing to undo. */
    http_route(&a->http, HTTP_GET, "/health", on_health, a);
    relay_route(a->relay, &a->http, web_page, NULL);
    pfp_route(a->pfp, &a->http);
    hashurl_route(a->hashurl, &a->http);
    profileapi_route(&a->profileapi, &a->http);
    admin_route(&a->admin, &a->http);
    stats_route(&a->stats, &a->http);
    web_route(&a->http);
    /* Last: a prefix another endpoint lives under is refused, whichever came first. */
    if (proxy_route(a->proxy, &a->http) != 0) {
        snprintf(err, sizeof(err), "\"imgproxy_prefix\" is \"%s\"; allowed: a path no other endpoint is under",
                 a->cfg.imgproxy_prefix);
        return config_error(a, err);
    }
    if ((r = db_start(a->db)) != 0) {
        log_error("cannot start the database writer: %s", strerror(-r));
        return APP_EXIT_FAILURE;
    }
    pictures_start(&a->pictures);
    if ((r = relaybook_load(a->relaybook)) != 0)
        log_warn("cannot read the relay records, starting without them: %s", strerror(-r));
    upstream_start(a->upstream);
    if ((r = jobs_start(&a->jobs)) != 0) {
        log_error("cannot read the job database: %s", strerror(-r));
        return APP_EXIT_FAILURE;
    }
    if ((r = http_server_listen(&a->http, a->cfg.listen_addr, err, sizeof(err))) != 0) {
        log_error("%s", err);
        return APP_EXIT_FAILURE;
    }
    return 0;
}

/*
 * Stops what start() started, in the order that loses nothing: the jobs stop
 * before the picture service abandons their pubkeys (which they then resume
 * after a restart), the signature threads finish and hand their events to the
 * writer, the writer commits everything queued, and the last completions run
 * on the loop.
 */
static void stop(struct app *a)
{
    if (a->jobs_ready)
        jobs_shutdown(&a->jobs);
    profileapi_shutdown(&a->profileapi);
    replica_shutdown(a->replica);
    cluster_shutdown(a->cluster);
    /* Before the picture service, so that requests waiting for a name are answered while it still serves. */
    names_shutdown(a->names);
    if (a->proxy != NULL)
        proxy_shutdown(a->proxy);
    if (a->pfp != NULL)
        pfp_shutdown(a->pfp);
    hashurl_shutdown(a->hashurl);
    if (a->pictures_ready)
        pictures_shutdown(&a->pictures);
    if (a->neg != NULL)
        negserve_shutdown(a->neg);
    workpool_shutdown(&a->neg_reads);
    workpool_shutdown(&a->verify);
    inbox_drain(&a->inbox);
    db_shutdown(a->db);
    inbox_free(&a->inbox);
    profileapi_free(&a->profileapi);
    hashurl_free(a->hashurl);
    a->hashurl = NULL;
    proxy_free(a->proxy);
    a->proxy = NULL;
    pfp_free(a->pfp);
    cluster_free(a->cluster);
    a->cluster = NULL;
    replica_free(a->replica);
    a->replica = NULL;
    cdn_free(a->cdn);
    a->cdn = NULL;
    a->pfp = NULL;
    if (a->pfp_ready)
        image_free();
    if (a->fetcher_ready)
        fetcher_free(&a->fetcher);
    names_free(a->names);
    a->names = NULL;
    if (a->names_ready)
        fetcher_free(&a->names_fetcher);
    if (a->pictures_ready)
        pictures_free(&a->pictures);
    blobcache_free(&a->picture_bytes);
    blobs_free(&a->blobs);
    if (a->jobs_ready)
        jobs_free(&a->jobs);
    auth_free(&a->auth);
    if (a->relay != NULL)
        relay_free(a->relay);
    negserve_free(a->neg);
    a->neg = NULL;
    sync_free(a->sync);
    a->sync = NULL;
    if (a->lookup != NULL)
        lookup_free(a->lookup);
    if (a->ingest != NULL)
        ingest_free(a->ingest);
    if (a->upstream != NULL)
        upstream_free(a->upstream);
    relaybook_free(a->relaybook);
    a->relaybook = NULL;
    workpool_free(&a->neg_reads);
    workpool_free(&a->verify);
    db_free(a->db);
}

static void print_line(void *ctx, const char *line)
{
    fprintf(ctx, "%s\n", line);
}

int app_check_db(struct app *a, const char *config_path)
{
    struct db_table_check checks[32];
    const struct db_table_check *(*const tables[])(size_t *) = {store_table_checks, pictures_table_checks,
                                                                jobs_table_checks, relaybook_table_checks};
    char err[1024];
    size_t n = 0;
    int r;

    memset(a, 0, sizeof(*a));
    a->config_path = config_path;
    if (load_config(a, err, sizeof(err)) != 0)
        return config_error(a, err);
    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
        size_t m;
        const struct db_table_check *c = tables[t](&m);
        for (size_t i = 0; i < m && n < sizeof(checks) / sizeof(checks[0]); i++)
            checks[n++] = c[i];
    }
    printf("%s:\n", a->cfg.database_path);
    r = db_init(&a->db,
                &(struct db_options){a->cfg.database_path, (uint64_t)a->cfg.database_max_size_mb, .read_only = true},
                NULL, err, sizeof(err));
    if (r == 0)
        r = db_check(a->db, checks, n, print_line, stdout);
    else
        printf("%s\n", err);
    db_free(a->db);
    config_free(&a->cfg);
    /* Damage is 2, like a configuration the relay cannot use; a database that could not be read at all is 1. */
    return r == 0 ? APP_EXIT_OK : r == -EUCLEAN ? APP_EXIT_CONFIG : APP_EXIT_FAILURE;
}

int app_run(struct app *a, const char *config_path, bool check_only)
{
    char err[1024];
    struct http_options ho;
    int status;

    memset(a, 0, sizeof(*a));
    a->config_path = config_path;
    a->started_ns = clock_mono_ns();

    if (load_config(a, err, sizeof(err)) != 0)
        return config_error(a, err);
    log_level_parse(a->cfg.log_level, &log_threshold);

    http_options_of(&a->cfg, &ho);
    uv_loop_init(&a->loop);
    inbox_init(&a->inbox, &a->loop);
    if (http_server_init(&a->http, &a->loop, &ho, err, sizeof(err)) != 0 || init_upstream(a, err, sizeof(err)) != 0) {
        status = config_error(a, err);
        goto out;
    }
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
    http_server_free(&a->http);
    /* Let close callbacks run; connections still open are dropped with the process. */
    uv_run(&a->loop, UV_RUN_NOWAIT);
    if (status == APP_EXIT_OK && !check_only)
        log_info("stopped");
    free_relay_urls(a);
    config_free(&a->cfg);
    return status;
}
