/* app.h -- the relay as a whole: owns the loop, the configuration and every service, in start-up order. */
#ifndef PFP_APP_H
#define PFP_APP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "admin.h"
#include "auth.h"
#include "blob.h"
#include "blobcache.h"
#include "cdn.h"
#include "cluster.h"
#include "config.h"
#include "db.h"
#include "fetch.h"
#include "hashurl.h"
#include "http.h"
#include "inbox.h"
#include "ingest.h"
#include "jobs.h"
#include "lookup.h"
#include "pfp.h"
#include "replica.h"
#include "pictures.h"
#include "profileapi.h"
#include "relay.h"
#include "stats.h"
#include "store.h"
#include "sync.h"
#include "upstream.h"
#include "workpool.h"

struct names;

/* Exit statuses of the process. APP_EXIT_CONFIG also stands for a database that is damaged or in use. */
enum { APP_EXIT_OK = 0, APP_EXIT_FAILURE = 1, APP_EXIT_CONFIG = 2 };

struct app {
    const char *config_path;
    struct config cfg;
    uv_loop_t loop;
    struct inbox inbox; /* results of the writer and the worker threads */
    struct db *db;
    struct store store;
    struct workpool verify;      /* signature checks */
    struct upstream *upstream;   /* connections to the upstream relays */
    struct ingest *ingest;       /* every incoming event: checked, verified, stored */
    struct lookup *lookup;       /* what the upstream relays, then the pubkeys' own relays, are asked */
    struct relaybook *relaybook; /* the discovered relays' records */
    struct relay *relay;
    struct workpool neg_reads;      /* NIP-77 sessions' records, read off the loop */
    struct negserve *neg;           /* NIP-77 on the relay's connections */
    struct sync *sync;              /* NIP-77 syncs with other relays */
    struct blobs blobs;             /* picture files */
    struct blobcache picture_bytes; /* pictures kept in memory */
    struct pictures pictures;       /* the picture index */
    struct fetcher fetcher;         /* picture downloads */
    struct fetcher names_fetcher;   /* NIP-05 documents */
    struct names *names;            /* NIP-05 names resolved */
    struct cluster *cluster;        /* the other nodes; NULL: one machine alone */
    struct replica *replica;        /* ... and the events they share; NULL: one machine alone */
    struct hashurl *hashurl;        /* GET /p/{sha256}.{ext} */
    struct cdn *cdn;                /* a CDN in front, told of changes; NULL: none */
    char **relay_urls;              /* upstream_relays, then each other node's URL for its persistent connection */
    size_t nrelay_urls;
    const char **peer_names; /* the other nodes, as cluster_nodes names them */
    char **peer_sync_urls;   /* ... the ws:// URL each is synced with */
    size_t npeers;
    struct pfp *pfp;                                /* profile pictures */
    struct proxy *proxy;                            /* pictures by URL, in imgproxy's language */
    enum variant_format negotiate[VARIANT_PNG + 1]; /* negotiate_formats, each once, for pfp */
    size_t nnegotiate;
    struct jobs jobs;             /* batch pre-caching */
    struct auth auth;             /* who may call the admin endpoints */
    struct admin admin;           /* their routes */
    struct profileapi profileapi; /* GET /profile, POST /profiles */
    struct stats stats;           /* GET /stats and /metrics */
    struct http_server http;
    uv_signal_t sigint, sigterm;
    uv_timer_t shutdown_timer;
    uint64_t shutdown_deadline; /* uv_now() after which shutdown stops waiting */
    uint64_t started_ns;        /* clock_mono_ns() at start-up, for the uptime */
    bool stopping;
    bool http_drained;
    bool pictures_ready; /* pictures_init() succeeded */
    bool fetcher_ready;  /* fetcher_init() succeeded */
    bool names_ready;    /* the NIP-05 fetcher's fetcher_init() succeeded */
    bool pfp_ready;      /* pfp_init() succeeded */
    bool jobs_ready;     /* jobs_init() succeeded */
};

/*
 * Loads the configuration at `config_path` (writing the defaults if it is missing),
 * starts every service and runs until SIGINT or SIGTERM has drained them. With
 * `check_only`, stops after checking the configuration. Returns an exit status:
 * APP_EXIT_CONFIG for a configuration error, after printing one line on stderr.
 */
int app_run(struct app *a, const char *config_path, bool check_only);

/*
 * Walks the database the configuration at `config_path` names (db_check())
 * and prints what it found on stdout. Returns APP_EXIT_OK when it is sound,
 * APP_EXIT_CONFIG when it is damaged, APP_EXIT_FAILURE when it could not be
 * checked (missing, unreadable, or in use by a running relay).
 */
int app_check_db(struct app *a, const char *config_path);

#endif
