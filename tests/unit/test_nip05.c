/* test_nip05.c -- NIP-05 identifiers and nostr.json documents, and NIP-65 relay lists. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "nip05.h"
#include "nip65.h"

static const char PK[] = "3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d";

static void id_ok(const char *s, const char *name, const char *domain)
{
    struct nip05_id id;

    if (nip05_parse_id(s, strlen(s), &id) != 0)
        fail_msg("%s refused", s);
    assert_string_equal(id.name, name);
    assert_string_equal(id.domain, domain);
}

static void identifiers_as_clients_display_them(void **state)
{
    static const char *const bad[] = {"",
                                      "bob",
                                      "@example.com",
                                      "bob@",
                                      "bob@.example.com",
                                      "bob@example.com.",
                                      "bob@ex ample.com",
                                      "b ob@example.com",
                                      "bob@-x.com",
                                      "bob@x-.com",
                                      "bob@x..com",
                                      "bob@example.com:0",
                                      "bob@example.com:99999",
                                      "bob@example.com:",
                                      "bob@a@b.com",
                                      "bób@example.com",
                                      "bob@example.com/path"};
    struct nip05_id id;

    (void)state;
    id_ok("bob@example.com", "bob", "example.com");
    id_ok("Bob.Smith_1-x@Example.COM", "bob.smith_1-x", "example.com");
    id_ok("example.com", "_", "example.com");
    id_ok("_@sub.example.com", "_", "sub.example.com");
    id_ok("alice@localhost:8443", "alice", "localhost:8443");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (nip05_parse_id(bad[i], strlen(bad[i]), &id) != -EINVAL)
            fail_msg("\"%s\" accepted", bad[i]);
}

static int doc(const char *json, const char *name, struct nip05_result *r, char *err)
{
    return nip05_parse_doc(json, strlen(json), name, r, err, 200);
}

static void documents_give_the_key_and_its_relays(void **state)
{
    char json[1024], err[200];
    struct nip05_result r;

    (void)state;
    snprintf(json, sizeof(json),
             "{\"names\":{\"Bob\":\"%s\",\"x\":\"00\"},\"relays\":{\"%s\":[\"wss://Relay.Example.com/\",\"https://no\","
             "42,\"ws://r.example:8080/nostr\"]}}",
             PK, PK);
    assert_int_equal(doc(json, "bob", &r, err), 0);
    assert_int_equal(r.pubkey[0], 0x3b);
    assert_int_equal(r.pubkey[31], 0x9d);
    assert_int_equal(r.nrelays, 2);
    assert_string_equal(r.relays[0], "wss://relay.example.com");
    assert_string_equal(r.relays[1], "ws://r.example:8080/nostr");
    assert_int_equal(doc(json, "alice", &r, err), -ENOENT);
    assert_non_null(strstr(err, "no such name"));
    assert_int_equal(doc(json, "x", &r, err), -EINVAL);
    assert_non_null(strstr(err, "64 hex digits"));
    snprintf(json, sizeof(json), "{\"names\":{\"_\":\"%s\"}}", PK);
    assert_int_equal(doc(json, "_", &r, err), 0);
    assert_int_equal(r.nrelays, 0);
    assert_int_equal(doc("[]", "_", &r, err), -EINVAL);
    assert_non_null(strstr(err, "not a JSON object"));
    assert_int_equal(doc("{\"names\":[]}", "_", &r, err), -EINVAL);
    assert_non_null(strstr(err, "\"names\""));
    assert_int_equal(doc("{\"names\":{", "_", &r, err), -EINVAL);
    assert_non_null(strstr(err, "malformed document"));
}

static void relay_lists_keep_each_relay_once_with_its_markers(void **state)
{
    json_error_t jerr;
    json_t *tags =
        json_loads("[[\"r\",\"wss://relay.damus.io\"],[\"r\",\"wss://nos.lol\",\"read\"],"
                   "[\"r\",\"WSS://Purplepag.es:443/\",\"write\"],[\"r\",\"wss://purplepag.es\",\"read\"],"
                   "[\"r\",\"https://not.a.relay\"],[\"r\",\"wss://x.example\",\"both\"],[\"p\",\"wss://y\"],"
                   "[\"r\"],[\"r\",42],[\"r\",\"ws://[::1]:7777/p\",\"write\"],\"junk\"]",
                   0, &jerr);
    struct nip65_list l;

    (void)state;
    assert_non_null(tags);
    assert_int_equal(nip65_parse(tags, &l), 4);
    assert_string_equal(l.relays[0].url, "wss://relay.damus.io");
    assert_true(l.relays[0].read && l.relays[0].write);
    assert_string_equal(l.relays[1].url, "wss://nos.lol");
    assert_true(l.relays[1].read && !l.relays[1].write);
    assert_string_equal(l.relays[2].url, "wss://purplepag.es");
    assert_true(l.relays[2].read && l.relays[2].write);
    assert_string_equal(l.relays[3].url, "ws://[::1]:7777/p");
    assert_true(!l.relays[3].read && l.relays[3].write);
    json_decref(tags);
    /* A list longer than any client writes keeps the first NIP65_MAX_RELAYS. */
    tags = json_array();
    for (int i = 0; i < 100; i++) {
        char url[64];
        snprintf(url, sizeof(url), "wss://r%d.example", i);
        json_array_append_new(tags, json_pack("[ss]", "r", url));
    }
    assert_int_equal(nip65_parse(tags, &l), NIP65_MAX_RELAYS);
    json_decref(tags);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(identifiers_as_clients_display_them),
        cmocka_unit_test(documents_give_the_key_and_its_relays),
        cmocka_unit_test(relay_lists_keep_each_relay_once_with_its_markers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
