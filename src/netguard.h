/* netguard.h -- which addresses picture downloads may connect to: public unicast only, unless allowed. */
#ifndef PFP_NETGUARD_H
#define PFP_NETGUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"

/* An IPv4 or IPv6 network; IPv4 is kept as an IPv4-mapped IPv6 address, prefix counted over 128 bits. */
struct netguard_net {
    uint8_t addr[16];
    unsigned prefix;
};

struct netguard {
    bool allow_private;
    struct netguard_net *allowed;
    size_t nallowed;
};

/* Parses "192.168.1.0/24", "10.1.2.3", "fd00::/8" or "::1". Returns 0 or -EINVAL. */
int netguard_parse_net(const char *s, struct netguard_net *out);

/*
 * Why `sa` is not a public unicast address ("loopback", "private network
 * (RFC 1918)", ...), or NULL when it is one. IPv6 forms that carry an IPv4
 * address (IPv4-mapped, NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by the
 * IPv4 address they carry.
 */
const char *netguard_classify(const struct sockaddr *sa);

/* From allow_private_sources and allowed_source_addresses (already checked by the configuration). */
void netguard_init(struct netguard *g, const struct config *cfg);
void netguard_free(struct netguard *g);

/*
 * Whether a download may connect to `sa`. When not, `why` names the range that
 * refused it; when it may, `why` is NULL. Allowed networks are matched like
 * netguard_classify() judges: by the IPv4 address an IPv6 form carries.
 */
bool netguard_allows(const struct netguard *g, const struct sockaddr *sa, const char **why);

#endif
