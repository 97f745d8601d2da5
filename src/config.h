/* config.h -- config.json: defaults, loading, and validation that names the key at fault. */
#ifndef PFP_CONFIG_H
#define PFP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config_list {
    char **items;
    size_t count;
};

struct config_int_list {
    int64_t *items;
    size_t count;
};

/* Public keys, decoded from hex or NIP-19 to their 32 bytes. */
struct config_pubkeys {
    uint8_t (*keys)[32];
    size_t count;
};

/* Every string and list is owned by the config and freed by config_free(). */
struct config {
    char *listen_addr;
    char *database_path;
    char *media_cache_path;
    struct config_list upstream_relays;
    int64_t max_concurrent;
    double cache_expiration_days;
    int64_t max_cache_size_mb;
    int64_t lru_check_interval;
    bool resize_images;
    int64_t max_image_size;
    int64_t image_quality;
    char *log_level;
    char *access_log;
    char *tls_cert_file;
    char *tls_key_file;
    int64_t max_request_body_bytes;
    int64_t shutdown_timeout_seconds;
    int64_t database_max_size_mb;
    char *relay_name;
    char *relay_description;
    char *relay_pubkey;
    char *relay_contact;
    struct config_int_list accepted_kinds;
    int64_t max_message_length;
    int64_t max_subscriptions;
    int64_t max_filters;
    int64_t max_limit;
    int64_t max_subid_length;
    int64_t max_negentropy_sessions; /* NIP-77 sessions per connection */
    int64_t max_negentropy_records;  /* records one session may reconcile */
    int64_t negentropy_idle_seconds; /* a session silent this long is closed */
    struct config_list sync_relays;  /* relays synced with by NIP-77, at start-up and every interval */
    int64_t sync_interval_minutes;
    bool sync_push;                   /* syncs also send the events the other relay lacks */
    int64_t sync_timeout_seconds;     /* a relay silent this long while answers are due fails the sync */
    struct config_list cluster_nodes; /* "host:port" of every node, as in nginx's upstream block; none: no cluster */
    char *cluster_self;               /* which of them this node is */
    char *cdn_purge_url;              /* a CDN in front told of changed pubkeys; "" none */
    char *cdn_purge_method;
    int64_t cache_stale_while_revalidate_seconds; /* Cache-Control of picture answers, for caches in front */
    int64_t cache_stale_if_error_seconds;
    int64_t max_future_seconds;
    int64_t max_client_queue_bytes;
    int64_t max_total_queue_bytes;
    int64_t max_connections_per_ip; /* 0: no cap */
    int64_t verify_threads;
    char *upstream_ca_file;
    int64_t upstream_timeout_ms;
    int64_t upstream_grace_ms;
    int64_t upstream_batch_ms;
    int64_t max_source_bytes;
    int64_t max_source_pixels;
    bool allow_private_sources;
    struct config_list allowed_source_addresses;
    int64_t download_timeout_seconds;
    int64_t download_connect_timeout_seconds;
    int64_t download_min_bytes_per_second; /* 0: no minimum */
    int64_t download_min_speed_seconds;
    int64_t max_downloads_per_host;
    int64_t image_threads;
    int64_t image_timeout_ms;
    int64_t image_memory_mb;
    int64_t memory_cache_mb;
    bool precache_on_metadata;
    int64_t lru_low_water_percent;
    char *admin_token; /* "" when off */
    struct config_pubkeys admin_pubkeys;
    char *default_avatar; /* "404", "identicon" or "blank" */
    int64_t master_max_size;
    int64_t max_banner_size;
    int64_t max_animation_frames;
    int64_t nip05_cache_seconds;
    int64_t max_discovery_connections;    /* connections to relays found through the outbox model, at once */
    int64_t discovery_idle_seconds;       /* ... closed after this long unused */
    int64_t max_outbox_relays;            /* write relays of a pubkey tried at most; 0: hints only */
    struct config_list negotiate_formats; /* format names, each variant_format_parse()s */
    char *imgproxy_prefix;                /* where the imgproxy endpoint lives */
    struct config_list imgproxy_key;      /* hex keys, and a hex salt for each: any pair signs */
    struct config_list imgproxy_salt;
    int64_t imgproxy_signature_size;
    bool imgproxy_allow_unsigned;
    int64_t imgproxy_max_concurrent; /* 0: as max_concurrent */
    int64_t imgproxy_max_queue;
};

/*
 * Loads `path` into `cfg`. A file that does not exist is first written with the
 * defaults. Unknown keys are logged as warnings. Returns 0, or -EINVAL when the
 * file is malformed or a value is wrong, or -errno when the file cannot be written.
 * On failure `err` holds one line (naming the key, the value and what is allowed,
 * when a value is at fault; the caller adds the file name) and `cfg` holds nothing
 * to free.
 */
int config_load(const char *path, struct config *cfg, char *err, size_t errlen);

/* Fills `cfg` with the defaults. Release with config_free(). */
void config_defaults(struct config *cfg);

void config_free(struct config *cfg);

/*
 * Checks each item of the string list `name` with `valid`, for the lists whose
 * items only the module that uses them can parse (allowed_source_addresses:
 * netguard). Returns 0, or -EINVAL with the message config_load() would give in
 * `err`. `name` must be a string-list key.
 */
int config_check_strings(const struct config *cfg, const char *name, bool (*valid)(const char *s), char *err,
                         size_t errlen);

#endif
