/* test_config.c -- configuration defaults, loading and the errors that name the key. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

static char dir[] = "/tmp/pfp-test-config-XXXXXX";
static char path[256];

static int setup(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/config.json", dir);
    log_threshold = LOG_LEVEL_ERROR;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    rmdir(dir);
    return 0;
}

static void write_file(const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Loads `text`, expects failure with a message containing `expect`, and leaves the message in `err`. */
static void load_failing(const char *text, const char *expect, char err[512])
{
    struct config cfg;

    err[0] = '\0';
    write_file(text);
    assert_int_equal(config_load(path, &cfg, err, 512), -EINVAL);
    if (strstr(err, expect) == NULL)
        fail_msg("message \"%s\" does not contain \"%s\"", err, expect);
}

/* Loads `text` and expects failure with a one-line message containing `expect`. */
static void expect_error(const char *text, const char *expect)
{
    char err[512];

    load_failing(text, expect, err);
    assert_null(strchr(err, '\n'));
}

static void defaults_are_the_seeds(void **state)
{
    struct config cfg;
    (void)state;

    config_defaults(&cfg);
    assert_string_equal(cfg.listen_addr, ":8080");
    assert_string_equal(cfg.database_path, "./data/pfpcache.db");
    assert_string_equal(cfg.media_cache_path, "./data/media_cache");
    assert_int_equal(cfg.upstream_relays.count, 4);
    assert_string_equal(cfg.upstream_relays.items[0], "wss://damus.io");
    assert_string_equal(cfg.upstream_relays.items[1], "wss://primal.net");
    assert_string_equal(cfg.upstream_relays.items[2], "wss://nos.lol");
    assert_string_equal(cfg.upstream_relays.items[3], "wss://purplepag.es");
    assert_int_equal(cfg.max_concurrent, 20);
    assert_int_equal(cfg.cache_expiration_days, 30);
    assert_int_equal(cfg.max_cache_size_mb, 1024);
    assert_int_equal(cfg.lru_check_interval, 60);
    assert_true(cfg.resize_images);
    assert_int_equal(cfg.max_image_size, 200);
    assert_int_equal(cfg.image_quality, 85);
    config_free(&cfg);
}

static void admin_and_lru_keys_default_to_off_and_90_percent(void **state)
{
    struct config cfg;
    (void)state;

    config_defaults(&cfg);
    assert_int_equal(cfg.lru_low_water_percent, 90);
    assert_string_equal(cfg.admin_token, "");
    assert_int_equal(cfg.admin_pubkeys.count, 0);
    config_free(&cfg);
}

static void downloads_default_to_a_minimum_speed_and_four_per_host(void **state)
{
    struct config cfg;
    (void)state;

    config_defaults(&cfg);
    assert_int_equal(cfg.download_min_bytes_per_second, 1024);
    assert_int_equal(cfg.download_min_speed_seconds, 5);
    assert_int_equal(cfg.max_downloads_per_host, 4);
    config_free(&cfg);
}

static void missing_file_is_written_with_defaults_and_reads_back(void **state)
{
    struct config cfg, again;
    char err[512];
    (void)state;

    unlink(path);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_int_equal(access(path, R_OK), 0);
    assert_int_equal(config_load(path, &again, err, sizeof(err)), 0);
    assert_string_equal(again.listen_addr, cfg.listen_addr);
    assert_int_equal(again.upstream_relays.count, cfg.upstream_relays.count);
    assert_int_equal(again.image_quality, cfg.image_quality);
    assert_int_equal(again.resize_images, cfg.resize_images);
    assert_int_equal(again.lru_low_water_percent, 90);
    assert_string_equal(again.admin_token, "");
    assert_int_equal(again.admin_pubkeys.count, 0);
    config_free(&cfg);
    config_free(&again);
}

static void values_in_the_file_override_defaults(void **state)
{
    struct config cfg;
    char err[512];
    (void)state;

    write_file("{\"image_quality\": 70, \"resize_images\": false, \"upstream_relays\": [\"ws://127.0.0.1:7000\"],"
               " \"listen_addr\": \"[::1]:0\", \"some_future_key\": 1}");
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.image_quality, 70);
    assert_false(cfg.resize_images);
    assert_int_equal(cfg.upstream_relays.count, 1);
    assert_string_equal(cfg.upstream_relays.items[0], "ws://127.0.0.1:7000");
    assert_string_equal(cfg.listen_addr, "[::1]:0");
    assert_int_equal(cfg.max_concurrent, 20);
    config_free(&cfg);
}

#define NPUB     "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg"
#define NPUB_HEX "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e"
#define NSEC     "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5"

static void admin_keys_and_low_water_are_read(void **state)
{
    static const uint8_t npub_key[32] = {0x7e, 0x7e, 0x9c, 0x42, 0xa9, 0x1b, 0xfe, 0xf1, 0x9f, 0xa9, 0x29,
                                         0xe5, 0xfd, 0xa1, 0xb7, 0x2e, 0x0e, 0xbc, 0x1a, 0x4c, 0x11, 0x41,
                                         0x67, 0x3e, 0x27, 0x94, 0x23, 0x4d, 0x86, 0xad, 0xdf, 0x4e};
    struct config cfg;
    char err[512];
    (void)state;

    write_file("{\"lru_low_water_percent\": 50, \"admin_token\": \"0123456789abcdef\","
               " \"admin_pubkeys\": [\"" NPUB
               "\", \"7E7E9C42A91BFEF19FA929E5FDA1B72E0EBC1A4C1141673E2794234D86ADDF4E\","
               " \"" NPUB_HEX "\"]}");
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.lru_low_water_percent, 50);
    assert_string_equal(cfg.admin_token, "0123456789abcdef");
    assert_int_equal(cfg.admin_pubkeys.count, 3);
    for (size_t i = 0; i < 3; i++)
        assert_memory_equal(cfg.admin_pubkeys.keys[i], npub_key, 32);
    config_free(&cfg);
    assert_null(cfg.admin_pubkeys.keys);

    write_file("{\"lru_low_water_percent\": 99, \"admin_token\": \"\", \"admin_pubkeys\": []}");
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.lru_low_water_percent, 99);
    assert_string_equal(cfg.admin_token, "");
    assert_int_equal(cfg.admin_pubkeys.count, 0);
    config_free(&cfg);
}

/* Loads `text`, expects failure with `expect`, and checks that `secret` is not in the message. */
static void expect_error_hiding(const char *text, const char *expect, const char *secret)
{
    char err[512];

    load_failing(text, expect, err);
    if (strstr(err, secret) != NULL)
        fail_msg("message \"%s\" quotes \"%s\"", err, secret);
}

static void bad_admin_tokens_are_described_without_quoting_them(void **state)
{
    (void)state;
    expect_error_hiding("{\"admin_token\": \"hunter2\"}",
                        "\"admin_token\" is 7 characters long; allowed: \"\" (off) or at least 16 printable ASCII "
                        "characters without spaces",
                        "hunter2");
    expect_error_hiding("{\"admin_token\": \"0123456789abcde\"}", "\"admin_token\" is 15 characters long; allowed",
                        "0123456789abcde");
    expect_error_hiding("{\"admin_token\": \"correct horse battery\"}",
                        "\"admin_token\" is 21 characters long, with spaces, control or non-ASCII characters; allowed",
                        "horse");
    expect_error_hiding("{\"admin_token\": \"0123456789abcdef\\t\"}", "\"admin_token\" is 17 characters long, with",
                        "0123456789");
    expect_error_hiding("{\"admin_token\": 1234567890123456789}", "\"admin_token\" is not a string; allowed",
                        "1234567890");
}

static void imgproxy_keys_are_hex_pairs_one_or_many(void **state)
{
    struct config cfg;
    char err[512];
    (void)state;

    write_file("{}");
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.imgproxy_prefix, "/imgproxy");
    assert_int_equal(cfg.imgproxy_key.count, 0);
    assert_int_equal(cfg.imgproxy_signature_size, 32);
    assert_false(cfg.imgproxy_allow_unsigned);
    assert_int_equal(cfg.imgproxy_max_concurrent, 0);
    assert_int_equal(cfg.imgproxy_max_queue, 100);
    config_free(&cfg);
    /* One string, as imgproxy's own variables are; or lists, for rotation. */
    write_file("{\"imgproxy_key\": \"a1b2\", \"imgproxy_salt\": \"C3D4\", \"imgproxy_prefix\": \"/p/img\"}");
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.imgproxy_key.count, 1);
    assert_string_equal(cfg.imgproxy_salt.items[0], "C3D4");
    assert_string_equal(cfg.imgproxy_prefix, "/p/img");
    config_free(&cfg);
    write_file("{\"imgproxy_key\": [\"a1\", \"b2\"], \"imgproxy_salt\": [\"c3\", \"d4\"]}");
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.imgproxy_key.count, 2);
    config_free(&cfg);

    expect_error("{\"imgproxy_key\": [\"a1\", \"b2\"], \"imgproxy_salt\": \"c3\"}",
                 "\"imgproxy_salt\" has 1 items; allowed: as many as \"imgproxy_key\" has (2)");
    expect_error_hiding("{\"imgproxy_key\": [\"a1\", \"5ecre7\"]}",
                        "\"imgproxy_key\"[1] is 6 characters long; allowed: hex digits", "5ecre7");
    expect_error_hiding("{\"imgproxy_salt\": \"abc\"}", "\"imgproxy_salt\"[0] is 3 characters long; allowed", "abc");
    expect_error("{\"imgproxy_prefix\": \"/imgproxy/\"}", "\"imgproxy_prefix\" is \"/imgproxy/\"; allowed: a path");
    expect_error("{\"imgproxy_prefix\": \"imgproxy\"}", "\"imgproxy_prefix\" is \"imgproxy\"; allowed");
    expect_error("{\"imgproxy_prefix\": \"/a/../b\"}", "\"imgproxy_prefix\" is \"/a/../b\"; allowed");
    expect_error("{\"imgproxy_signature_size\": 33}",
                 "\"imgproxy_signature_size\" is 33; allowed: an integer from 1 to 32");
}

static void bad_admin_pubkeys_name_the_index(void **state)
{
    (void)state;
    expect_error_hiding("{\"admin_pubkeys\": \"" NSEC "\"}",
                        "\"admin_pubkeys\" is not an array; allowed: an array of public keys, each 64 hex characters",
                        NSEC);
    expect_error("{\"admin_pubkeys\": [\"" NPUB_HEX "\", \"abc\"]}",
                 "\"admin_pubkeys\"[1] is not a public key (not 64 hex characters, an npub or an nprofile); "
                 "allowed: 64 hex characters (either case), an npub or an nprofile");
    expect_error("{\"admin_pubkeys\": [7]}", "\"admin_pubkeys\"[0] is not a public key (not a string)");
    expect_error_hiding("{\"admin_pubkeys\": [\"" NPUB_HEX "\", \"" NSEC "\"]}",
                        "\"admin_pubkeys\"[1] is not a public key (unknown bech32 prefix \"nsec\")", NSEC);
    expect_error("{\"admin_pubkeys\": [\"npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptq\"]}",
                 "\"admin_pubkeys\"[0] is not a public key (bad bech32 checksum)");
}

static void out_of_range_values_name_key_value_and_range(void **state)
{
    (void)state;
    expect_error("{\"image_quality\": 0}", "\"image_quality\" is 0; allowed: an integer from 1 to 100");
    expect_error("{\"image_quality\": 101}", "\"image_quality\" is 101; allowed: an integer from 1 to 100");
    expect_error("{\"max_cache_size_mb\": -5}", "\"max_cache_size_mb\" is -5");
    expect_error("{\"max_concurrent\": 0}", "\"max_concurrent\" is 0");
    expect_error("{\"lru_low_water_percent\": 49}",
                 "\"lru_low_water_percent\" is 49; allowed: an integer from 50 to 99");
    expect_error("{\"lru_low_water_percent\": 100}", "\"lru_low_water_percent\" is 100");
}

static void wrong_types_are_refused(void **state)
{
    (void)state;
    expect_error("{\"max_concurrent\": \"20\"}", "\"max_concurrent\" is \"20\"; allowed: an integer");
    expect_error("{\"max_concurrent\": 20.5}", "\"max_concurrent\" is 20.5");
    expect_error("{\"resize_images\": 1}", "\"resize_images\" is 1; allowed: true or false");
    expect_error("{\"listen_addr\": 8080}", "\"listen_addr\" is 8080");
    expect_error("{\"upstream_relays\": \"wss://a\"}", "\"upstream_relays\" is \"wss://a\"; allowed: an array");
}

static void bad_strings_are_refused(void **state)
{
    (void)state;
    expect_error("{\"listen_addr\": \"localhost\"}", "\"listen_addr\" is \"localhost\"");
    expect_error("{\"upstream_relays\": [\"wss://a.example\", \"https://b.example\"]}",
                 "\"upstream_relays\"[1] is \"https://b.example\"; allowed: a ws:// or wss:// URL");
    expect_error("{\"log_level\": \"loud\"}", "\"log_level\" is \"loud\"");
    expect_error("{\"database_path\": \"\"}", "\"database_path\" is \"\"");
    expect_error("{\"tls_cert_file\": \"c.pem\"}", "\"tls_key_file\" is \"\"");
}

static void malformed_files_are_refused(void **state)
{
    (void)state;
    expect_error("{\"image_quality\": ", "line 1");
    expect_error("[1, 2]", "must be a JSON object");
    expect_error("{\"a\": 1, \"a\": 2}", "duplicate");
}

/* A check only another module can make reports in the configuration's words, naming the key and the index. */
static bool starts_with_10(const char *s)
{
    return strncmp(s, "10.", 3) == 0;
}

static void lists_checked_by_modules_name_the_key_and_index(void **state)
{
    struct config cfg;
    char err[512];
    (void)state;

    write_file("{\"allowed_source_addresses\": [\"10.0.0.1\", \"fd00::/8\"]}");
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_int_equal(config_check_strings(&cfg, "allowed_source_addresses", starts_with_10, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "\"allowed_source_addresses\"[1] is \"fd00::/8\"; allowed: an IPv4 or IPv6 address, "
                             "or a network such as \"192.168.1.0/24\"");
    config_free(&cfg);

    write_file("{\"allowed_source_addresses\": [\"10.0.0.1\"]}");
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), 0);
    assert_int_equal(config_check_strings(&cfg, "allowed_source_addresses", starts_with_10, err, sizeof(err)), 0);
    config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_are_the_seeds),
        cmocka_unit_test(admin_and_lru_keys_default_to_off_and_90_percent),
        cmocka_unit_test(downloads_default_to_a_minimum_speed_and_four_per_host),
        cmocka_unit_test(admin_keys_and_low_water_are_read),
        cmocka_unit_test(bad_admin_tokens_are_described_without_quoting_them),
        cmocka_unit_test(bad_admin_pubkeys_name_the_index),
        cmocka_unit_test(missing_file_is_written_with_defaults_and_reads_back),
        cmocka_unit_test(values_in_the_file_override_defaults),
        cmocka_unit_test(out_of_range_values_name_key_value_and_range),
        cmocka_unit_test(wrong_types_are_refused),
        cmocka_unit_test(bad_strings_are_refused),
        cmocka_unit_test(malformed_files_are_refused),
        cmocka_unit_test(imgproxy_keys_are_hex_pairs_one_or_many),
        cmocka_unit_test(lists_checked_by_modules_name_the_key_and_index),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
