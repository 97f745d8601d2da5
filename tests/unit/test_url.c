/* test_url.c -- ws:// and wss:// relay URLs. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "url.h"

static void parses_scheme_host_port_and_path(void **state)
{
    struct ws_url u;
    (void)state;

    assert_int_equal(url_parse_ws("wss://relay.damus.io", &u), 0);
    assert_true(u.tls);
    assert_string_equal(u.host, "relay.damus.io");
    assert_int_equal(u.port, 443);
    assert_string_equal(u.path, "/");

    assert_int_equal(url_parse_ws("ws://127.0.0.1:7777/nostr?x=1", &u), 0);
    assert_false(u.tls);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 7777);
    assert_string_equal(u.path, "/nostr?x=1");

    assert_int_equal(url_parse_ws("WSS://[::1]:8443", &u), 0);
    assert_true(u.tls);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 8443);

    assert_int_equal(url_parse_ws("ws://host?q", &u), 0);
    assert_string_equal(u.path, "/?q");
    assert_int_equal(u.port, 80);
}

static void refuses_what_is_not_a_relay_url(void **state)
{
    struct ws_url u;
    (void)state;
    const char *bad[] = {"http://a.example", "wss://",        "wss://:443",   "wss://a b",   "wss://user@host",
                         "wss://h:0",        "wss://h:65536", "wss://h:12ab", "wss://[::1",  "wss://[]:1",
                         "wss://h#frag",     "ws:/h",         "wss://h\x01",  "wss://[::1]x"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (url_parse_ws(bad[i], &u) == 0)
            fail_msg("\"%s\" was accepted", bad[i]);
    }
}

static void refuses_overlong_hosts(void **state)
{
    struct ws_url u;
    char s[400] = "wss://";
    (void)state;

    memset(s + 6, 'a', 300);
    s[306] = '\0';
    assert_int_not_equal(url_parse_ws(s, &u), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_scheme_host_port_and_path),
        cmocka_unit_test(refuses_what_is_not_a_relay_url),
        cmocka_unit_test(refuses_overlong_hosts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
