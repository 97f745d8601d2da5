/* test_netguard.c -- the address ranges picture downloads may not reach, and the networks that lift the ban. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "netguard.h"

/* An address with the reason netguard must give for it (a part of it), or NULL when it is public. */
struct verdict {
    const char *addr;
    const char *reason;
};

static struct sockaddr_storage sockaddr_of(const char *text)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(443);
    } else if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(443);
    } else {
        fail_msg("\"%s\" is not an address", text);
    }
    return ss;
}

static void check_verdicts(const struct verdict *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_storage ss = sockaddr_of(v[i].addr);
        const char *why = netguard_classify((const struct sockaddr *)&ss);
        if (v[i].reason == NULL && why != NULL)
            fail_msg("%s refused as \"%s\", expected public", v[i].addr, why);
        if (v[i].reason != NULL && why == NULL)
            fail_msg("%s judged public, expected \"%s\"", v[i].addr, v[i].reason);
        if (v[i].reason != NULL && strstr(why, v[i].reason) == NULL)
            fail_msg("%s refused as \"%s\", expected \"%s\"", v[i].addr, why, v[i].reason);
    }
}

static void ipv4_special_ranges_are_refused_up_to_their_edges(void **state)
{
    static const struct verdict v[] = {
        {"0.0.0.0", "this network"},
        {"0.255.255.255", "this network"},
        {"1.0.0.0", NULL},
        {"9.255.255.255", NULL},
        {"10.0.0.0", "RFC 1918"},
        {"10.255.255.255", "RFC 1918"},
        {"11.0.0.1", NULL},
        {"100.63.255.255", NULL},
        {"100.64.0.0", "carrier-grade NAT"},
        {"100.127.255.255", "carrier-grade NAT"},
        {"100.128.0.0", NULL},
        {"126.255.255.255", NULL},
        {"127.0.0.0", "loopback"},
        {"127.0.0.1", "loopback"},
        {"127.255.255.255", "loopback"},
        {"128.0.0.0", NULL},
        {"169.253.255.255", NULL},
        {"169.254.0.0", "link-local"},
        {"169.254.169.254", "link-local"},
        {"169.254.255.255", "link-local"},
        {"169.255.0.0", NULL},
        {"172.15.255.255", NULL},
        {"172.16.0.0", "RFC 1918"},
        {"172.31.255.255", "RFC 1918"},
        {"172.32.0.0", NULL},
        {"191.255.255.255", NULL},
        {"192.0.0.0", "IETF protocol assignments"},
        {"192.0.0.255", "IETF protocol assignments"},
        {"192.0.1.0", NULL},
        {"192.0.2.0", "192.0.2.0/24"},
        {"192.0.2.255", "192.0.2.0/24"},
        {"192.0.3.0", NULL},
        {"192.88.98.255", NULL},
        {"192.88.99.0", "6to4 relay anycast"},
        {"192.88.99.255", "6to4 relay anycast"},
        {"192.88.100.0", NULL},
        {"192.167.255.255", NULL},
        {"192.168.0.0", "RFC 1918"},
        {"192.168.255.255", "RFC 1918"},
        {"192.169.0.0", NULL},
        {"198.17.255.255", NULL},
        {"198.18.0.0", "benchmarking"},
        {"198.19.255.255", "benchmarking"},
        {"198.20.0.0", NULL},
        {"198.51.99.255", NULL},
        {"198.51.100.0", "198.51.100.0/24"},
        {"198.51.100.255", "198.51.100.0/24"},
        {"198.51.101.0", NULL},
        {"203.0.112.255", NULL},
        {"203.0.113.0", "203.0.113.0/24"},
        {"203.0.113.255", "203.0.113.0/24"},
        {"203.0.114.0", NULL},
        {"223.255.255.255", NULL},
        {"224.0.0.0", "multicast"},
        {"239.255.255.255", "multicast"},
        {"240.0.0.0", "reserved"},
        {"255.255.255.254", "reserved"},
        {"255.255.255.255", "broadcast"},
    };
    (void)state;
    check_verdicts(v, sizeof(v) / sizeof(v[0]));
}

static void public_ipv4_is_allowed(void **state)
{
    static const struct verdict v[] = {{"1.1.1.1", NULL}, {"8.8.8.8", NULL}, {"93.184.216.34", NULL}};
    (void)state;
    check_verdicts(v, sizeof(v) / sizeof(v[0]));
}

static void ipv6_special_ranges_are_refused(void **state)
{
    static const struct verdict v[] = {
        {"::", "unspecified"},
        {"::1", "loopback"},
        {"::2", "IPv4-compatible"},
        {"::1.2.3.4", "IPv4-compatible"},
        {"::1:0:0:0", "::/8"},
        {"100::1", "discard"},
        {"100::ffff:ffff:ffff:ffff", "discard"},
        {"2001::1", "Teredo"},
        {"2001:1ff:ffff::1", "2001::/23"},
        {"2001:db8::1", "documentation"},
        {"2001:db8:ffff::1", "documentation"},
        {"fc00::1", "unique local"},
        {"fd12::1", "unique local"},
        {"fdff:ffff::1", "unique local"},
        {"fe80::1", "link-local"},
        {"febf:ffff::1", "link-local"},
        {"fec0::1", "site-local"},
        {"feff:ffff::1", "site-local"},
        {"ff02::1", "multicast"},
        {"ff0e::1", "multicast"},
    };
    (void)state;
    check_verdicts(v, sizeof(v) / sizeof(v[0]));
}

static void ipv6_forms_carrying_ipv4_are_judged_by_it(void **state)
{
    static const struct verdict v[] = {
        {"::ffff:127.0.0.1", "loopback"},
        {"::ffff:10.1.2.3", "RFC 1918"},
        {"::ffff:169.254.169.254", "link-local"},
        {"::ffff:8.8.8.8", NULL},
        {"64:ff9b::10.0.0.1", "RFC 1918"},
        {"64:ff9b::127.0.0.1", "loopback"},
        {"64:ff9b::8.8.8.8", NULL},
        {"2002:0a00:0001::", "RFC 1918"},
        {"2002:7f00:0001::1", "loopback"},
        {"2002:c0a8:0101:1::1", "RFC 1918"},
        {"2002:0808:0808::", NULL},
        {"2002:0808:0808:1::1", NULL},
    };
    (void)state;
    check_verdicts(v, sizeof(v) / sizeof(v[0]));
}

static void local_use_nat64_is_refused(void **state)
{
    struct sockaddr_storage ss = sockaddr_of("64:ff9b:1::1");
    (void)state;

    assert_string_equal(netguard_classify((const struct sockaddr *)&ss), "local-use NAT64 (64:ff9b:1::/48)");
    ss = sockaddr_of("64:ff9b:1:ffff::8.8.8.8");
    assert_string_equal(netguard_classify((const struct sockaddr *)&ss), "local-use NAT64 (64:ff9b:1::/48)");
}

static void public_ipv6_is_allowed(void **state)
{
    static const struct verdict v[] = {
        {"2606:4700::1111", NULL},   {"2a00:1450::1", NULL},      {"2001:4860:4860::8888", NULL},
        {"2001:200::1", NULL},       {"2003::1", NULL},           {"2001:db7:ffff::1", NULL},
        {"2c0f:fb50:4002::1", NULL}, {"2400:cb00:2048::1", NULL},
    };
    (void)state;
    check_verdicts(v, sizeof(v) / sizeof(v[0]));
}

static void other_families_are_refused(void **state)
{
    struct sockaddr_un un;
    (void)state;

    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    assert_string_equal(netguard_classify((const struct sockaddr *)&un), "not an internet address");
}

static void parses_networks(void **state)
{
    struct netguard_net net;
    static const uint8_t ten[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 0};
    static const uint8_t v6_loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t fd00[16] = {0xfd};
    static const uint8_t host[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4};
    (void)state;

    assert_int_equal(netguard_parse_net("10.0.0.0/8", &net), 0);
    assert_memory_equal(net.addr, ten, 16);
    assert_int_equal(net.prefix, 96 + 8);

    assert_int_equal(netguard_parse_net("::1", &net), 0);
    assert_memory_equal(net.addr, v6_loopback, 16);
    assert_int_equal(net.prefix, 128);

    assert_int_equal(netguard_parse_net("fd00::/8", &net), 0);
    assert_memory_equal(net.addr, fd00, 16);
    assert_int_equal(net.prefix, 8);

    assert_int_equal(netguard_parse_net("1.2.3.4", &net), 0);
    assert_memory_equal(net.addr, host, 16);
    assert_int_equal(net.prefix, 128);

    assert_int_equal(netguard_parse_net("1.2.3.4/32", &net), 0);
    assert_int_equal(net.prefix, 128);
    assert_int_equal(netguard_parse_net("0.0.0.0/0", &net), 0);
    assert_int_equal(net.prefix, 96);
    assert_int_equal(netguard_parse_net("::/0", &net), 0);
    assert_int_equal(net.prefix, 0);
    assert_int_equal(netguard_parse_net("2001:db8::/128", &net), 0);
    assert_int_equal(net.prefix, 128);
}

static void refuses_what_is_not_a_network(void **state)
{
    struct netguard_net net;
    const char *bad[] = {"1.2.3.4/33", "1.2.3.4/",    "x",          "1.2.3.4/-1",
                         "",           "/8",          "::1/129",    "1.2.3.4/8x",
                         "1.2.3.4/ 8", "1.2.3.4/+8",  "1.2.3",      "256.1.1.1",
                         "fd00::/8/8", "10.0.0.0 /8", "fe80::1%lo", "1.2.3.4/99999999999999999999999"};
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (netguard_parse_net(bad[i], &net) == 0)
            fail_msg("\"%s\" was accepted", bad[i]);
    }
}

/* Whether `g` lets a download reach `text`; `why` is "" when it does, else the range that refused it. */
static bool allows(const struct netguard *g, const char *text, char why[128])
{
    struct sockaddr_storage ss = sockaddr_of(text);

    why[0] = '\0';
    return netguard_check(g, (const struct sockaddr *)&ss, why, 128) == 0;
}

static struct netguard guard_of(bool allow_private, char *const *nets, size_t n)
{
    struct netguard g;
    struct netguard_options o = {allow_private, nets, n};
    char err[128];

    assert_int_equal(netguard_init(&g, &o, err, sizeof(err)), 0);
    return g;
}

static void allowed_networks_lift_the_ban_for_themselves_only(void **state)
{
    char *const nets[] = {"127.0.0.1/32", "fd00::/8"};
    struct netguard g = guard_of(false, nets, 2);
    char why[128];
    (void)state;

    /* An allowed address comes with no reason: nothing was refused. */
    assert_true(allows(&g, "127.0.0.1", why));
    assert_string_equal(why, "");
    assert_true(allows(&g, "::ffff:127.0.0.1", why));
    assert_true(allows(&g, "fd00::5", why));
    assert_true(allows(&g, "fdff:ffff::1", why));
    assert_true(allows(&g, "8.8.8.8", why));
    assert_string_equal(why, "");

    assert_false(allows(&g, "127.0.0.2", why));
    assert_string_equal(why, "loopback");
    assert_false(allows(&g, "10.0.0.1", why));
    assert_string_equal(why, "private network (RFC 1918)");
    assert_false(allows(&g, "fc00::1", why));
    assert_non_null(strstr(why, "unique local"));
    assert_false(allows(&g, "::1", why));
    assert_string_equal(why, "loopback (::1)");
    netguard_free(&g);
}

static void allowed_ipv4_networks_cover_ipv6_forms_that_carry_them(void **state)
{
    char *const nets[] = {"10.0.0.0/8"};
    struct netguard g = guard_of(false, nets, 1);
    char why[128];
    (void)state;

    assert_true(allows(&g, "64:ff9b::10.0.0.1", why));
    assert_true(allows(&g, "2002:0a00:0001::", why));
    assert_false(allows(&g, "64:ff9b::192.168.0.1", why));
    assert_string_equal(why, "private network (RFC 1918)");
    netguard_free(&g);
}

static void allow_private_allows_everything(void **state)
{
    struct netguard g = guard_of(true, NULL, 0);
    const char *addrs[] = {"10.0.0.1", "127.0.0.1", "::1", "fe80::1", "255.255.255.255", "8.8.8.8", "2606:4700::1111"};
    char why[128];
    (void)state;

    for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
        if (!allows(&g, addrs[i], why))
            fail_msg("%s refused as \"%s\"", addrs[i], why);
    }
    netguard_free(&g);
}

static void nothing_private_is_allowed_by_default(void **state)
{
    struct netguard g = guard_of(false, NULL, 0);
    char why[128];
    (void)state;

    assert_false(allows(&g, "127.0.0.1", why));
    assert_false(allows(&g, "192.168.1.1", why));
    assert_false(allows(&g, "::ffff:192.168.1.1", why));
    assert_true(allows(&g, "1.1.1.1", why));
    netguard_free(&g);
}

/* An allowed network that does not parse fails the set-up: left out, it would widen nothing, but kept zeroed it would
 * be ::/0. */
static void an_unparsable_allowed_network_is_an_error(void **state)
{
    char *const nets[] = {"10.0.0.0/8", "10.0.0.0/33"};
    struct netguard_options o = {false, nets, 2};
    struct netguard g;
    char err[128];
    (void)state;

    assert_int_equal(netguard_init(&g, &o, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "\"10.0.0.0/33\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ipv4_special_ranges_are_refused_up_to_their_edges),
        cmocka_unit_test(public_ipv4_is_allowed),
        cmocka_unit_test(ipv6_special_ranges_are_refused),
        cmocka_unit_test(ipv6_forms_carrying_ipv4_are_judged_by_it),
        cmocka_unit_test(local_use_nat64_is_refused),
        cmocka_unit_test(public_ipv6_is_allowed),
        cmocka_unit_test(other_families_are_refused),
        cmocka_unit_test(parses_networks),
        cmocka_unit_test(refuses_what_is_not_a_network),
        cmocka_unit_test(allowed_networks_lift_the_ban_for_themselves_only),
        cmocka_unit_test(allowed_ipv4_networks_cover_ipv6_forms_that_carry_them),
        cmocka_unit_test(allow_private_allows_everything),
        cmocka_unit_test(nothing_private_is_allowed_by_default),
        cmocka_unit_test(an_unparsable_allowed_network_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
