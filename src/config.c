/* config.c -- config.json: one table of keys drives defaults, loading, checking and error messages. */
#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cdn.h"
#include "cluster.h"
#include "err.h"
#include "imgproxy.h"
#include "log.h"
#include "nip19.h"
#include "url.h"
#include "variant.h"

enum key_type { KEY_STRING, KEY_INT, KEY_NUMBER, KEY_BOOL, KEY_STRING_LIST, KEY_INT_LIST, KEY_PUBKEY_LIST };

struct key {
    const char *name;
    enum key_type type;
    size_t offset;
    int64_t min, max;            /* KEY_INT and KEY_NUMBER, and each item of a KEY_INT_LIST */
    int64_t def_int;             /* KEY_INT, KEY_NUMBER, KEY_BOOL */
    const char *def_str;         /* KEY_STRING */
    const char *const *def_list; /* KEY_STRING_LIST, NULL-terminated; KEY_PUBKEY_LIST is always [] */
    const int64_t *def_ints;     /* KEY_INT_LIST, terminated by -1 */
    bool (*valid)(const char *); /* KEY_STRING and each item of a KEY_STRING_LIST; NULL accepts any */
    const char *allowed; /* what is allowed, for KEY_STRING and each item of a KEY_STRING_LIST or KEY_PUBKEY_LIST */
    bool secret; /* KEY_STRING and each item of a KEY_STRING_LIST: errors describe the value instead of quoting it,
                    as logs are not private */
    bool single; /* KEY_STRING_LIST: one string stands for a list of it alone */
};

static bool valid_listen_addr(const char *s)
{
    struct sockaddr_storage ss;
    bool wildcard;
    return url_parse_listen(s, &ss, &wildcard) == 0;
}

static bool valid_nonempty(const char *s)
{
    return *s != '\0';
}

static bool valid_log_level(const char *s)
{
    enum log_level level;
    return log_level_parse(s, &level) == 0;
}

static bool valid_relay_url(const char *s)
{
    struct ws_url url;
    return url_parse_ws(s, &url) == 0;
}

static bool valid_pubkey_or_empty(const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return true;
    if (n != 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

/* The token travels in a header and must not be guessable: printable ASCII without spaces, 16 characters or more. */
static bool valid_token_or_empty(const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return true;
    if (n < 16)
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f)
            return false;
    }
    return true;
}

static bool valid_cdn_url(const char *s)
{
    return *s == '\0' || cdn_valid_url(s);
}

static bool valid_purge_method(const char *s)
{
    return strcmp(s, "BAN") == 0 || strcmp(s, "PURGE") == 0;
}

static bool valid_default_avatar(const char *s)
{
    return strcmp(s, "404") == 0 || strcmp(s, "identicon") == 0 || strcmp(s, "blank") == 0;
}

/* GIF is what an animation becomes for a client without WebP, not a format to negotiate. */
static bool valid_format(const char *s)
{
    enum variant_format f;
    return variant_format_parse(h2o_iovec_init(s, strlen(s)), &f) == 0;
}

/* imgproxy's keys and salts: hex, as its IMGPROXY_KEY and IMGPROXY_SALT are (IMGPROXY_KEY_MAX bytes at most). */
static bool valid_hex_secret(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n % 2 != 0 || n / 2 > IMGPROXY_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* A path prefix of its own: "/" and a name, such as "/imgproxy", with no '/' at the end. */
static bool valid_prefix(const char *s)
{
    size_t n = strlen(s);

    if (n < 2 || s[0] != '/' || s[n - 1] == '/' || strstr(s, "//") != NULL)
        return false;
    for (size_t i = 1; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '/' && s[i] != '.')
            return false;
    return strstr(s, "/.") == NULL;
}

static const int64_t default_kinds[] = {0, 3, 10002, -1};
static const char *const no_strings[] = {NULL};
static const char *const default_negotiated[] = {"webp", NULL};

static const char *const default_relays[] = {"wss://damus.io", "wss://primal.net", "wss://nos.lol",
                                             "wss://purplepag.es", NULL};

#define OFF(field) offsetof(struct config, field)

/* The order here is the order of the file written with the defaults: the seed's keys first. */
static const struct key keys[] = {
    {"listen_addr", KEY_STRING, OFF(listen_addr), .def_str = ":8080", .valid = valid_listen_addr,
     .allowed = "\":port\", \"ipv4:port\", \"[ipv6]:port\" or \"localhost:port\" with a port from 0 to 65535"},
    {"database_path", KEY_STRING, OFF(database_path), .def_str = "./data/pfpcache.db", .valid = valid_nonempty,
     .allowed = "a non-empty path"},
    {"media_cache_path", KEY_STRING, OFF(media_cache_path), .def_str = "./data/media_cache", .valid = valid_nonempty,
     .allowed = "a non-empty path"},
    {"upstream_relays", KEY_STRING_LIST, OFF(upstream_relays), .def_list = default_relays, .valid = valid_relay_url,
     .allowed = "a ws:// or wss:// URL"},
    {"max_concurrent", KEY_INT, OFF(max_concurrent), 1, 10000, 20},
    {"cache_expiration_days", KEY_NUMBER, OFF(cache_expiration_days), 0, 3650, 30},
    {"max_cache_size_mb", KEY_INT, OFF(max_cache_size_mb), 1, 16777216, 1024},
    {"lru_check_interval", KEY_INT, OFF(lru_check_interval), 1, 10080, 60},
    {"resize_images", KEY_BOOL, OFF(resize_images), .def_int = 1},
    {"max_image_size", KEY_INT, OFF(max_image_size), 16, 4096, 200},
    {"image_quality", KEY_INT, OFF(image_quality), 1, 100, 85},
    {"log_level", KEY_STRING, OFF(log_level), .def_str = "info", .valid = valid_log_level,
     .allowed = "\"error\", \"warn\", \"info\" or \"debug\""},
    {"access_log", KEY_STRING, OFF(access_log), .def_str = "", .allowed = "a file path, or \"\" for no access log"},
    {"tls_cert_file", KEY_STRING, OFF(tls_cert_file), .def_str = "",
     .allowed = "a PEM certificate chain file, or \"\" for plain HTTP"},
    {"tls_key_file", KEY_STRING, OFF(tls_key_file), .def_str = "",
     .allowed = "a PEM private key file, or \"\" for plain HTTP"},
    {"max_request_body_bytes", KEY_INT, OFF(max_request_body_bytes), 1024, 67108864, 1048576},
    {"shutdown_timeout_seconds", KEY_INT, OFF(shutdown_timeout_seconds), 0, 300, 10},
    {"database_max_size_mb", KEY_INT, OFF(database_max_size_mb), 16, 16777216, 65536},
    {"relay_name", KEY_STRING, OFF(relay_name), .def_str = "pfpcache-relay", .allowed = "a string"},
    {"relay_description", KEY_STRING, OFF(relay_description),
     .def_str = "A Nostr relay for profiles, contact lists and relay lists, that also serves profile pictures",
     .allowed = "a string"},
    {"relay_pubkey", KEY_STRING, OFF(relay_pubkey), .def_str = "", .valid = valid_pubkey_or_empty,
     .allowed = "64 lowercase hex characters, or \"\""},
    {"relay_contact", KEY_STRING, OFF(relay_contact), .def_str = "", .allowed = "a string"},
    {"accepted_kinds", KEY_INT_LIST, OFF(accepted_kinds), 0, 65535, .def_ints = default_kinds},
    {"max_message_length", KEY_INT, OFF(max_message_length), 1024, 16777216, 131072},
    {"max_subscriptions", KEY_INT, OFF(max_subscriptions), 1, 10000, 200},
    {"max_filters", KEY_INT, OFF(max_filters), 1, 1000, 20},
    {"max_limit", KEY_INT, OFF(max_limit), 1, 100000, 500},
    {"max_subid_length", KEY_INT, OFF(max_subid_length), 1, 1024, 64},
    {"max_negentropy_sessions", KEY_INT, OFF(max_negentropy_sessions), 1, 1000, 4},
    {"max_negentropy_records", KEY_INT, OFF(max_negentropy_records), 1, 100000000, 1000000},
    {"negentropy_idle_seconds", KEY_INT, OFF(negentropy_idle_seconds), 1, 86400, 60},
    {"sync_relays", KEY_STRING_LIST, OFF(sync_relays), .def_list = no_strings, .valid = valid_relay_url,
     .allowed = "a ws:// or wss:// URL"},
    {"sync_interval_minutes", KEY_INT, OFF(sync_interval_minutes), 1, 10080, 60},
    {"sync_push", KEY_BOOL, OFF(sync_push), .def_int = 0},
    {"sync_timeout_seconds", KEY_INT, OFF(sync_timeout_seconds), 1, 3600, 30},
    {"cluster_nodes", KEY_STRING_LIST, OFF(cluster_nodes), .def_list = no_strings, .valid = cluster_valid_node,
     .allowed = "\"host:port\" as in nginx's upstream block, such as \"10.0.0.1:8080\" or \"[::1]:8080\""},
    {"cache_stale_while_revalidate_seconds", KEY_INT, OFF(cache_stale_while_revalidate_seconds), 0, 31536000, 86400},
    {"cache_stale_if_error_seconds", KEY_INT, OFF(cache_stale_if_error_seconds), 0, 31536000, 604800},
    {"cdn_purge_url", KEY_STRING, OFF(cdn_purge_url), .def_str = "", .valid = valid_cdn_url,
     .allowed = "\"\" (none), or an http:// or https:// URL, with {pubkey} or {path} in it at will"},
    {"cdn_purge_method", KEY_STRING, OFF(cdn_purge_method), .def_str = "BAN", .valid = valid_purge_method,
     .allowed = "\"BAN\" or \"PURGE\""},
    {"cluster_self", KEY_STRING, OFF(cluster_self), .def_str = "",
     .allowed = "one of \"cluster_nodes\", or \"\" when there is none"},
    {"max_future_seconds", KEY_INT, OFF(max_future_seconds), 0, 31536000, 900},
    {"max_client_queue_bytes", KEY_INT, OFF(max_client_queue_bytes), 1048576, 1073741824, 8388608},
    {"max_total_queue_bytes", KEY_INT, OFF(max_total_queue_bytes), 1048576, 68719476736, 268435456},
    {"max_connections_per_ip", KEY_INT, OFF(max_connections_per_ip), 0, 1000000, 200},
    {"verify_threads", KEY_INT, OFF(verify_threads), 0, 256, 0},
    {"upstream_ca_file", KEY_STRING, OFF(upstream_ca_file), .def_str = "",
     .allowed = "a PEM file of certificate authorities, or \"\" for the system's"},
    {"upstream_timeout_ms", KEY_INT, OFF(upstream_timeout_ms), 100, 120000, 5000},
    {"upstream_grace_ms", KEY_INT, OFF(upstream_grace_ms), 0, 10000, 300},
    {"upstream_batch_ms", KEY_INT, OFF(upstream_batch_ms), 0, 1000, 5},
    {"max_source_bytes", KEY_INT, OFF(max_source_bytes), 1024, 1073741824, 10485760},
    {"max_source_pixels", KEY_INT, OFF(max_source_pixels), 1, 1000000000, 50000000},
    {"allow_private_sources", KEY_BOOL, OFF(allow_private_sources), .def_int = 0},
    {"allowed_source_addresses", KEY_STRING_LIST, OFF(allowed_source_addresses), .def_list = no_strings,
     .allowed = "an IPv4 or IPv6 address, or a network such as \"192.168.1.0/24\""}, /* config_check_strings() */
    {"download_timeout_seconds", KEY_INT, OFF(download_timeout_seconds), 1, 600, 15},
    {"download_connect_timeout_seconds", KEY_INT, OFF(download_connect_timeout_seconds), 1, 120, 5},
    {"download_min_bytes_per_second", KEY_INT, OFF(download_min_bytes_per_second), 0, 1073741824, 1024},
    {"download_min_speed_seconds", KEY_INT, OFF(download_min_speed_seconds), 1, 600, 5},
    {"max_downloads_per_host", KEY_INT, OFF(max_downloads_per_host), 1, 10000, 4},
    {"image_threads", KEY_INT, OFF(image_threads), 0, 256, 0},
    {"image_timeout_ms", KEY_INT, OFF(image_timeout_ms), 10, 600000, 2000},
    {"image_memory_mb", KEY_INT, OFF(image_memory_mb), 1, 1048576, 512},
    {"memory_cache_mb", KEY_INT, OFF(memory_cache_mb), 0, 1048576, 64},
    {"precache_on_metadata", KEY_BOOL, OFF(precache_on_metadata), .def_int = 1},
    {"lru_low_water_percent", KEY_INT, OFF(lru_low_water_percent), 50, 99, 90},
    {"admin_token", KEY_STRING, OFF(admin_token), .def_str = "", .valid = valid_token_or_empty,
     .allowed = "\"\" (off) or at least 16 printable ASCII characters without spaces", .secret = true},
    {"admin_pubkeys", KEY_PUBKEY_LIST, OFF(admin_pubkeys),
     .allowed = "64 hex characters (either case), an npub or an nprofile"},
    {"default_avatar", KEY_STRING, OFF(default_avatar), .def_str = "404", .valid = valid_default_avatar,
     .allowed = "\"404\", \"identicon\" or \"blank\""},
    {"master_max_size", KEY_INT, OFF(master_max_size), 32, 1024, 1024},
    {"max_banner_size", KEY_INT, OFF(max_banner_size), 32, 1920, 1000},
    {"max_animation_frames", KEY_INT, OFF(max_animation_frames), 1, 1000, 100},
    {"nip05_cache_seconds", KEY_INT, OFF(nip05_cache_seconds), 1, 604800, 3600},
    {"max_discovery_connections", KEY_INT, OFF(max_discovery_connections), 0, 10000, 50},
    {"discovery_idle_seconds", KEY_INT, OFF(discovery_idle_seconds), 1, 86400, 60},
    {"max_outbox_relays", KEY_INT, OFF(max_outbox_relays), 0, 32, 4},
    {"negotiate_formats", KEY_STRING_LIST, OFF(negotiate_formats), .def_list = default_negotiated,
     .valid = valid_format, .allowed = "\"jpeg\", \"webp\", \"avif\" or \"png\""},
    {"imgproxy_prefix", KEY_STRING, OFF(imgproxy_prefix), .def_str = "/imgproxy", .valid = valid_prefix,
     .allowed = "a path such as \"/imgproxy\": '/' then letters, digits, '-', '_', '.' or '/', not ending in '/'"},
    {"imgproxy_key", KEY_STRING_LIST, OFF(imgproxy_key), .def_list = no_strings, .valid = valid_hex_secret,
     .allowed = "hex digits, an even number of them up to 256", .secret = true, .single = true},
    {"imgproxy_salt", KEY_STRING_LIST, OFF(imgproxy_salt), .def_list = no_strings, .valid = valid_hex_secret,
     .allowed = "hex digits, an even number of them up to 256", .secret = true, .single = true},
    {"imgproxy_signature_size", KEY_INT, OFF(imgproxy_signature_size), 1, 32, 32},
    {"imgproxy_allow_unsigned", KEY_BOOL, OFF(imgproxy_allow_unsigned), .def_int = 0},
    {"imgproxy_max_concurrent", KEY_INT, OFF(imgproxy_max_concurrent), 0, 10000, 0},
    {"imgproxy_max_queue", KEY_INT, OFF(imgproxy_max_queue), 0, 100000, 100},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static void *field(struct config *cfg, const struct key *k)
{
    return (char *)cfg + k->offset;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL)
        abort();
    return d;
}

static void list_set_defaults(struct config_list *l, const char *const *def)
{
    size_t n = 0;
    while (def[n] != NULL)
        n++;
    l->count = n;
    l->items = calloc(n + 1, sizeof(char *));
    if (l->items == NULL)
        abort();
    for (size_t i = 0; i < n; i++)
        l->items[i] = xstrdup(def[i]);
}

static void int_list_set_defaults(struct config_int_list *l, const int64_t *def)
{
    size_t n = 0;
    while (def[n] >= 0)
        n++;
    l->items = calloc(n + 1, sizeof(int64_t));
    if (l->items == NULL)
        abort();
    memcpy(l->items, def, n * sizeof(int64_t));
    l->count = n;
}

static void list_free(struct config_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

void config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];
        switch (k->type) {
        case KEY_STRING: *(char **)field(cfg, k) = xstrdup(k->def_str); break;
        case KEY_INT: *(int64_t *)field(cfg, k) = k->def_int; break;
        case KEY_NUMBER: *(double *)field(cfg, k) = (double)k->def_int; break;
        case KEY_BOOL: *(bool *)field(cfg, k) = k->def_int != 0; break;
        case KEY_STRING_LIST: list_set_defaults(field(cfg, k), k->def_list); break;
        case KEY_INT_LIST: int_list_set_defaults(field(cfg, k), k->def_ints); break;
        case KEY_PUBKEY_LIST: break;
        }
    }
}

void config_free(struct config *cfg)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key *k = &keys[i];
        if (k->type == KEY_STRING) {
            free(*(char **)field(cfg, k));
            *(char **)field(cfg, k) = NULL;
        } else if (k->type == KEY_STRING_LIST) {
            list_free(field(cfg, k));
        } else if (k->type == KEY_INT_LIST) {
            struct config_int_list *l = field(cfg, k);
            free(l->items);
            l->items = NULL;
            l->count = 0;
        } else if (k->type == KEY_PUBKEY_LIST) {
            struct config_pubkeys *p = field(cfg, k);
            free(p->keys);
            p->keys = NULL;
            p->count = 0;
        }
    }
}

static json_t *default_json(const struct key *k)
{
    switch (k->type) {
    case KEY_STRING: return json_string(k->def_str);
    case KEY_INT:
    case KEY_NUMBER: return json_integer(k->def_int);
    case KEY_BOOL: return json_boolean(k->def_int);
    case KEY_STRING_LIST: {
        json_t *a = json_array();
        for (const char *const *s = k->def_list; *s != NULL; s++)
            json_array_append_new(a, json_string(*s));
        return a;
    }
    case KEY_INT_LIST: {
        json_t *a = json_array();
        for (const int64_t *i = k->def_ints; *i >= 0; i++)
            json_array_append_new(a, json_integer(*i));
        return a;
    }
    case KEY_PUBKEY_LIST: return json_array();
    }
    return NULL;
}

/* Writes the defaults through a temporary file and a rename, so a reader never sees half a file. */
static int write_defaults(const char *path, char *err, size_t errlen)
{
    char tmp[4096];
    json_t *root = json_object();
    char *text = NULL;
    FILE *f = NULL;
    int r = 0;

    for (size_t i = 0; i < NKEYS; i++)
        json_object_set_new(root, keys[i].name, default_json(&keys[i]));
    text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= sizeof(tmp)) {
        r = err_set(err, errlen, -ENAMETOOLONG, "path too long");
        goto out;
    }
    if ((f = fopen(tmp, "w")) == NULL || fprintf(f, "%s\n", text) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        r = err_set(err, errlen, -errno, "cannot write the default configuration: %s", strerror(errno));
        goto out;
    }
    if (fclose(f) != 0) {
        f = NULL;
        r = err_set(err, errlen, -errno, "cannot write the default configuration: %s", strerror(errno));
        goto out;
    }
    f = NULL;
    if (rename(tmp, path) != 0) {
        r = err_set(err, errlen, -errno, "cannot write the default configuration: %s", strerror(errno));
    }

out:
    if (f != NULL)
        fclose(f);
    if (r != 0)
        unlink(tmp);
    free(text);
    json_decref(root);
    return r;
}

/* The value as JSON, shortened so that the error stays one readable line. */
static void value_text(const json_t *v, char *buf, size_t len)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (s == NULL) {
        snprintf(buf, len, "(unprintable)");
        return;
    }
    if (strlen(s) >= len && len > 4)
        snprintf(buf, len, "%.*s...", (int)(len - 4), s);
    else
        snprintf(buf, len, "%s", s);
    free(s);
}

static void allowed_text(const struct key *k, char *buf, size_t len)
{
    switch (k->type) {
    case KEY_INT: snprintf(buf, len, "an integer from %lld to %lld", (long long)k->min, (long long)k->max); break;
    case KEY_NUMBER:
        snprintf(buf, len, "a number greater than %lld and at most %lld", (long long)k->min, (long long)k->max);
        break;
    case KEY_BOOL: snprintf(buf, len, "true or false"); break;
    case KEY_STRING_LIST: snprintf(buf, len, "an array of strings, each %s", k->allowed); break;
    case KEY_STRING: snprintf(buf, len, "%s", k->allowed); break;
    case KEY_INT_LIST:
        snprintf(buf, len, "an array of integers from %lld to %lld", (long long)k->min, (long long)k->max);
        break;
    case KEY_PUBKEY_LIST: snprintf(buf, len, "an array of public keys, each %s", k->allowed); break;
    }
}

/* A secret's length and kind of fault, without its characters. */
static void secret_text(const json_t *v, char *buf, size_t len)
{
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    bool odd = false;

    if (!json_is_string(v)) {
        snprintf(buf, len, "not a string");
        return;
    }
    for (size_t i = 0; i < n; i++)
        odd = odd || (unsigned char)s[i] <= ' ' || (unsigned char)s[i] >= 0x7f;
    snprintf(buf, len, "%zu characters long%s", n, odd ? ", with spaces, control or non-ASCII characters" : "");
}

static int bad_value(const struct key *k, const json_t *v, char *err, size_t errlen)
{
    char value[128], allowed[256];
    if (k->secret)
        secret_text(v, value, sizeof(value));
    else
        value_text(v, value, sizeof(value));
    allowed_text(k, allowed, sizeof(allowed));
    err_set(err, errlen, -EINVAL, "\"%s\" is %s; allowed: %s", k->name, value, allowed);
    return -EINVAL;
}

static int bad_item(const struct key *k, size_t i, const json_t *item, char *err, size_t errlen)
{
    char value[128];

    if (k->secret)
        secret_text(item, value, sizeof(value));
    else
        value_text(item, value, sizeof(value));
    err_set(err, errlen, -EINVAL, "\"%s\"[%zu] is %s; allowed: %s", k->name, i, value, k->allowed);
    return -EINVAL;
}

static int set_pubkeys(struct config_pubkeys *p, const struct key *k, json_t *v, char *err, size_t errlen)
{
    uint8_t(*decoded)[32];
    size_t n;
    json_t *item;
    char why[NIP19_ERR_LEN];

    /* Nothing is quoted here: what was pasted may be a secret key (nsec). */
    if (!json_is_array(v)) {
        char allowed[256];
        allowed_text(k, allowed, sizeof(allowed));
        err_set(err, errlen, -EINVAL, "\"%s\" is not an array; allowed: %s", k->name, allowed);
        return -EINVAL;
    }
    if ((decoded = calloc(json_array_size(v) + 1, sizeof(*decoded))) == NULL)
        abort();
    json_array_foreach(v, n, item)
    {
        if (!json_is_string(item))
            snprintf(why, sizeof(why), "not a string");
        else if (nip19_decode_pubkey(json_string_value(item), json_string_length(item), decoded[n], why, sizeof(why)) ==
                 0)
            continue;
        err_set(err, errlen, -EINVAL, "\"%s\"[%zu] is not a public key (%s); allowed: %s", k->name, n, why, k->allowed);
        free(decoded);
        return -EINVAL;
    }
    free(p->keys);
    p->keys = decoded;
    p->count = json_array_size(v);
    return 0;
}

static int set_key(struct config *cfg, const struct key *k, json_t *v, char *err, size_t errlen)
{
    switch (k->type) {
    case KEY_STRING: {
        char **dst = field(cfg, k);
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
            (k->valid != NULL && !k->valid(json_string_value(v))))
            return bad_value(k, v, err, errlen);
        free(*dst);
        *dst = xstrdup(json_string_value(v));
        return 0;
    }
    case KEY_INT: {
        json_int_t i;
        if (!json_is_integer(v))
            return bad_value(k, v, err, errlen);
        i = json_integer_value(v);
        if (i < k->min || i > k->max)
            return bad_value(k, v, err, errlen);
        *(int64_t *)field(cfg, k) = i;
        return 0;
    }
    case KEY_NUMBER: {
        double d;
        if (!json_is_number(v))
            return bad_value(k, v, err, errlen);
        d = json_number_value(v);
        if (!(d > (double)k->min && d <= (double)k->max))
            return bad_value(k, v, err, errlen);
        *(double *)field(cfg, k) = d;
        return 0;
    }
    case KEY_BOOL:
        if (!json_is_boolean(v))
            return bad_value(k, v, err, errlen);
        *(bool *)field(cfg, k) = json_is_true(v);
        return 0;
    case KEY_STRING_LIST: {
        struct config_list *l = field(cfg, k);
        size_t n;
        json_t *item;
        if (k->single && json_is_string(v)) {
            json_t *one = json_pack("[O]", v);
            int r = set_key(cfg, k, one, err, errlen);
            json_decref(one);
            return r;
        }
        if (!json_is_array(v))
            return bad_value(k, v, err, errlen);
        json_array_foreach(v, n, item)
        {
            if (!json_is_string(item) || (k->valid != NULL && !k->valid(json_string_value(item))))
                return bad_item(k, n, item, err, errlen);
        }
        list_free(l);
        l->count = json_array_size(v);
        l->items = calloc(l->count + 1, sizeof(char *));
        if (l->items == NULL)
            abort();
        json_array_foreach(v, n, item) l->items[n] = xstrdup(json_string_value(item));
        return 0;
    }
    case KEY_INT_LIST: {
        struct config_int_list *l = field(cfg, k);
        size_t n;
        json_t *item;
        if (!json_is_array(v))
            return bad_value(k, v, err, errlen);
        json_array_foreach(v, n, item)
        {
            if (!json_is_integer(item) || json_integer_value(item) < k->min || json_integer_value(item) > k->max) {
                char value[128];
                value_text(item, value, sizeof(value));
                err_set(err, errlen, -EINVAL, "\"%s\"[%zu] is %s; allowed: an integer from %lld to %lld", k->name, n,
                        value, (long long)k->min, (long long)k->max);
                return -EINVAL;
            }
        }
        free(l->items);
        l->count = json_array_size(v);
        l->items = calloc(l->count + 1, sizeof(int64_t));
        if (l->items == NULL)
            abort();
        json_array_foreach(v, n, item) l->items[n] = json_integer_value(item);
        return 0;
    }
    case KEY_PUBKEY_LIST: return set_pubkeys(field(cfg, k), k, v, err, errlen);
    }
    return -EINVAL;
}

/* A cluster is its nodes, each once, and this node among them. */
static int check_cluster(const struct config *cfg, char *err, size_t errlen)
{
    const struct config_list *n = &cfg->cluster_nodes;
    bool found = false;

    for (size_t i = 0; i < n->count; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(n->items[i], n->items[j]) == 0) {
                err_set(err, errlen, -EINVAL, "\"cluster_nodes\"[%zu] is \"%s\" again; allowed: each node once", i,
                        n->items[i]);
                return -EINVAL;
            }
        }
        found |= strcmp(n->items[i], cfg->cluster_self) == 0;
    }
    if (n->count == 0 && cfg->cluster_self[0] != '\0') {
        err_set(err, errlen, -EINVAL, "\"cluster_self\" is \"%s\"; allowed: \"\" while \"cluster_nodes\" is empty",
                cfg->cluster_self);
        return -EINVAL;
    }
    if (n->count > 0 && !found) {
        err_set(err, errlen, -EINVAL,
                "\"cluster_self\" is \"%s\"; allowed: one of \"cluster_nodes\", written the same way",
                cfg->cluster_self);
        return -EINVAL;
    }
    return 0;
}

/* Rules that span keys. */
static int check_together(const struct config *cfg, char *err, size_t errlen)
{
    bool cert = cfg->tls_cert_file[0] != '\0', key = cfg->tls_key_file[0] != '\0';
    if (cert != key) {
        err_set(err, errlen, -EINVAL, "\"%s\" is \"\"; allowed: a PEM %s file, required because \"%s\" is set",
                cert ? "tls_key_file" : "tls_cert_file", cert ? "private key" : "certificate chain",
                cert ? "tls_cert_file" : "tls_key_file");
        return -EINVAL;
    }
    if (cfg->imgproxy_key.count != cfg->imgproxy_salt.count) {
        err_set(err, errlen, -EINVAL,
                "\"imgproxy_salt\" has %zu items; allowed: as many as \"imgproxy_key\" has (%zu), a salt for each key",
                cfg->imgproxy_salt.count, cfg->imgproxy_key.count);
        return -EINVAL;
    }
    return check_cluster(cfg, err, errlen);
}

int config_load(const char *path, struct config *cfg, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = NULL, *v;
    const char *name;
    struct stat st;
    int r = 0;

    config_defaults(cfg);

    if (stat(path, &st) != 0 && errno == ENOENT) {
        if ((r = write_defaults(path, err, errlen)) != 0)
            goto out;
        log_info("wrote the default configuration to %s", path);
        return 0;
    }

    if ((root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
        if (jerr.line <= 0)
            err_set(err, errlen, -EINVAL, "cannot read: %s", jerr.text);
        else
            err_set(err, errlen, -EINVAL, "line %d, column %d: invalid JSON: %s", jerr.line, jerr.column, jerr.text);
        r = -EINVAL;
        goto out;
    }
    if (!json_is_object(root)) {
        err_set(err, errlen, -EINVAL, "the configuration must be a JSON object");
        r = -EINVAL;
        goto out;
    }

    json_object_foreach(root, name, v)
    {
        const struct key *k = NULL;
        for (size_t i = 0; i < NKEYS && k == NULL; i++) {
            if (strcmp(keys[i].name, name) == 0)
                k = &keys[i];
        }
        if (k == NULL) {
            log_warn("%s: unknown key \"%s\" is ignored", path, name);
            continue;
        }
        if ((r = set_key(cfg, k, v, err, errlen)) != 0)
            goto out;
    }
    r = check_together(cfg, err, errlen);

out:
    json_decref(root);
    if (r != 0)
        config_free(cfg);
    return r;
}

int config_check_strings(const struct config *cfg, const char *name, bool (*valid)(const char *s), char *err,
                         size_t errlen)
{
    const struct key *k = NULL;
    const struct config_list *l;

    for (size_t i = 0; i < NKEYS && k == NULL; i++) {
        if (strcmp(keys[i].name, name) == 0)
            k = &keys[i];
    }
    assert(k != NULL && k->type == KEY_STRING_LIST);
    l = (const struct config_list *)((const char *)cfg + k->offset);
    for (size_t i = 0; i < l->count; i++) {
        if (!valid(l->items[i])) {
            json_t *item = json_string(l->items[i]);
            int r = bad_item(k, i, item, err, errlen);
            json_decref(item);
            return r;
        }
    }
    return 0;
}
