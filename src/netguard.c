/* netguard.c -- which addresses picture downloads may connect to: public unicast only, unless allowed. */
#include "netguard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A range of addresses downloads must not reach, over IPv4-mapped IPv6 for IPv4. */
struct range {
    uint8_t addr[16];
    unsigned prefix;
    const char *name;
};

#define V4(a, b, c, d)                                                                                                 \
    {                                                                                                                  \
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d                                                           \
    }

static const struct range v4_ranges[] = {
    {V4(0, 0, 0, 0), 96 + 8, "\"this network\" (0.0.0.0/8)"},
    {V4(10, 0, 0, 0), 96 + 8, "private network (RFC 1918)"},
    {V4(100, 64, 0, 0), 96 + 10, "carrier-grade NAT (100.64.0.0/10)"},
    {V4(127, 0, 0, 0), 96 + 8, "loopback"},
    {V4(169, 254, 0, 0), 96 + 16, "link-local"},
    {V4(172, 16, 0, 0), 96 + 12, "private network (RFC 1918)"},
    {V4(192, 0, 0, 0), 96 + 24, "IETF protocol assignments (192.0.0.0/24)"},
    {V4(192, 0, 2, 0), 96 + 24, "documentation (192.0.2.0/24)"},
    {V4(192, 88, 99, 0), 96 + 24, "6to4 relay anycast (192.88.99.0/24)"},
    {V4(192, 168, 0, 0), 96 + 16, "private network (RFC 1918)"},
    {V4(198, 18, 0, 0), 96 + 15, "benchmarking (198.18.0.0/15)"},
    {V4(198, 51, 100, 0), 96 + 24, "documentation (198.51.100.0/24)"},
    {V4(203, 0, 113, 0), 96 + 24, "documentation (203.0.113.0/24)"},
    {V4(224, 0, 0, 0), 96 + 4, "multicast"},
    {V4(240, 0, 0, 0), 96 + 4, "reserved (240.0.0.0/4), broadcast included"},
};

static const struct range v6_ranges[] = {
    {{0}, 128, "unspecified address (::)"},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, "loopback (::1)"},
    {{0}, 96, "IPv4-compatible IPv6 address (::/96)"},
    {{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48, "local-use NAT64 (64:ff9b:1::/48)"},
    {{0}, 8, "reserved IPv6 range (::/8)"},
    {{0x01, 0x00}, 64, "discard prefix (100::/64)"},
    {{0x20, 0x01, 0x0d, 0xb8}, 32, "documentation (2001:db8::/32)"},
    {{0x20, 0x01}, 23, "IETF special-purpose, Teredo included (2001::/23)"},
    {{0xfc}, 7, "unique local address (fc00::/7)"},
    {{0xfe, 0x80}, 10, "link-local (fe80::/10)"},
    {{0xfe, 0xc0}, 10, "site-local (fec0::/10)"},
    {{0xff}, 8, "multicast (ff00::/8)"},
};

static bool in_net(const uint8_t addr[16], const uint8_t net[16], unsigned prefix)
{
    unsigned bytes = prefix / 8, bits = prefix % 8;

    if (memcmp(addr, net, bytes) != 0)
        return false;
    if (bits == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - bits));
    return (addr[bytes] & mask) == (net[bytes] & mask);
}

static const char *classify_v4(const uint8_t v4[4])
{
    uint8_t mapped[16] = V4(v4[0], v4[1], v4[2], v4[3]);

    for (size_t i = 0; i < sizeof(v4_ranges) / sizeof(v4_ranges[0]); i++) {
        if (in_net(mapped, v4_ranges[i].addr, v4_ranges[i].prefix))
            return v4_ranges[i].name;
    }
    return NULL;
}

/* The IPv4 address an IPv6 address carries (IPv4-mapped, NAT64 64:ff9b::/96, 6to4 2002::/16), or NULL. */
static const uint8_t *embedded_v4(const uint8_t a[16])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};

    if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0)
        return a + 12;
    if (a[0] == 0x20 && a[1] == 0x02)
        return a + 2;
    return NULL;
}

static const char *classify_v6(const uint8_t a[16])
{
    const uint8_t *v4 = embedded_v4(a);

    /* Forms that carry an IPv4 address are judged by that address. */
    if (v4 != NULL)
        return classify_v4(v4);
    for (size_t i = 0; i < sizeof(v6_ranges) / sizeof(v6_ranges[0]); i++) {
        if (in_net(a, v6_ranges[i].addr, v6_ranges[i].prefix))
            return v6_ranges[i].name;
    }
    return NULL;
}

const char *netguard_classify(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return classify_v4((const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return classify_v6(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
    return "not an internet address";
}

int netguard_parse_net(const char *s, struct netguard_net *out)
{
    char host[64];
    const char *slash = strchr(s, '/');
    size_t hlen = slash != NULL ? (size_t)(slash - s) : strlen(s);
    unsigned max, prefix;
    uint8_t v4[4];

    if (hlen == 0 || hlen >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, host, v4) == 1) {
        out->addr[10] = out->addr[11] = 0xff;
        memcpy(out->addr + 12, v4, 4);
        max = 32;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        max = 128;
    } else {
        return -EINVAL;
    }
    prefix = max;
    if (slash != NULL) {
        char *end;
        unsigned long p = strtoul(slash + 1, &end, 10);
        if (slash[1] < '0' || slash[1] > '9' || *end != '\0' || p > max)
            return -EINVAL;
        prefix = (unsigned)p;
    }
    out->prefix = prefix + (128 - max);
    return 0;
}

int netguard_init(struct netguard *g, const struct netguard_options *o, char *err, size_t errlen)
{
    g->_allow_private = o->allow_private;
    g->_nallowed = o->nallowed;
    if ((g->_allowed = calloc(o->nallowed + 1, sizeof(*g->_allowed))) == NULL)
        abort();
    for (size_t i = 0; i < o->nallowed; i++) {
        if (netguard_parse_net(o->allowed[i], &g->_allowed[i]) != 0) {
            snprintf(err, errlen, "\"%s\" is not an IPv4 or IPv6 address or network", o->allowed[i]);
            netguard_free(g);
            return -EINVAL;
        }
    }
    return 0;
}

void netguard_free(struct netguard *g)
{
    free(g->_allowed);
    g->_allowed = NULL;
    g->_nallowed = 0;
}

int netguard_check(const struct netguard *g, const struct sockaddr *sa, char *err, size_t errlen)
{
    uint8_t a[16] = {0};
    const char *range = netguard_classify(sa);
    const uint8_t *v4;

    if (range == NULL || g->_allow_private)
        return 0;
    if (sa->sa_family == AF_INET) {
        a[10] = a[11] = 0xff;
        memcpy(a + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(a, ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, 16);
        /* Judged by the IPv4 address it carries, as netguard_classify() does. */
        if ((v4 = embedded_v4(a)) != NULL) {
            uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
            memcpy(mapped + 12, v4, 4);
            memcpy(a, mapped, 16);
        }
    }
    for (size_t i = 0; i < g->_nallowed; i++) {
        if (in_net(a, g->_allowed[i].addr, g->_allowed[i].prefix))
            return 0;
    }
    snprintf(err, errlen, "%s", range);
    return -EACCES;
}
