/* admin.c -- batch pre-caching, follows, purges and the jobs they start, behind the admin authentication. */
#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cdn.h"
#include "hex.h"
#include "keymap.h"
#include "names.h"
#include "nip19.h"
#include "pictures.h"
#include "sync.h"

#define JOBS_LIST_DEFAULT 50
#define JOBS_LIST_MAX     1000
/* Invalid keys named in the error message; the "invalid" array lists them all. */
#define INVALID_NAMED 20
/* Names that could not be resolved named in the error message; the "unresolved" array lists them all. */
#define UNRESOLVED_NAMED 5

/* A positive integer query parameter, at most `max`, or `dflt` when absent. Returns 0, or -EINVAL when it is not one.
 */
static int query_count(h2o_req_t *req, const char *name, size_t dflt, size_t max, size_t *out)
{
    h2o_iovec_t v;

    *out = dflt;
    if (!http_query_param(req, name, &v))
        return 0;
    return http_parse_count(v, max, out);
}

static void hex_of(const uint8_t key[32], char out[65])
{
    hex_encode(key, 32, out);
    out[64] = '\0';
}

static void reply_job_error(h2o_req_t *req, int status)
{
    if (status == -EFBIG)
        http_reply_error(req, 503, "cannot store the job: the database is full");
    else if (status == -ENOSPC)
        http_reply_error(req, 503, "cannot store the job: the disk is full");
    else
        http_reply_error(req, 503, "cannot store the job now; try again");
}

/* --- POST /batch-cache ------------------------------------------------------------------------------------------ */

/* A name of a batch being resolved, and what came of it. */
struct batch_wait {
    struct names_wait w;
    struct batch_req *br;
    size_t i; /* in br->b.names */
    bool failed;
    char why[200];
};

struct batch_req {
    struct admin *a;
    struct http_hold *hold;
    struct admin_batch b;
    size_t count;
    size_t waiting;           /* names not answered yet */
    struct batch_wait *waits; /* one per name */
};

static void batch_req_free(struct batch_req *br)
{
    http_unhold(br->hold);
    admin_batch_free(&br->b);
    free(br->waits);
    free(br);
}

static void on_batch_created(void *ctx, int status, uint64_t id)
{
    struct batch_req *br = ctx;
    h2o_req_t *req = http_held(br->hold);

    if (req != NULL && status != 0) {
        reply_job_error(req, status);
    } else if (req != NULL) {
        char msg[96], hex[17];
        snprintf(msg, sizeof(msg), "Started caching %zu profile pictures", br->count);
        snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)id);
        http_reply_json(req, 202,
                        json_pack("{s:s, s:I, s:s}", "message", msg, "count", (json_int_t)br->count, "job_id", hex));
    }
    batch_req_free(br);
}

/* The keys are all known: the job is created, and answers the request. Takes `br`. */
static void batch_create(struct batch_req *br)
{
    br->count = br->b.n;
    jobs_create(br->a->_o.jobs, JOB_BATCH, (const uint8_t(*)[32])br->b.keys, br->b.n, NULL, on_batch_created, br);
}

/* JSON is all the endpoint reads; a form or text body is a client mistake worth naming. */
static bool json_content_type(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    h2o_iovec_t v;
    size_t n = 0;

    if (i == -1)
        return true;
    v = req->headers.entries[i].value;
    while (n < v.len && v.base[n] != ';' && v.base[n] != ' ')
        n++;
    return n == sizeof("application/json") - 1 && strncasecmp(v.base, "application/json", n) == 0;
}

/* An admin request with a JSON body: false once it has been answered (refused, or not JSON). */
static bool admit_json(struct admin *a, h2o_req_t *req)
{
    if (!auth_admit(a->_o.auth, req))
        return false;
    if (!json_content_type(req)) {
        http_reply_error(req, 415, "the body must be JSON (Content-Type: application/json)");
        return false;
    }
    return true;
}

/* The 400 of entries that are not public keys: every index in `invalid`, the first INVALID_NAMED in the message. */
static int refuse_invalid_keys(struct admin_batch *b, const size_t *bad, size_t nbad, bool names)
{
    size_t off = (size_t)snprintf(b->error, sizeof(b->error),
                                  "%zu entr%s of \"pubkeys\" %s not a public key (hex, npub or "
                                  "nprofile)%s: index%s",
                                  nbad, nbad == 1 ? "y" : "ies", nbad == 1 ? "is" : "are",
                                  names ? " or a NIP-05 name" : "", nbad == 1 ? "" : "es");

    b->invalid = json_array();
    for (size_t i = 0; i < nbad; i++) {
        json_array_append_new(b->invalid, json_integer((json_int_t)bad[i]));
        if (i < INVALID_NAMED && off < sizeof(b->error))
            off += (size_t)snprintf(b->error + off, sizeof(b->error) - off, "%s %zu", i == 0 ? "" : ",", bad[i]);
    }
    if (nbad > INVALID_NAMED && off < sizeof(b->error))
        snprintf(b->error + off, sizeof(b->error) - off, " and %zu more", nbad - INVALID_NAMED);
    return b->status = 400;
}

/*
 * Entry `i`, a NIP-05 name: given a slot in b->keys unless the batch has it already (in any case). Returns 0, or
 * 413 past ADMIN_BATCH_NAMES_MAX distinct names. A linear search: there are at most that many.
 */
static int add_name(struct admin_batch *b, const struct nip05_id *id, json_t *v, size_t i)
{
    struct admin_batch_name *nm;

    for (size_t j = 0; j < b->nnames; j++) {
        if (strcmp(b->names[j].id.name, id->name) == 0 && strcmp(b->names[j].id.domain, id->domain) == 0)
            return 0;
    }
    if (b->nnames == ADMIN_BATCH_NAMES_MAX) {
        snprintf(b->error, sizeof(b->error), "at most %d NIP-05 names per request", ADMIN_BATCH_NAMES_MAX);
        return b->status = 413;
    }
    nm = &b->names[b->nnames++];
    nm->id = *id;
    nm->index = i;
    nm->slot = b->n;
    /* A valid name is shorter than `given` and holds only letters, digits and "-_.:@". */
    snprintf(nm->given, sizeof(nm->given), "%.*s", (int)json_string_length(v), json_string_value(v));
    memset(b->keys[b->n++], 0, 32);
    return 0;
}

/* Decodes `pubkeys` (an array of at most ADMIN_BATCH_MAX) into b->keys and b->names, without duplicates. */
static int decode_keys(struct admin_batch *b, json_t *pubkeys, bool names)
{
    struct keymap *seen = keymap_new(32);
    size_t nbad = 0, *bad = calloc(json_array_size(pubkeys) + 1, sizeof(*bad));
    size_t i;
    json_t *v;

    if (bad == NULL || (b->keys = malloc(json_array_size(pubkeys) * 32 + 1)) == NULL ||
        (names && (b->names = calloc(ADMIN_BATCH_NAMES_MAX, sizeof(*b->names))) == NULL))
        abort();
    json_array_foreach(pubkeys, i, v)
    {
        char why[NIP19_ERR_LEN];
        struct nip05_id id;
        if (!json_is_string(v)) {
            snprintf(b->error, sizeof(b->error), "\"pubkeys\"[%zu] is not a string", i);
            b->status = 400;
            break;
        }
        if (nip19_decode_pubkey(json_string_value(v), json_string_length(v), b->keys[b->n], why, sizeof(why)) != 0) {
            if (!names || nip05_parse_id(json_string_value(v), json_string_length(v), &id) != 0)
                bad[nbad++] = i;
            else if (add_name(b, &id, v, i) != 0)
                break;
            continue;
        }
        if (keymap_get(seen, b->keys[b->n]) == NULL)
            keymap_put(seen, b->keys[b->n++], (void *)1);
    }
    keymap_free(seen, NULL);
    if (b->status == 0 && nbad > 0)
        refuse_invalid_keys(b, bad, nbad, names);
    free(bad);
    return b->status;
}

int admin_parse_batch(const char *body, size_t len, bool names, struct admin_batch *b)
{
    json_error_t jerr;
    json_t *root, *pubkeys;

    *b = (struct admin_batch){0};
    if ((root = json_loadb(body, len, 0, &jerr)) == NULL) {
        snprintf(b->error, sizeof(b->error), "malformed JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                 jerr.column);
        return b->status = 400;
    }
    pubkeys = json_object_get(root, "pubkeys");
    b->status = 400;
    if (!json_is_object(root) || pubkeys == NULL) {
        snprintf(b->error, sizeof(b->error),
                 "the body must be an object with a \"pubkeys\" array: {\"pubkeys\": [...]}");
    } else if (!json_is_array(pubkeys)) {
        snprintf(b->error, sizeof(b->error), "\"pubkeys\" must be an array of public keys");
    } else if (json_array_size(pubkeys) == 0) {
        snprintf(b->error, sizeof(b->error), "\"pubkeys\" is empty");
    } else if (json_array_size(pubkeys) > ADMIN_BATCH_MAX) {
        snprintf(b->error, sizeof(b->error), "at most %d pubkeys per request; got %zu", ADMIN_BATCH_MAX,
                 json_array_size(pubkeys));
        b->status = 413;
    } else {
        b->status = 0;
        decode_keys(b, pubkeys, names);
    }
    json_decref(root);
    return b->status;
}

void admin_batch_settle(struct admin_batch *b)
{
    struct keymap *seen = keymap_new(32);
    size_t n = 0;

    for (size_t i = 0; i < b->n; i++) {
        if (keymap_get(seen, b->keys[i]) != NULL)
            continue;
        if (n != i)
            memcpy(b->keys[n], b->keys[i], 32);
        keymap_put(seen, b->keys[n++], (void *)1);
    }
    keymap_free(seen, NULL);
    b->n = n;
}

void admin_batch_free(struct admin_batch *b)
{
    free(b->keys);
    free(b->names);
    if (b->invalid != NULL)
        json_decref(b->invalid);
    *b = (struct admin_batch){0};
}

/*
 * The 400 of names that could not be resolved: each, with its index and why, in `unresolved`, and the first
 * UNRESOLVED_NAMED in the message. The names are echoed: a valid name is no secret key.
 */
static void refuse_unresolved(struct batch_req *br, h2o_req_t *req, size_t nfailed)
{
    char msg[2048];
    size_t off = (size_t)snprintf(msg, sizeof(msg), "%zu NIP-05 name%s of \"pubkeys\" could not be resolved:", nfailed,
                                  nfailed == 1 ? "" : "s");
    json_t *unresolved = json_array();
    size_t named = 0;

    for (size_t i = 0; i < br->b.nnames; i++) {
        const struct batch_wait *bw = &br->waits[i];
        const struct admin_batch_name *nm = &br->b.names[i];
        if (!bw->failed)
            continue;
        json_array_append_new(unresolved, json_pack("{s:I, s:s, s:s}", "index", (json_int_t)nm->index, "name",
                                                    nm->given, "error", bw->why));
        if (named++ < UNRESOLVED_NAMED && off < sizeof(msg))
            off += (size_t)snprintf(msg + off, sizeof(msg) - off, "%s %s (index %zu): %s", named == 1 ? "" : ";",
                                    nm->given, nm->index, bw->why);
    }
    if (nfailed > UNRESOLVED_NAMED && off < sizeof(msg))
        snprintf(msg + off, sizeof(msg) - off, "; and %zu more", nfailed - UNRESOLVED_NAMED);
    http_reply_json(req, 400, json_pack("{s:s, s:o}", "error", msg, "unresolved", unresolved));
}

/* Every name has been answered: the job, or the refusal. Takes `br`. */
static void batch_names_done(struct batch_req *br)
{
    h2o_req_t *req = http_held(br->hold);
    size_t nfailed = 0;

    for (size_t i = 0; i < br->b.nnames; i++)
        nfailed += br->waits[i].failed;
    if (req == NULL) {
    } else if (names_closing(br->a->_o.names)) {
        http_reply_error(req, 503, "the relay is shutting down");
    } else if (nfailed > 0) {
        refuse_unresolved(br, req, nfailed);
    } else {
        admin_batch_settle(&br->b);
        batch_create(br);
        return;
    }
    batch_req_free(br);
}

static void batch_name_heard(struct batch_wait *bw, const struct names_result *r)
{
    struct batch_req *br = bw->br;

    if (r->error == NAMES_OK) {
        memcpy(br->b.keys[br->b.names[bw->i].slot], r->pubkey, 32);
    } else {
        bw->failed = true;
        snprintf(bw->why, sizeof(bw->why), "%s", r->why);
    }
}

static void on_batch_name(struct names_wait *w, const struct names_result *r)
{
    struct batch_wait *bw = H2O_STRUCT_FROM_MEMBER(struct batch_wait, w, w);
    struct batch_req *br = bw->br;

    batch_name_heard(bw, r);
    if (--br->waiting == 0)
        batch_names_done(br);
}

/*
 * Resolves every name of the batch at once, each remembered one at once and the others through names_resolve(),
 * which joins requests under way for the same name. Takes `br`.
 */
static void batch_resolve(struct batch_req *br)
{
    struct names *names = br->a->_o.names;

    if ((br->waits = calloc(br->b.nnames, sizeof(*br->waits))) == NULL)
        abort();
    for (size_t i = 0; i < br->b.nnames; i++) {
        struct batch_wait *bw = &br->waits[i];
        struct names_result r;
        bw->br = br;
        bw->i = i;
        if (names_cached(names, &br->b.names[i].id, &r)) {
            batch_name_heard(bw, &r);
            continue;
        }
        bw->w.cb = on_batch_name;
        br->waiting++;
        /* Its callback never runs from inside the call, so `waiting` counts every wait before any ends. */
        names_resolve(names, &br->b.names[i].id, &bw->w);
    }
    if (br->waiting == 0)
        batch_names_done(br);
}

static void on_batch_cache(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    struct admin *a = data;
    struct admin_batch b;
    struct batch_req *br;

    (void)param;
    if (!admit_json(a, req))
        return;
    if (admin_parse_batch(req->entity.base, req->entity.len, a->_o.names != NULL, &b) != 0) {
        if (b.invalid != NULL) {
            http_reply_json(req, b.status, json_pack("{s:s, s:O}", "error", b.error, "invalid", b.invalid));
        } else {
            http_reply_error(req, b.status, "%s", b.error);
        }
        admin_batch_free(&b);
        return;
    }
    if (b.nnames > 0 && names_closing(a->_o.names)) {
        http_reply_error(req, 503, "the relay is shutting down");
        admin_batch_free(&b);
        return;
    }
    if ((br = calloc(1, sizeof(*br))) == NULL)
        abort();
    br->a = a;
    br->hold = http_hold(req);
    br->b = b;
    if (b.nnames > 0)
        batch_resolve(br);
    else
        batch_create(br);
}

/* --- POST /sync ------------------------------------------------------------------------------------------------ */

struct sync_req {
    struct http_hold *hold;
    char *relay;
};

static void on_sync_created(void *ctx, int status, uint64_t id)
{
    struct sync_req *sr = ctx;
    h2o_req_t *req = http_held(sr->hold);
    char msg[160], hex[17];

    if (req != NULL && status != 0) {
        reply_job_error(req, status);
    } else if (req != NULL) {
        snprintf(msg, sizeof(msg), "Started a sync with %.120s", sr->relay);
        snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)id);
        http_reply_json(req, 202, json_pack("{s:s, s:s}", "message", msg, "job_id", hex));
    }
    http_unhold(sr->hold);
    free(sr->relay);
    free(sr);
}

/* {"relay": "wss://...", "filter": {...}}: the filter is the profiles' kinds when it is left out. */
static void on_sync(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    struct admin *a = data;
    json_error_t jerr;
    json_t *root, *relay, *filter, *deflt = NULL;
    const char *key;
    json_t *value;
    char err[300], *text;
    struct sync_req *sr;

    (void)param;
    if (!admit_json(a, req))
        return;
    if ((root = json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
        http_reply_error(req, 400, "the body is not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                         jerr.column);
        return;
    }
    if (!json_is_object(root)) {
        http_reply_error(req, 400, "the body must be a JSON object: {\"relay\": \"wss://...\", \"filter\": {...}}");
        json_decref(root);
        return;
    }
    json_object_foreach(root, key, value)
    {
        if (strcmp(key, "relay") != 0 && strcmp(key, "filter") != 0) {
            http_reply_error(req, 400, "unknown key \"%.64s\": the body takes \"relay\" and \"filter\"", key);
            json_decref(root);
            return;
        }
    }
    relay = json_object_get(root, "relay");
    if ((filter = json_object_get(root, "filter")) == NULL)
        filter = deflt = json_loads(SYNC_DEFAULT_FILTER, 0, NULL);
    if (!json_is_string(relay)) {
        http_reply_error(req, 400, "\"relay\" is required: a ws:// or wss:// URL");
    } else if (sync_check(a->_o.sync, json_string_value(relay), filter, err, sizeof(err)) != 0) {
        http_reply_error(req, 400, "%s", err);
    } else {
        if ((sr = calloc(1, sizeof(*sr))) == NULL || (sr->relay = strdup(json_string_value(relay))) == NULL ||
            (text = json_dumps(filter, JSON_COMPACT)) == NULL)
            abort();
        sr->hold = http_hold(req);
        jobs_create_sync(a->_o.jobs, sr->relay, text, on_sync_created, sr);
        free(text);
    }
    json_decref(deflt);
    json_decref(root);
}

/* --- GET /cache-follows/{id} ------------------------------------------------------------------------------------ */

size_t admin_follows_of(const char *json, size_t len, size_t limit, uint8_t (*out)[32],
                        void (*hint)(void *ctx, const uint8_t pubkey[32], const char *url), void *ctx)
{
    json_t *ev = json_loadb(json, len, 0, NULL), *tags = json_object_get(ev, "tags"), *tag;
    struct keymap *seen = keymap_new(32);
    size_t n = 0, i;

    json_array_foreach(tags, i, tag)
    {
        json_t *name = json_array_get(tag, 0), *value = json_array_get(tag, 1);
        if (n == limit)
            break;
        if (!json_is_string(name) || strcmp(json_string_value(name), "p") != 0 || !json_is_string(value) ||
            hex_decode(json_string_value(value), json_string_length(value), out[n], 32) != 0)
            continue;
        /* ["p", pubkey, relay]: where the follow's events may be found. */
        if (hint != NULL && json_is_string(json_array_get(tag, 2)))
            hint(ctx, out[n], json_string_value(json_array_get(tag, 2)));
        if (keymap_get(seen, out[n]) == NULL)
            keymap_put(seen, out[n++], (void *)1);
    }
    keymap_free(seen, NULL);
    json_decref(ev);
    return n;
}

struct follows_req {
    struct admin *a;
    struct http_hold *hold;
    uint8_t pubkey[32];
    size_t limit, count;
    struct lookup_waiter lw;
};

static void on_follows_created(void *ctx, int status, uint64_t id)
{
    struct follows_req *fr = ctx;
    h2o_req_t *req = http_held(fr->hold);

    if (req != NULL && status != 0) {
        reply_job_error(req, status);
    } else if (req != NULL) {
        char msg[96], hex[17], pk[65];
        snprintf(msg, sizeof(msg), "Started caching profile pictures for %zu follows", fr->count);
        snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)id);
        hex_of(fr->pubkey, pk);
        http_reply_json(req, 202,
                        json_pack("{s:s, s:I, s:s, s:s}", "message", msg, "count", (json_int_t)fr->count, "pubkey", pk,
                                  "job_id", hex));
    }
    http_unhold(fr->hold);
    free(fr);
}

/* The contact list is here: its follows become a job. */
static void follows_found(struct follows_req *fr, const struct event_view *ev)
{
    uint8_t(*keys)[32] = malloc(fr->limit * 32);

    if (keys == NULL)
        abort();
    fr->count = admin_follows_of(ev->json, ev->json_len, fr->limit, keys, lookup_hint_to, fr->a->_o.lookup);
    jobs_create(fr->a->_o.jobs, JOB_FOLLOWS, (const uint8_t(*)[32])keys, fr->count, fr->pubkey, on_follows_created, fr);
    free(keys);
}

static void on_contact_list(struct lookup_waiter *w, const struct event_view *ev)
{
    struct follows_req *fr = H2O_STRUCT_FROM_MEMBER(struct follows_req, lw, w);
    h2o_req_t *req = http_held(fr->hold);

    if (ev != NULL && req != NULL) {
        follows_found(fr, ev);
        return;
    }
    if (req != NULL && lookup_closing(fr->a->_o.lookup))
        http_reply_error(req, 503, "the relay is shutting down");
    else if (req != NULL)
        http_reply_error(req, 404, "no contact list (kind 3) found for this pubkey, here or on any relay asked");
    http_unhold(fr->hold);
    free(fr);
}

/* What a GET /cache-follows goes on with once its {id} is a pubkey. */
struct follows_ask {
    struct admin *a;
    size_t limit;
};

/* The contact list of `pubkey`, here or through the lookups, becomes a job. A names_go_fn. */
static void follows_start(const void *ctx, h2o_req_t *req, const uint8_t pubkey[32])
{
    const struct follows_ask *ask = ctx;
    struct admin *a = ask->a;
    struct follows_req *fr;
    struct event_view ev;
    void *copy;

    if ((fr = calloc(1, sizeof(*fr))) == NULL)
        abort();
    fr->a = a;
    fr->hold = http_hold(req);
    memcpy(fr->pubkey, pubkey, 32);
    fr->limit = ask->limit;
    if (store_get_latest_copy(a->_o.store, pubkey, 3, &ev, &copy) == 0) {
        lookup_count_local(a->_o.lookup);
        follows_found(fr, &ev);
        free(copy);
        return;
    }
    fr->lw.cb = on_contact_list;
    lookup_get(a->_o.lookup, pubkey, 3, &fr->lw);
}

static void on_cache_follows(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    struct admin *a = data;
    struct follows_ask ask = {a, 0};
    struct nip05_id name;
    char why[NIP19_ERR_LEN];
    uint8_t pubkey[32];
    bool is_key;

    if (!auth_admit(a->_o.auth, req))
        return;
    is_key = nip19_decode_pubkey(param.base, param.len, pubkey, why, sizeof(why)) == 0;
    if (!is_key && (a->_o.names == NULL || nip05_parse_id(param.base, param.len, &name) != 0)) {
        /* Not echoed: what was pasted might be a secret key. */
        http_reply_error(req, 400, "not a public key or a NIP-05 name: %s", why);
        return;
    }
    if (query_count(req, "limit", ADMIN_FOLLOWS_DEFAULT, ADMIN_FOLLOWS_MAX, &ask.limit) != 0) {
        http_reply_error(req, 400, "limit must be an integer from 1 to %d", ADMIN_FOLLOWS_MAX);
        return;
    }
    if (is_key)
        follows_start(&ask, req, pubkey);
    else
        names_serve(a->_o.names, req, &name, follows_start, &ask, sizeof(ask));
}

/* --- purges ------------------------------------------------------------------------------------------------------ */

struct purge_req {
    struct http_hold *hold;
    enum pictures_scope scope;
    uint8_t pubkey[32];
    struct cdn *cdn;
};

static void on_purged(void *ctx, const struct pictures_purged *r)
{
    struct purge_req *pr = ctx;
    h2o_req_t *req = http_held(pr->hold);
    char msg[160];

    /* A CDN in front drops the pubkey's answers too (whole-cache purges are the CDN's own to make). */
    if (r->status == 0 && pr->scope == PURGE_PUBKEY && r->found)
        cdn_purge(pr->cdn, pr->pubkey);
    if (req == NULL) {
    } else if (r->status != 0) {
        http_reply_error(req, 503, "cannot purge now: %s", strerror(-r->status));
    } else if (pr->scope == PURGE_PUBKEY && !r->found) {
        http_reply_error(req, 404, "nothing is cached for this pubkey");
    } else {
        if (pr->scope == PURGE_PUBKEY) {
            char pk[65];
            hex_of(pr->pubkey, pk);
            snprintf(msg, sizeof(msg), "Profile picture for %s purged successfully", pk);
        } else {
            snprintf(msg, sizeof(msg), "%s",
                     pr->scope == PURGE_ALL ? "All cached media purged successfully"
                                            : "Profile picture cache purged successfully");
        }
        http_reply_json(req, 200,
                        json_pack("{s:s, s:s, s:I, s:I, s:I}", "status", "success", "message", msg, "pictures",
                                  (json_int_t)r->pictures, "files", (json_int_t)r->files, "bytes",
                                  (json_int_t)r->bytes));
    }
    http_unhold(pr->hold);
    free(pr);
}

static void purge(struct admin *a, h2o_req_t *req, enum pictures_scope scope, const uint8_t *pubkey)
{
    struct purge_req *pr = calloc(1, sizeof(*pr));

    if (pr == NULL)
        abort();
    pr->hold = http_hold(req);
    pr->scope = scope;
    pr->cdn = a->_o.cdn;
    if (pubkey != NULL)
        memcpy(pr->pubkey, pubkey, 32);
    pictures_purge(a->_o.pictures, scope, pubkey, on_purged, pr);
}

static void on_purge_all(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    if (auth_admit(((struct admin *)data)->_o.auth, req))
        purge(data, req, PURGE_ALL, NULL);
}

static void on_purge_pictures(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    (void)param;
    if (auth_admit(((struct admin *)data)->_o.auth, req))
        purge(data, req, PURGE_PICTURES, NULL);
}

static void on_purge_one(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    struct admin *a = data;
    uint8_t pubkey[32];
    char why[NIP19_ERR_LEN];

    if (!auth_admit(a->_o.auth, req))
        return;
    if (nip19_decode_pubkey(param.base, param.len, pubkey, why, sizeof(why)) != 0) {
        http_reply_error(req, 400, "not a public key: %s", why);
        return;
    }
    purge(a, req, PURGE_PUBKEY, pubkey);
}

/* --- GET /jobs ------------------------------------------------------------------------------------------------- */

static void on_jobs(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    struct admin *a = data;
    size_t limit;

    (void)param;
    if (query_count(req, "limit", JOBS_LIST_DEFAULT, JOBS_LIST_MAX, &limit) != 0) {
        http_reply_error(req, 400, "limit must be an integer from 1 to %d", JOBS_LIST_MAX);
        return;
    }
    http_reply_json(req, 200, json_pack("{s:o}", "jobs", jobs_list(a->_o.jobs, limit)));
}

static void on_job(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    struct admin *a = data;
    uint64_t id;
    json_t *job;
    int r;

    if (jobs_parse_id(param.base, param.len, &id) != 0) {
        http_reply_error(req, 400, "not a job id: job ids are 16 hex digits");
        return;
    }
    if ((r = jobs_get(a->_o.jobs, id, &job)) == -ENOENT) {
        http_reply_error(req, 404, "no such job");
        return;
    }
    if (r != 0) {
        http_reply_error(req, 503, "cannot read the job now: %s", strerror(-r));
        return;
    }
    http_reply_json(req, 200, job);
}

void admin_init(struct admin *a, const struct admin_options *o)
{
    *a = (struct admin){._o = *o};
}

int admin_route(struct admin *a, struct http_server *http)
{
    int r;

    if ((r = http_route(http, HTTP_POST, "/batch-cache", on_batch_cache, a)) != 0 ||
        (r = http_route(http, HTTP_GET, "/cache-follows/*", on_cache_follows, a)) != 0 ||
        (r = http_route(http, HTTP_POST | HTTP_DELETE, "/purge-cache/all", on_purge_all, a)) != 0 ||
        (r = http_route(http, HTTP_POST | HTTP_DELETE, "/purge-cache/profile-pics", on_purge_pictures, a)) != 0 ||
        (r = http_route(http, HTTP_POST | HTTP_DELETE, "/purge-profile-pic/*", on_purge_one, a)) != 0 ||
        (r = http_route(http, HTTP_GET, "/jobs", on_jobs, a)) != 0 ||
        (r = http_route(http, HTTP_GET, "/jobs/*", on_job, a)) != 0 ||
        (r = http_route(http, HTTP_POST, "/sync", on_sync, a)) != 0)
        return r;
    return 0;
}
