/* test_url.c -- ws:// and wss:// relay URLs. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
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

static void listen_addresses(void **state)
{
    struct sockaddr_storage ss;
    bool wildcard;
    (void)state;

    assert_int_equal(url_parse_listen(":8080", &ss, &wildcard), 0);
    assert_true(wildcard);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 8080);

    assert_int_equal(url_parse_listen("127.0.0.1:0", &ss, &wildcard), 0);
    assert_false(wildcard);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));

    assert_int_equal(url_parse_listen("localhost:80", &ss, &wildcard), 0);
    assert_int_equal(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_LOOPBACK));

    assert_int_equal(url_parse_listen("[::1]:443", &ss, &wildcard), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 443);

    const char *bad[] = {"8080",         "nope",           ":",       ":99999",  ":-1",
                         ": 80",         "::1:80",         "[::1]80", "[::1]:",  "1.2.3.4:",
                         "256.1.1.1:80", "example.com:80", "[zz]:80", ":08080x", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (url_parse_listen(bad[i], &ss, &wildcard) == 0)
            fail_msg("\"%s\" was accepted", bad[i]);
    }
}

static void ports_have_one_syntax(void **state)
{
    uint16_t port;
    (void)state;

    assert_int_equal(url_parse_port("0", 1, &port), 0);
    assert_int_equal(port, 0);
    assert_int_equal(url_parse_port("65535", 5, &port), 0);
    assert_int_equal(port, 65535);
    assert_int_equal(url_parse_port("08080", 5, &port), 0);
    assert_int_equal(port, 8080);
    assert_int_equal(url_parse_port("443/path", 3, &port), 0);
    assert_int_equal(port, 443);

    const char *bad[] = {"", "65536", "99999", "123456", "-1", "+80", " 80", "80 ", "8a", "0x50"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (url_parse_port(bad[i], strlen(bad[i]), &port) == 0)
            fail_msg("\"%s\" was accepted", bad[i]);
    }
}

static void listen_and_relay_ports_agree(void **state)
{
    struct sockaddr_storage ss;
    struct ws_url u;
    bool wildcard;
    (void)state;

    /* The same digits mean the same port in both; only a relay URL refuses port 0. */
    assert_int_equal(url_parse_listen(":08080", &ss, &wildcard), 0);
    assert_int_equal(url_parse_ws("ws://h:08080", &u), 0);
    assert_int_equal(u.port, 8080);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 8080);
    assert_int_equal(url_parse_listen(":0", &ss, &wildcard), 0);
    assert_int_not_equal(url_parse_ws("ws://h:0", &u), 0);
    assert_int_not_equal(url_parse_listen(":123456", &ss, &wildcard), 0);
    assert_int_not_equal(url_parse_ws("ws://h:123456", &u), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_scheme_host_port_and_path),
        cmocka_unit_test(refuses_what_is_not_a_relay_url),
        cmocka_unit_test(refuses_overlong_hosts),
        cmocka_unit_test(listen_addresses),
        cmocka_unit_test(ports_have_one_syntax),
        cmocka_unit_test(listen_and_relay_ports_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
