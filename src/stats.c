/* stats.c -- what the relay is doing: GET /stats as JSON for the page, GET /metrics for Prometheus. */
#include "stats.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "cdn.h"
#include "cluster.h"
#include "replica.h"
#include "downloads.h"
#include "fetch.h"
#include "image.h"
#include "metrics.h"
#include "names.h"
#include "relaybook.h"

static const char *const state_names[] = {"disconnected", "connecting", "connected"};
static const char *const job_state_names[] = {"", "queued", "running", "done", "failed"};

static void on_event_stored(void *data, const struct event_view *ev, uint64_t commit)
{
    (void)commit;
    struct stats *s = data;

    for (size_t i = 0; i < s->nstored; i++) {
        if (s->stored[i].kind == ev->kind) {
            s->stored[i].count++;
            return;
        }
    }
    if (s->nstored == STATS_KINDS) {
        s->stored_other++;
        return;
    }
    s->stored[s->nstored].kind = ev->kind;
    s->stored[s->nstored++].count = 1;
}

void stats_init(struct stats *s)
{
    store_add_listener(s->store, on_event_stored, s);
}

/* Pictures served from the cache among the requests that wanted one (remembered failures aside). */
static json_t *hit_ratio(const struct pfp_stats *ps)
{
    uint64_t served = ps->hits + ps->stale, all = served + ps->misses;
    return all > 0 ? json_real((double)served / (double)all) : json_null();
}

static json_t *failures_json(const struct pfp_stats *ps)
{
    json_t *o = json_object();

    for (int e = FETCH_BAD_URL; e < FETCH_ERRORS; e++)
        json_object_set_new(o, fetch_error_name(e), json_integer((json_int_t)ps->download_failures[e]));
    json_object_set_new(o, "bad_image", json_integer((json_int_t)ps->bad_images));
    return o;
}

static const char *const SIZE_CLASS_NAMES[PFP_SIZE_CLASSES] = {"64", "128", "256", "512", "larger"};

/* Picture answers by format and size class, and the variants made on request. */
static json_t *variants_json(const struct pfp_stats *ps)
{
    json_t *formats = json_object(), *sizes = json_object();

    for (int f = 0; f <= VARIANT_GIF; f++)
        json_object_set_new(formats, variant_format_name(f), json_integer((json_int_t)ps->served_format[f]));
    for (int c = 0; c < PFP_SIZE_CLASSES; c++)
        json_object_set_new(sizes, SIZE_CLASS_NAMES[c], json_integer((json_int_t)ps->served_size[c]));
    return json_pack("{s:o, s:o, s:I, s:I}", "served_by_format", formats, "served_by_size", sizes, "made",
                     (json_int_t)ps->variants_made, "failed", (json_int_t)ps->variant_failures);
}

static json_t *relays_json(const struct stats *s)
{
    json_t *a = json_array();
    struct upstream_relay_stats rs;

    for (size_t i = 0; i < upstream_count(s->upstream); i++) {
        upstream_relay_stats(s->upstream, i, &rs);
        json_t *o =
            json_pack("{s:s, s:s, s:s}", "url", rs.url, "state", state_names[rs.state], "last_error", rs.last_error);
        if (rs.state == UPSTREAM_CONNECTED)
            json_object_set_new(o, "connected_seconds", json_integer((json_int_t)(rs.connected_ms / 1000)));
        json_array_append_new(a, o);
    }
    return a;
}

static const char *const TIER_NAMES[LOOKUP_TIERS] = {"local", "upstream", "outbox", "hint"};

/* Lookups answered, by where the answer came from. */
static json_t *tiers_json(const struct lookup_stats *ls)
{
    json_t *o = json_object();

    for (int t = 0; t < LOOKUP_TIERS; t++)
        json_object_set_new(o, TIER_NAMES[t], json_integer((json_int_t)ls->by_tier[t]));
    return o;
}

/* The relays found through the outbox model and hints: connections, and those skipped. */
static json_t *discovery_json(const struct stats *s, const struct lookup_stats *ls)
{
    struct upstream_discovery_stats ds;
    struct relaybook_stats bs;

    upstream_discovery_stats(s->upstream, &ds);
    relaybook_stats(s->relaybook, (int64_t)time(NULL), &bs);
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:{s:I, s:I}}", "connections", (json_int_t)ds.open,
                     "connections_opened", (json_int_t)ds.opened, "refused", (json_int_t)ds.refused, "relays_known",
                     (json_int_t)bs.known, "relays_backing_off", (json_int_t)bs.backing_off, "skipped", "backoff",
                     (json_int_t)ls->skipped_backoff, "limit", (json_int_t)ds.skipped_limit);
}

/* NIP-77 sessions served. */
static json_t *negentropy_json(struct stats *s)
{
    struct negserve_stats n;

    negserve_stats(s->neg, &n);
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "sessions", (json_int_t)n.sessions_total, "open",
                     (json_int_t)n.sessions_open, "round_trips", (json_int_t)n.round_trips, "records",
                     (json_int_t)n.records, "bytes_in", (json_int_t)n.bytes_in, "bytes_out", (json_int_t)n.bytes_out,
                     "errors", (json_int_t)n.errors);
}

/* NIP-77 syncs with other relays. */
static json_t *sync_json(struct stats *s)
{
    struct sync_stats y;

    sync_stats(s->sync, &y);
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "runs",
                     (json_int_t)y.runs, "running", (json_int_t)y.running, "done", (json_int_t)y.done, "failed",
                     (json_int_t)y.failed, "windows", (json_int_t)y.windows, "records", (json_int_t)y.records,
                     "round_trips", (json_int_t)y.round_trips, "ids_needed", (json_int_t)y.needed, "ids_fetched",
                     (json_int_t)y.fetched, "ids_stored", (json_int_t)y.stored, "ids_have", (json_int_t)y.have,
                     "ids_sent", (json_int_t)y.sent, "ids_accepted", (json_int_t)y.accepted, "bytes_in",
                     (json_int_t)y.bytes_in, "bytes_out", (json_int_t)y.bytes_out);
}

/* The ring this node shares with the others, and where its keyed answers' keys belong. */
static json_t *cluster_json(struct stats *s)
{
    struct cluster_stats c;
    struct replica_stats r;
    struct replica_peer_stats ps;
    json_t *nodes, *peers;

    if (s->cluster == NULL)
        return json_null();
    cluster_stats(s->cluster, &c);
    replica_stats(s->replica, &r);
    nodes = json_array();
    for (size_t i = 0; i < cluster_size(s->cluster); i++)
        json_array_append_new(
            nodes, json_pack("{s:s, s:f}", "node", cluster_node(s->cluster, i), "share", cluster_share(s->cluster, i)));
    peers = json_array();
    for (size_t i = 0; i < replica_peers(s->replica); i++) {
        replica_peer_stats(s->replica, i, &ps);
        json_array_append_new(peers, json_pack("{s:s, s:b, s:I}", "node", ps.node, "connected", ps.connected,
                                               "catchups", (json_int_t)ps.catchups));
    }
    return json_pack("{s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:o, s:I, s:I}", "self",
                     cluster_node(s->cluster, cluster_self(s->cluster)), "nodes", nodes, "answers_owned",
                     (json_int_t)c.owned, "answers_not_owned", (json_int_t)c.not_owned, "redirected",
                     (json_int_t)c.redirected, "from_owner", (json_int_t)c.from_owner, "owner_failures",
                     (json_int_t)c.owner_failures, "peers", peers, "events_forwarded", (json_int_t)r.forwarded,
                     "events_unsent", (json_int_t)r.unsent);
}

/* The imgproxy endpoint. */
static json_t *imgproxy_json(struct stats *s)
{
    struct proxy_stats p;
    json_t *o;

    proxy_stats(s->proxy, &p);
    o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "requests", (json_int_t)p.requests, "hits",
                  (json_int_t)p.hits, "stale", (json_int_t)p.stale, "misses", (json_int_t)p.misses, "not_modified",
                  (json_int_t)p.not_modified, "sources_fetched", (json_int_t)p.sources_fetched, "source_failures",
                  (json_int_t)p.source_failures, "variants_made", (json_int_t)p.variants_made, "early_answers",
                  (json_int_t)p.early_answers);
    json_object_update_new(o, json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "rejected",
                                        (json_int_t)p.rejected, "bad_requests", (json_int_t)p.bad_requests, "forbidden",
                                        (json_int_t)p.forbidden, "failed", (json_int_t)p.failed, "bytes_served",
                                        (json_int_t)p.bytes_served, "running", (json_int_t)p.running, "queued",
                                        (json_int_t)p.queued, "max_concurrent", (json_int_t)p.max_concurrent,
                                        "max_queue", (json_int_t)p.max_queue));
    return o;
}

json_t *stats_json(struct stats *s)
{
    struct pfp_stats pfp;
    const struct pfp_stats *ps = &pfp;
    struct pictures_stats xs_now;
    const struct pictures_stats *xs = &xs_now;
    struct lookup_stats ls;
    struct relay_stats rs;
    struct auth_stats as;
    uint64_t jobs[JOB_FAILED + 1];
    struct profileapi_stats pa;
    struct names_stats ns;
    json_t *stored = json_object(), *root;
    char kind[16];

    pfp_stats(s->pfp, &pfp);
    pictures_stats(s->pictures, &xs_now);
    lookup_stats(s->lookup, &ls);
    relay_stats(s->relay, &rs);
    auth_stats(s->auth, &as);
    jobs_count(s->jobs, jobs);
    for (size_t i = 0; i < s->nstored; i++) {
        snprintf(kind, sizeof(kind), "%u", (unsigned)s->stored[i].kind);
        json_object_set_new(stored, kind, json_integer((json_int_t)s->stored[i].count));
    }
    if (s->stored_other > 0)
        json_object_set_new(stored, "other", json_integer((json_int_t)s->stored_other));
    root = json_pack(
        "{s:s, s:I,"
        " s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:I, s:I, s:I, s:b, s:I, s:I, s:{s:I, s:I, s:I}},"
        " s:{s:I, s:I, s:I, s:o},"
        " s:{s:I, s:I, s:I, s:I, s:I, s:I},"
        " s:o,"
        " s:{s:I, s:I, s:I, s:I},"
        " s:{s:I, s:o, s:I, s:I, s:I},"
        " s:{s:b, s:b, s:b}}",
        "version", PFP_VERSION, "uptime_seconds", (json_int_t)((clock_mono_ns() - s->started_ns) / 1000000000u),
        "cache", "pictures", (json_int_t)xs->pictures, "files", (json_int_t)xs->files, "bytes", (json_int_t)xs->bytes,
        "max_bytes", (json_int_t)xs->max_bytes, "hits", (json_int_t)ps->hits, "stale", (json_int_t)ps->stale, "misses",
        (json_int_t)ps->misses, "negative_hits", (json_int_t)ps->negative_hits, "not_modified",
        (json_int_t)ps->not_modified, "hit_ratio", hit_ratio(ps), "bytes_served", (json_int_t)ps->bytes_served,
        "evictions", (json_int_t)xs->evictions, "evicted_files", (json_int_t)xs->evicted_files, "evicting",
        xs->evicting, "writes_pending", (json_int_t)xs->writes_pending, "purges", (json_int_t)xs->purges, "generated",
        "identicon", (json_int_t)ps->identicons, "blank", (json_int_t)ps->blanks, "drawn", (json_int_t)ps->drawn,
        "downloads", "started", (json_int_t)ps->downloads, "processed", (json_int_t)ps->processed, "url_reuses",
        (json_int_t)ps->url_reuses, "failed", failures_json(ps), "lookups", "requested", (json_int_t)ls.requested,
        "coalesced", (json_int_t)ls.coalesced, "queries", (json_int_t)ls.queries, "found", (json_int_t)ls.found,
        "not_found", (json_int_t)ls.not_found, "timed_out", (json_int_t)ls.timed_out, "upstream_relays", relays_json(s),
        "jobs", "queued", (json_int_t)jobs[JOB_QUEUED], "running", (json_int_t)jobs[JOB_RUNNING], "done",
        (json_int_t)jobs[JOB_DONE], "failed", (json_int_t)jobs[JOB_FAILED], "relay", "connections",
        (json_int_t)rs.connections, "events_stored", stored, "slow_clients_closed", (json_int_t)rs.slow_clients_closed,
        "queue_bytes", (json_int_t)rs.queue_bytes, "queue_peak_bytes", (json_int_t)rs.queue_peak_bytes, "admin",
        "token", as.token, "nip98", as.nip98, "loopback_only", as.loopback_only);
    json_object_set_new(json_object_get(root, "cache"), "variants", variants_json(ps));
    json_object_set_new(root, "discovery", discovery_json(s, &ls));
    json_object_set_new(json_object_get(root, "lookups"), "by_tier", tiers_json(&ls));
    json_object_set_new(json_object_get(root, "lookups"), "outbox_queries",
                        json_integer((json_int_t)ls.outbox_queries));
    names_stats(s->names, &ns);
    json_object_set_new(root, "nip05",
                        json_pack("{s:I, s:I, s:I, s:I}", "resolved", (json_int_t)ns.resolved, "failed",
                                  (json_int_t)ns.failed, "cached", (json_int_t)ns.cached, "remembered",
                                  (json_int_t)ns.remembered));
    profileapi_stats(s->profileapi, &pa);
    json_object_set_new(root, "profiles",
                        json_pack("{s:I, s:I, s:I, s:I, s:I}", "found", (json_int_t)pa.found, "not_found",
                                  (json_int_t)pa.not_found, "pending", (json_int_t)pa.pending, "not_modified",
                                  (json_int_t)pa.not_modified, "summaries", (json_int_t)pa.summaries));
    json_object_set_new(root, "imgproxy", imgproxy_json(s));
    json_object_set_new(root, "negentropy", negentropy_json(s));
    json_object_set_new(root, "sync", sync_json(s));
    json_object_set_new(root, "cluster", cluster_json(s));
    if (s->cdn != NULL) {
        struct cdn_stats cs;
        cdn_stats(s->cdn, &cs);
        json_object_set_new(
            root, "cdn",
            json_pack("{s:I, s:I}", "purges_sent", (json_int_t)cs.sent, "purges_failed", (json_int_t)cs.failed));
    } else {
        json_object_set_new(root, "cdn", json_null());
    }
    return root;
}

static void on_stats(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    http_reply_json(req, 200, stats_json(data));
}

/* --- /metrics --------------------------------------------------------------------------------------------------- */

/* A label list of one label. */
static const char *one_label(struct buf *l, const char *name, const char *value)
{
    l->len = 0;
    metrics_label(l, name, value);
    return l->data;
}

/* Connections to discovered relays, and the relays not asked. */
static void discovery_metrics(struct stats *s, struct buf *b, struct buf *l, const struct lookup_stats *ls)
{
    struct upstream_discovery_stats ds;
    struct relaybook_stats bs;

    upstream_discovery_stats(s->upstream, &ds);
    relaybook_stats(s->relaybook, (int64_t)time(NULL), &bs);
    metrics_single(b, "pfpcache_discovery_connections", "gauge",
                   "Connections to relays found through relay lists and hints, open or being opened.", ds.open);
    metrics_single(b, "pfpcache_discovery_connections_opened_total", "counter",
                   "Connections to discovered relays attempted.", ds.opened);
    metrics_single(b, "pfpcache_discovery_connections_refused_total", "counter",
                   "Discovered relays whose every address the guard refused.", ds.refused);
    metrics_single(b, "pfpcache_discovery_outbox_queries_total", "counter",
                   "Batches of lookups sent to discovered relays.", ls->outbox_queries);
    metrics_single(b, "pfpcache_discovery_relays_known", "gauge", "Discovered relays with a record.", bs.known);
    metrics_family(b, "pfpcache_discovery_relays_skipped_total", "counter",
                   "Discovered relays not asked: for their record of failures, or because max_discovery_connections "
                   "were open and in use.");
    metrics_u64(b, "pfpcache_discovery_relays_skipped_total", one_label(l, "reason", "backoff"), ls->skipped_backoff);
    metrics_u64(b, "pfpcache_discovery_relays_skipped_total", one_label(l, "reason", "limit"), ds.skipped_limit);
}

/* Who holds the download slots: interactive or background work, and how many downloads one host has under way. */
static void download_slot_metrics(struct stats *s, struct buf *b, struct buf *l)
{
    struct downloads_stats ds;
    struct fetch_stats fs;

    downloads_stats(pfp_downloads(s->pfp), &ds);
    fetcher_stats(s->fetcher, &fs);
    metrics_family(b, "pfpcache_download_slots", "gauge",
                   "Download slots (a download and its processing each): all of them, the most background work may "
                   "hold; and the most downloads one origin host may have under way (0: no limit).");
    metrics_u64(b, "pfpcache_download_slots", one_label(l, "limit", "all"), ds.slots);
    metrics_u64(b, "pfpcache_download_slots", one_label(l, "limit", "background"), ds.background_slots);
    metrics_u64(b, "pfpcache_download_slots", one_label(l, "limit", "per_host"), ds.max_per_host);
    metrics_family(b, "pfpcache_downloads_running", "gauge",
                   "Download slots held now, by the work that took them: interactive (someone waits for the "
                   "picture) or background (fetching ahead, jobs).");
    metrics_u64(b, "pfpcache_downloads_running", one_label(l, "class", "interactive"),
                ds.running - ds.running_background);
    metrics_u64(b, "pfpcache_downloads_running", one_label(l, "class", "background"), ds.running_background);
    metrics_family(b, "pfpcache_downloads_queued", "gauge", "Downloads waiting for a slot, by class.");
    metrics_u64(b, "pfpcache_downloads_queued", one_label(l, "class", "interactive"), ds.queued - ds.queued_background);
    metrics_u64(b, "pfpcache_downloads_queued", one_label(l, "class", "background"), ds.queued_background);
    metrics_single(b, "pfpcache_downloads_busiest_host", "gauge",
                   "The most downloads under way from one origin host now.", ds.busiest_host);
    metrics_single(b, "pfpcache_download_host_waits_total", "counter",
                   "Downloads that waited for their host (max_downloads_per_host under way) while others went ahead.",
                   ds.host_waits);
    metrics_single(b, "pfpcache_download_connections_closed_total", "counter",
                   "Kept-alive download connections closed rather than reused: after a failed download, or because "
                   "bytes or a close came while no request was waiting (a response longer than it said).",
                   fs.connections_closed);
}

static void profile_metrics(struct stats *s, struct buf *b, struct buf *l)
{
    struct profileapi_stats pa;
    struct names_stats ns;

    names_stats(s->names, &ns);
    metrics_family(b, "pfpcache_nip05_resolutions_total", "counter",
                   "NIP-05 names resolved by fetching their domain's nostr.json (resolved, failed), and answered "
                   "from what was remembered (cached).");
    metrics_u64(b, "pfpcache_nip05_resolutions_total", one_label(l, "result", "resolved"), ns.resolved);
    metrics_u64(b, "pfpcache_nip05_resolutions_total", one_label(l, "result", "failed"), ns.failed);
    metrics_u64(b, "pfpcache_nip05_resolutions_total", one_label(l, "result", "cached"), ns.cached);
    metrics_single(b, "pfpcache_nip05_names", "gauge", "NIP-05 names remembered.", ns.remembered);

    profileapi_stats(s->profileapi, &pa);
    metrics_family(b, "pfpcache_profile_answers_total", "counter",
                   "Profiles answered by GET /profile and POST /profiles: found (of which pending: the picture was "
                   "queued), not_found.");
    metrics_u64(b, "pfpcache_profile_answers_total", one_label(l, "result", "found"), pa.found);
    metrics_u64(b, "pfpcache_profile_answers_total", one_label(l, "result", "not_found"), pa.not_found);
    metrics_u64(b, "pfpcache_profile_answers_total", one_label(l, "result", "pending"), pa.pending);
    metrics_single(b, "pfpcache_profile_not_modified_total", "counter", "Profile answers that were 304 Not Modified.",
                   pa.not_modified);
    metrics_single(b, "pfpcache_profile_picture_summaries_total", "counter",
                   "Pictures whose blurhash and dominant colour were computed.", pa.summaries);
}

static void imgproxy_metrics(struct stats *s, struct buf *b, struct buf *l)
{
    struct proxy_stats p;

    proxy_stats(s->proxy, &p);
    const struct {
        const char *outcome;
        uint64_t n;
    } outcomes[] = {{"hit", p.hits},
                    {"stale", p.stale},
                    {"miss", p.misses},
                    {"not_modified", p.not_modified},
                    {"rejected", p.rejected},
                    {"bad_request", p.bad_requests},
                    {"forbidden", p.forbidden},
                    {"failed", p.failed}};

    metrics_family(b, "pfpcache_imgproxy_requests_total", "counter",
                   "imgproxy endpoint requests by outcome: hit, stale, miss (not_modified counts 304s among them), "
                   "rejected (429), bad_request, forbidden (the signature), failed (the source could not be had).");
    for (size_t i = 0; i < sizeof(outcomes) / sizeof(outcomes[0]); i++)
        metrics_u64(b, "pfpcache_imgproxy_requests_total", one_label(l, "outcome", outcomes[i].outcome), outcomes[i].n);
    metrics_single(b, "pfpcache_imgproxy_sources_fetched_total", "counter",
                   "Sources downloaded for the imgproxy endpoint.", p.sources_fetched);
    metrics_single(b, "pfpcache_imgproxy_running", "gauge",
                   "Sources being fetched and variants being made for the imgproxy endpoint.", p.running);
    metrics_single(b, "pfpcache_imgproxy_queued", "gauge",
                   "imgproxy endpoint requests waiting for one of imgproxy_max_concurrent slots.", p.queued);
}

static void negentropy_metrics(struct stats *s, struct buf *b)
{
    struct negserve_stats n;

    negserve_stats(s->neg, &n);
    metrics_single(b, "pfpcache_negentropy_sessions_total", "counter", "NIP-77 sessions opened by clients.",
                   n.sessions_total);
    metrics_single(b, "pfpcache_negentropy_sessions_open", "gauge", "NIP-77 sessions open now.", n.sessions_open);
    metrics_single(b, "pfpcache_negentropy_round_trips_total", "counter",
                   "NIP-77 messages answered with a NEG-MSG (NEG-OPEN's included).", n.round_trips);
    metrics_single(b, "pfpcache_negentropy_records_total", "counter", "Records read for NIP-77 sessions.", n.records);
    metrics_single(b, "pfpcache_negentropy_received_bytes_total", "counter",
                   "NIP-77 messages received, in bytes before hex.", n.bytes_in);
    metrics_single(b, "pfpcache_negentropy_sent_bytes_total", "counter", "NIP-77 messages sent, in bytes before hex.",
                   n.bytes_out);
    metrics_single(b, "pfpcache_negentropy_errors_total", "counter", "NEG-ERR sent.", n.errors);
}

static void cluster_metrics(struct stats *s, struct buf *b, struct buf *l)
{
    struct cluster_stats c;
    struct replica_stats r;
    struct replica_peer_stats ps;

    if (s->cluster == NULL)
        return;
    cluster_stats(s->cluster, &c);
    replica_stats(s->replica, &r);
    metrics_family(b, "pfpcache_cluster_share", "gauge", "The fraction of all keys each node owns on the ring.");
    for (size_t i = 0; i < cluster_size(s->cluster); i++)
        metrics_f64(b, "pfpcache_cluster_share", one_label(l, "node", cluster_node(s->cluster, i)),
                    cluster_share(s->cluster, i));
    metrics_family(b, "pfpcache_cluster_answers_total", "counter",
                   "Keyed answers, by whether this node owns the key (\"self\") or another does (\"other\").");
    metrics_u64(b, "pfpcache_cluster_answers_total", one_label(l, "owner", "self"), c.owned);
    metrics_u64(b, "pfpcache_cluster_answers_total", one_label(l, "owner", "other"), c.not_owned);
    metrics_single(b, "pfpcache_cluster_redirects_total", "counter",
                   "Requests sent to the lowercase hex URL of the key they named.", c.redirected);
    metrics_single(b, "pfpcache_cluster_from_owner_total", "counter",
                   "Picture requests for another node's key answered with what its owner answered.", c.from_owner);
    metrics_single(b, "pfpcache_cluster_owner_failures_total", "counter",
                   "Picture requests whose owner could not answer, answered here instead.", c.owner_failures);
    metrics_single(b, "pfpcache_cluster_events_forwarded_total", "counter",
                   "Events from clients passed to another node.", r.forwarded);
    metrics_single(b, "pfpcache_cluster_events_unsent_total", "counter",
                   "Events from clients not passed to a node that was away (its catch-up sync brings them).", r.unsent);
    metrics_family(b, "pfpcache_cluster_peer_up", "gauge", "1 while the connection to another node is open.");
    for (size_t i = 0; i < replica_peers(s->replica); i++) {
        replica_peer_stats(s->replica, i, &ps);
        metrics_u64(b, "pfpcache_cluster_peer_up", one_label(l, "node", ps.node), ps.connected);
    }
    metrics_family(b, "pfpcache_cluster_catchups_total", "counter",
                   "Catch-up syncs started with another node because its connection opened.");
    for (size_t i = 0; i < replica_peers(s->replica); i++) {
        replica_peer_stats(s->replica, i, &ps);
        metrics_u64(b, "pfpcache_cluster_catchups_total", one_label(l, "node", ps.node), ps.catchups);
    }
}

static void sync_metrics(struct stats *s, struct buf *b)
{
    struct sync_stats y;

    sync_stats(s->sync, &y);
    metrics_single(b, "pfpcache_sync_runs_total", "counter", "NIP-77 syncs with other relays started.", y.runs);
    metrics_single(b, "pfpcache_sync_running", "gauge", "NIP-77 syncs running now.", y.running);
    metrics_single(b, "pfpcache_sync_failed_total", "counter", "NIP-77 syncs that failed.", y.failed);
    metrics_single(b, "pfpcache_sync_round_trips_total", "counter", "NIP-77 messages this relay sent as a client.",
                   y.round_trips);
    metrics_single(b, "pfpcache_sync_records_total", "counter", "Local records compared by syncs.", y.records);
    metrics_single(b, "pfpcache_sync_ids_needed_total", "counter", "Ids only the other relay had.", y.needed);
    metrics_single(b, "pfpcache_sync_ids_stored_total", "counter", "Events fetched by syncs and newly stored.",
                   y.stored);
    metrics_single(b, "pfpcache_sync_ids_sent_total", "counter", "Events sent to other relays by syncs.", y.sent);
    metrics_single(b, "pfpcache_sync_received_bytes_total", "counter", "Bytes received by syncs.", y.bytes_in);
    metrics_single(b, "pfpcache_sync_sent_bytes_total", "counter", "Bytes sent by syncs.", y.bytes_out);
}

static void picture_metrics(struct stats *s, struct buf *b, struct buf *l)
{
    struct pfp_stats pfp;
    const struct pfp_stats *ps = &pfp;
    struct pictures_stats xs_now;
    const struct pictures_stats *xs = &xs_now;
    struct image_stats is;

    pfp_stats(s->pfp, &pfp);
    pictures_stats(s->pictures, &xs_now);
    metrics_family(
        b, "pfpcache_picture_requests_total", "counter",
        "GET /profile-pic answers: hit, stale (served while refreshed), miss, negative (a remembered failure).");
    metrics_u64(b, "pfpcache_picture_requests_total", one_label(l, "result", "hit"), ps->hits);
    metrics_u64(b, "pfpcache_picture_requests_total", one_label(l, "result", "stale"), ps->stale);
    metrics_u64(b, "pfpcache_picture_requests_total", one_label(l, "result", "miss"), ps->misses);
    metrics_u64(b, "pfpcache_picture_requests_total", one_label(l, "result", "negative"), ps->negative_hits);
    metrics_single(b, "pfpcache_picture_not_modified_total", "counter", "Picture answers that were 304 Not Modified.",
                   ps->not_modified);
    metrics_single(b, "pfpcache_picture_served_bytes_total", "counter", "Picture bytes sent in 200 answers.",
                   ps->bytes_served);
    metrics_family(b, "pfpcache_generated_pictures_total", "counter",
                   "Generated answers (200 and 304) for pubkeys without a usable picture, by kind.");
    metrics_u64(b, "pfpcache_generated_pictures_total", one_label(l, "kind", "identicon"), ps->identicons);
    metrics_u64(b, "pfpcache_generated_pictures_total", one_label(l, "kind", "blank"), ps->blanks);
    metrics_single(b, "pfpcache_generated_drawn_total", "counter",
                   "Generated pictures drawn and encoded; the other generated answers came from memory.", ps->drawn);
    metrics_family(b, "pfpcache_picture_answers_total", "counter",
                   "Picture answers (200 and 304) by format; generated ones are counted apart.");
    for (int f = 0; f <= VARIANT_GIF; f++)
        metrics_u64(b, "pfpcache_picture_answers_total", one_label(l, "format", variant_format_name(f)),
                    ps->served_format[f]);
    metrics_family(b, "pfpcache_picture_answers_by_size_total", "counter",
                   "Picture answers (200 and 304) by size class: up to 64, 128, 256, 512 pixels, and larger.");
    for (int c = 0; c < PFP_SIZE_CLASSES; c++)
        metrics_u64(b, "pfpcache_picture_answers_by_size_total", one_label(l, "size", SIZE_CLASS_NAMES[c]),
                    ps->served_size[c]);
    metrics_single(b, "pfpcache_variants_made_total", "counter", "Variants made from a master on request.",
                   ps->variants_made);
    metrics_single(b, "pfpcache_variant_failures_total", "counter", "Variants that could not be made.",
                   ps->variant_failures);
    metrics_family(b, "pfpcache_variant_making_seconds", "histogram",
                   "Time to make a variant from its master, by format.");
    for (int f = 0; f <= VARIANT_GIF; f++)
        metrics_histogram(b, "pfpcache_variant_making_seconds", one_label(l, "format", variant_format_name(f)),
                          ps->making[f]);

    metrics_single(b, "pfpcache_downloads_total", "counter", "Picture downloads started.", ps->downloads);
    metrics_family(
        b, "pfpcache_download_failures_total", "counter",
        "Pictures that could not be cached, by reason: the download's, or bad_image when it was no picture.");
    for (int e = FETCH_BAD_URL; e < FETCH_ERRORS; e++)
        metrics_u64(b, "pfpcache_download_failures_total", one_label(l, "reason", fetch_error_name(e)),
                    ps->download_failures[e]);
    metrics_u64(b, "pfpcache_download_failures_total", one_label(l, "reason", "bad_image"), ps->bad_images);
    download_slot_metrics(s, b, l);
    metrics_family(b, "pfpcache_image_processing_seconds", "histogram",
                   "Time to check, resize and store each downloaded picture.");
    metrics_histogram(b, "pfpcache_image_processing_seconds", "", ps->processing);
    image_stats(&is);
    metrics_family(b, "pfpcache_image_refused_total", "counter",
                   "Downloaded pictures refused by the image checks, by reason (each is also a bad_image failure).");
    for (int r = 0; r < IMAGE_REFUSALS; r++)
        metrics_u64(b, "pfpcache_image_refused_total", one_label(l, "reason", image_refusal_name(r)), is.refused[r]);

    metrics_single(b, "pfpcache_cache_pictures", "gauge", "Pubkeys with a cached picture.", xs->pictures);
    metrics_single(b, "pfpcache_cache_files", "gauge",
                   "Picture files, each counted once however many pubkeys share it.", xs->files);
    metrics_single(b, "pfpcache_cache_bytes", "gauge", "Total size of the picture files.", xs->bytes);
    metrics_single(b, "pfpcache_cache_max_bytes", "gauge", "The cache's size limit, in bytes.", xs->max_bytes);
    metrics_single(b, "pfpcache_cache_evictions_total", "counter", "Evictions started because the cache was too big.",
                   xs->evictions);
    metrics_single(b, "pfpcache_cache_evicted_files_total", "counter", "Picture files evicted.", xs->evicted_files);
    metrics_single(b, "pfpcache_cache_evicted_bytes_total", "counter", "Bytes of picture files evicted.",
                   xs->evicted_bytes);
    metrics_single(b, "pfpcache_cache_purges_total", "counter", "Purges done.", xs->purges);
    metrics_single(b, "pfpcache_cache_damaged_files_total", "counter",
                   "Picture files found damaged (size or SHA-256 not their record's), dropped and fetched again.",
                   ps->damaged_files + xs->damaged_files);
    metrics_single(b, "pfpcache_cache_disk_full_total", "counter",
                   "Picture files that could not be written because the disk of media_cache_path was full.",
                   xs->disk_full);
    metrics_single(b, "pfpcache_cache_disk_full_evictions_total", "counter",
                   "Evictions started because the disk of media_cache_path was full.", xs->disk_full_evictions);
}

/* A family with one sample per upstream relay: the uint64_t field at `field` of its figures. */
static void relay_family(struct stats *s, struct buf *b, struct buf *l, const char *name, const char *type,
                         const char *help, size_t field)
{
    struct upstream_relay_stats rs;

    metrics_family(b, name, type, help);
    for (size_t i = 0; i < upstream_count(s->upstream); i++) {
        upstream_relay_stats(s->upstream, i, &rs);
        metrics_u64(b, name, one_label(l, "relay", rs.url), *(const uint64_t *)((const char *)&rs + field));
    }
}

static void upstream_metrics(struct stats *s, struct buf *b, struct buf *l)
{
    struct lookup_stats lss, *ls = &lss;
    size_t n = upstream_count(s->upstream);
    struct upstream_relay_stats rs;

    lookup_stats(s->lookup, &lss);

    metrics_family(b, "pfpcache_upstream_lookups_total", "counter",
                   "Lookups of a (pubkey, kind) on the upstream relays, by result.");
    metrics_u64(b, "pfpcache_upstream_lookups_total", one_label(l, "result", "found"), ls->found);
    metrics_u64(b, "pfpcache_upstream_lookups_total", one_label(l, "result", "not_found"), ls->not_found);
    metrics_single(b, "pfpcache_upstream_lookup_requests_total", "counter",
                   "Lookups asked for, including those that joined one under way or were answered from memory.",
                   ls->requested);
    metrics_family(b, "pfpcache_lookups_answered_total", "counter",
                   "Lookups answered with an event, by where it was: stored here, an upstream relay, a write relay "
                   "of the pubkey (its kind 10002), or a relay hinted for it.");
    for (int t = 0; t < LOOKUP_TIERS; t++)
        metrics_u64(b, "pfpcache_lookups_answered_total", one_label(l, "tier", TIER_NAMES[t]), ls->by_tier[t]);
    discovery_metrics(s, b, l, ls);
    metrics_single(b, "pfpcache_upstream_queries_total", "counter", "Batches of lookups sent to the upstream relays.",
                   ls->queries);
    metrics_single(b, "pfpcache_upstream_lookup_timeouts_total", "counter",
                   "Lookups answered at upstream_timeout_ms rather than by every relay.", ls->timed_out);
    metrics_family(b, "pfpcache_upstream_lookup_duration_seconds", "histogram",
                   "Time from the first ask of a lookup to its answer.");
    metrics_histogram(b, "pfpcache_upstream_lookup_duration_seconds", "", ls->latency);

    metrics_family(b, "pfpcache_upstream_relay_up", "gauge", "1 when the connection to the upstream relay is open.");
    for (size_t i = 0; i < n; i++) {
        upstream_relay_stats(s->upstream, i, &rs);
        metrics_u64(b, "pfpcache_upstream_relay_up", one_label(l, "relay", rs.url), rs.state == UPSTREAM_CONNECTED);
    }
    metrics_family(b, "pfpcache_upstream_relay_state", "gauge", "1 for the state each upstream connection is in.");
    for (size_t i = 0; i < n; i++) {
        upstream_relay_stats(s->upstream, i, &rs);
        for (int st = UPSTREAM_DISCONNECTED; st <= UPSTREAM_CONNECTED; st++) {
            l->len = 0;
            metrics_label(l, "relay", rs.url);
            metrics_label(l, "state", state_names[st]);
            metrics_u64(b, "pfpcache_upstream_relay_state", l->data, rs.state == (enum upstream_state)st);
        }
    }
    relay_family(s, b, l, "pfpcache_upstream_relay_connects_total", "counter",
                 "Connections opened to each upstream relay.", offsetof(struct upstream_relay_stats, connects));
    relay_family(s, b, l, "pfpcache_upstream_relay_invalid_events_total", "counter",
                 "Events from each upstream relay dropped as forged, malformed or not asked for.",
                 offsetof(struct upstream_relay_stats, invalid));
    relay_family(s, b, l, "pfpcache_upstream_relay_queue_bytes", "gauge",
                 "Bytes waiting for each upstream relay to read them.",
                 offsetof(struct upstream_relay_stats, queue_bytes));
    relay_family(s, b, l, "pfpcache_upstream_relay_queue_peak_bytes", "gauge",
                 "The most bytes that waited for each upstream relay at once, since start-up.",
                 offsetof(struct upstream_relay_stats, queue_peak_bytes));
}

static void relay_metrics(struct stats *s, struct buf *b, struct buf *l)
{
    uint64_t jobs[JOB_FAILED + 1];
    struct jobs_stats js;
    struct relay_stats rs;
    char kind[16];

    relay_stats(s->relay, &rs);
    jobs_count(s->jobs, jobs);
    jobs_stats(s->jobs, &js);
    metrics_family(b, "pfpcache_jobs", "gauge", "Jobs kept, by state.");
    for (int st = JOB_QUEUED; st <= JOB_FAILED; st++)
        metrics_u64(b, "pfpcache_jobs", one_label(l, "state", job_state_names[st]), jobs[st]);
    metrics_single(b, "pfpcache_job_pubkeys_done_total", "counter", "Pubkeys of jobs done since start-up.",
                   js.items_done);
    metrics_single(b, "pfpcache_jobs_resumed_total", "counter", "Unfinished jobs taken up again at start-up.",
                   js.resumed);

    metrics_single(b, "pfpcache_relay_connections", "gauge", "Open Nostr client connections.", rs.connections);
    metrics_single(b, "pfpcache_relay_connections_total", "counter", "Nostr client connections accepted.",
                   rs.connections_total);
    metrics_single(b, "pfpcache_relay_subscriptions_total", "counter", "REQs accepted.", rs.subscriptions_total);
    metrics_single(b, "pfpcache_relay_slow_clients_closed_total", "counter",
                   "Clients disconnected for not reading while their backlog grew past its limit.",
                   rs.slow_clients_closed);
    metrics_single(b, "pfpcache_relay_queue_bytes", "gauge",
                   "Bytes held for clients that have not read them yet: queued messages, writes in progress.",
                   rs.queue_bytes);
    metrics_single(b, "pfpcache_relay_queue_peak_bytes", "gauge",
                   "The most bytes held for clients at once, since start-up.", rs.queue_peak_bytes);
    metrics_single(b, "pfpcache_relay_pings_coalesced_total", "counter",
                   "Client pings answered by the pong of a later ping, the client not reading meanwhile.",
                   rs.pings_coalesced);
    metrics_single(b, "pfpcache_memory_trims_total", "counter",
                   "Times freed heap was handed back to the kernel after what was queued for clients fell.",
                   rs.memory_trims);
    metrics_family(b, "pfpcache_events_stored_total", "counter", "Events stored since start-up, by kind.");
    for (size_t i = 0; i < s->nstored; i++) {
        snprintf(kind, sizeof(kind), "%u", (unsigned)s->stored[i].kind);
        metrics_u64(b, "pfpcache_events_stored_total", one_label(l, "kind", kind), s->stored[i].count);
    }
    if (s->stored_other > 0)
        metrics_u64(b, "pfpcache_events_stored_total", one_label(l, "kind", "other"), s->stored_other);
    metrics_single(b, "pfpcache_events_rejected_total", "counter", "Events from clients refused.", rs.events_rejected);

    metrics_family(b, "pfpcache_uptime_seconds", "gauge", "Seconds since start-up.");
    metrics_f64(b, "pfpcache_uptime_seconds", "", (double)(clock_mono_ns() - s->started_ns) / 1e9);
    metrics_family(b, "pfpcache_build_info", "gauge", "The running version.");
    metrics_u64(b, "pfpcache_build_info", one_label(l, "version", PFP_VERSION), 1);
}

static void on_metrics(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    struct stats *s = data;
    struct buf b = BUF_INIT, l = BUF_INIT;

    (void)param;
    buf_reserve(&l, 256);
    http_server_metrics(s->http, &b);
    picture_metrics(s, &b, &l);
    imgproxy_metrics(s, &b, &l);
    negentropy_metrics(s, &b);
    sync_metrics(s, &b);
    cluster_metrics(s, &b, &l);
    if (s->cdn != NULL) {
        struct cdn_stats cs;
        cdn_stats(s->cdn, &cs);
        metrics_family(&b, "pfpcache_cdn_purges_total", "counter",
                       "Purge requests to the CDN in front, by whether it answered 2xx.");
        metrics_u64(&b, "pfpcache_cdn_purges_total", one_label(&l, "outcome", "sent"), cs.sent);
        metrics_u64(&b, "pfpcache_cdn_purges_total", one_label(&l, "outcome", "failed"), cs.failed);
    }
    profile_metrics(s, &b, &l);
    upstream_metrics(s, &b, &l);
    relay_metrics(s, &b, &l);
    http_reply_text(req, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    buf_free(&b);
    buf_free(&l);
}

int stats_route(struct stats *s, struct http_server *http)
{
    int r;

    if ((r = http_route(http, HTTP_GET, "/stats", on_stats, s)) != 0)
        return r;
    return http_route(http, HTTP_GET, "/metrics", on_metrics, s);
}
