/* relay.h -- the Nostr relay: NIP-01 over WebSocket and NIP-11, on the HTTP listener. */
#ifndef PFP_RELAY_H
#define PFP_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "http.h"
#include "lookup.h"
#include "store.h"
#include "workpool.h"

struct relay_conn;

struct relay_stats {
    uint64_t connections_total;
    uint64_t events_received;
    uint64_t events_stored;
    uint64_t events_duplicate;
    uint64_t events_rejected;
    uint64_t subscriptions_total;
    uint64_t slow_clients_closed;
};

struct relay {
    const struct config *cfg;
    struct store *store;
    struct workpool *verify; /* signature checks */
    struct lookup *lookup;   /* profiles, contact lists and relay lists missing here */
    json_t *info;            /* the NIP-11 document */
    struct relay_conn *conns;
    size_t nconns;
    bool closing;
    http_handler_fn fallback; /* GET / that is neither a WebSocket nor a NIP-11 request */
    void *fallback_data;
    struct relay_stats stats;
};

/*
 * Sets the relay up; `store`, `verify` and `lookup` must outlive it. Registers as
 * a listener of the store. A REQ for kinds 0, 3 or 10002 of given authors looks
 * up those missing here on the upstream relays before its stored matches and EOSE.
 */
void relay_init(struct relay *r, const struct config *cfg, struct store *store, struct workpool *verify,
                struct lookup *lookup);

/*
 * Routes GET / to the relay: WebSocket upgrades become relay connections,
 * `Accept: application/nostr+json` gets the NIP-11 document, and anything else
 * goes to `fallback`.
 */
int relay_route(struct relay *r, struct http_server *http, http_handler_fn fallback, void *fallback_data);

/* Closes every connection with 1001 (going away) and refuses new ones. */
void relay_shutdown(struct relay *r);

void relay_free(struct relay *r);

#endif
