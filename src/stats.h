/* stats.h -- what the relay is doing: GET /stats as JSON for the page, GET /metrics for Prometheus. */
#ifndef PFP_STATS_H
#define PFP_STATS_H

#include <jansson.h>
#include <stdint.h>

#include "auth.h"
#include "fetch.h"
#include "http.h"
#include "jobs.h"
#include "lookup.h"
#include "pfp.h"
#include "pictures.h"
#include "profileapi.h"
#include "negserve.h"
#include "sync.h"
#include "proxy.h"
#include "relay.h"
#include "store.h"
#include "upstream.h"

struct cdn;
struct cluster;
struct replica;

/* Kinds counted one by one in events stored; the rest are added up as "other". */
#define STATS_KINDS 32

struct stats {
    struct auth *auth;
    struct http_server *http;
    struct store *store;
    struct upstream *upstream;
    struct lookup *lookup;
    struct relay *relay;
    struct pfp *pfp;
    struct proxy *proxy;
    struct negserve *neg;
    struct sync *sync;
    struct profileapi *profileapi;
    struct fetcher *fetcher;
    struct pictures *pictures;
    struct jobs *jobs;
    struct names *names;
    struct relaybook *relaybook;
    struct cluster *cluster; /* NULL: no cluster */
    struct replica *replica; /* ... */
    struct cdn *cdn;         /* NULL: no CDN told of changes */
    uint64_t started_ns;     /* clock_mono_ns() at start-up */
    struct {
        uint32_t kind;
        uint64_t count;
    } stored[STATS_KINDS];
    size_t nstored;
    uint64_t stored_other;
};

/* Wires `s` (whose source fields the caller has set) to the store, to count events stored by kind. */
void stats_init(struct stats *s);

/* Routes GET /stats and GET /metrics. */
int stats_route(struct stats *s, struct http_server *http);

/* The figures of GET /stats. */
json_t *stats_json(struct stats *s);

#endif
