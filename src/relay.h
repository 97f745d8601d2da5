/* relay.h -- the Nostr relay: NIP-01 over WebSocket and NIP-11, on the HTTP listener. */
#ifndef PFP_RELAY_H
#define PFP_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "ingest.h"
#include "lookup.h"
#include "store.h"

struct negserve;
struct relay;

struct relay_options {
    /* The NIP-11 document, read by relay_init() only; `pubkey` and `contact` are left out when "" or NULL. */
    const char *name, *description, *pubkey, *contact;
    const int64_t *accepted_kinds; /* copied */
    size_t naccepted_kinds;
    size_t max_message_length;
    size_t max_subscriptions; /* per connection */
    size_t max_filters;       /* per REQ */
    uint32_t max_limit;
    size_t max_subid_length;
    int64_t max_future_seconds;    /* told in NIP-11; the ingest pipeline enforces it */
    size_t max_client_queue_bytes; /* a client that does not read while more waits for it is disconnected */
    size_t max_total_queue_bytes;  /* past this for all clients together, the biggest users are disconnected */
    /* Told of each event a client (not another node of the cluster) sent that was newly stored; may be NULL. */
    void (*on_accepted)(void *ctx, const struct event_view *ev);
    void *accepted_ctx;
};

/*
 * The query parameter by which another node of the cluster opens its connection ("/?pfp-peer=host:port"): what
 * it sends is stored but not passed on again, and what it asks is answered from what is stored here, without
 * asking upstream (which would ask it back).
 */
#define RELAY_PEER_PARAM "pfp-peer"

struct relay_stats {
    uint64_t connections; /* open now */
    uint64_t connections_total;
    uint64_t events_received;
    uint64_t events_stored; /* from any source */
    uint64_t events_duplicate;
    uint64_t events_rejected; /* refused, replaced ones included */
    uint64_t subscriptions_total;
    uint64_t slow_clients_closed; /* disconnected with 1008 for not reading */
    uint64_t queue_bytes;         /* bytes waiting for clients now */
    uint64_t queue_peak_bytes;    /* ... at most, since start-up */
    uint64_t pings_coalesced;     /* pings answered by the pong of a later one */
    uint64_t memory_trims;        /* times freed memory went back to the kernel after clients left */
};

/*
 * Sets the relay up in `*out`, on `loop`; `store`, `ingest`, `lookup` and `neg`
 * must outlive it. Registers as a listener of the store. A REQ for kinds 0, 3 or
 * 10002 of given authors looks up those missing here on the upstream relays
 * before its stored matches and EOSE. NEG-* messages go to `neg` (NIP-77).
 * Returns 0.
 */
int relay_init(struct relay **out, uv_loop_t *loop, const struct relay_options *opt, struct store *store,
               struct ingest *ingest, struct lookup *lookup, struct negserve *neg);

/*
 * Routes GET / to the relay: WebSocket upgrades become relay connections,
 * `Accept: application/nostr+json` gets the NIP-11 document, and anything else
 * goes to `fallback`.
 */
int relay_route(struct relay *r, struct http_server *http, http_handler_fn fallback, void *fallback_data);

/* Closes every connection with 1001 (going away) and refuses new ones. Idempotent. */
void relay_shutdown(struct relay *r);

void relay_stats(const struct relay *r, struct relay_stats *out);

/*
 * Releases the relay, once the ingest pipeline has answered every event (the
 * verify pool stopped, the store closed); the memory goes once the loop has run
 * the close callbacks. With connections still open (shutdown's deadline passed),
 * it is kept, since they will call back into it: the process is ending then.
 */
void relay_free(struct relay *r);

#endif
