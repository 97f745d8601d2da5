/* netguard.h -- which addresses picture downloads may connect to: public unicast only, unless allowed. */
#ifndef PFP_NETGUARD_H
#define PFP_NETGUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An IPv4 or IPv6 network; IPv4 is kept as an IPv4-mapped IPv6 address, prefix counted over 128 bits. */
struct netguard_net {
    uint8_t addr[16];
    unsigned prefix;
};

/* What downloads may reach beyond public unicast addresses. The strings stay the caller's. */
struct netguard_options {
    bool allow_private;   /* every address */
    char *const *allowed; /* networks as netguard_parse_net() reads them */
    size_t nallowed;
};

/* Embedded in its owner; the fields are private to netguard.c. */
struct netguard {
    bool _allow_private;
    struct netguard_net *_allowed;
    size_t _nallowed;
};

/* Parses "192.168.1.0/24", "10.1.2.3", "fd00::/8" or "::1". Returns 0 or -EINVAL. */
int netguard_parse_net(const char *s, struct netguard_net *out);

/*
 * Why `sa` is not a public unicast address ("loopback", "private network
 * (RFC 1918)", ...), or NULL when it is one. The reason is a static string.
 * IPv6 forms that carry an IPv4 address (IPv4-mapped, NAT64 64:ff9b::/96, 6to4
 * 2002::/16) are judged by the IPv4 address they carry.
 */
const char *netguard_classify(const struct sockaddr *sa);

/*
 * Sets `g` up from `o`. Returns 0, or -EINVAL when an allowed network does not
 * parse (`err` then quotes it, and `g` holds nothing to free). Release with
 * netguard_free().
 */
int netguard_init(struct netguard *g, const struct netguard_options *o, char *err, size_t errlen);

void netguard_free(struct netguard *g);

/*
 * Whether a download may connect to `sa`. Returns 0 when it may, or -EACCES with
 * `err` naming the range that refused it. Allowed networks are matched like
 * netguard_classify() judges: by the IPv4 address an IPv6 form carries.
 */
int netguard_check(const struct netguard *g, const struct sockaddr *sa, char *err, size_t errlen);

#endif
