/* names.c -- NIP-05 names resolved to pubkeys, once per name however many wait, and remembered. */
#include "names.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/memory.h>

#include "blob.h"
#include "fetch.h"
#include "http.h"
#include "keymap.h"
#include "log.h"

/* A failure is remembered 5 minutes, then twice as long each time again, up to a day, as pictures' are. */
#define RETRY_BASE_MS 300000ull
#define RETRY_MAX_MS  86400000ull

struct names_entry {
    uint8_t key[32]; /* SHA-256 of "name@domain" */
    struct nip05_id id;
    bool known; /* a result is remembered */
    enum names_error error;
    char why[200];
    struct nip05_result res;
    uint64_t until_ms; /* uv_now: fresh until (a pubkey), or tried again after (a failure) */
    unsigned failures;
    struct fetch *fetch;  /* under way */
    h2o_linklist_t waits; /* names_wait._link */
    h2o_linklist_t order; /* names.order: most recently asked first */
    struct names *n;
};

struct names {
    uv_loop_t *loop;
    struct fetcher *fetcher;
    struct names_options o;
    struct keymap *entries; /* key -> entry */
    h2o_linklist_t order;
    bool closing;
    struct names_stats stats;
};

static void key_of(const struct nip05_id *id, uint8_t key[32])
{
    char s[sizeof(id->name) + sizeof(id->domain) + 1];
    int len = snprintf(s, sizeof(s), "%s@%s", id->name, id->domain);

    blob_hash((const uint8_t *)s, (size_t)len, key);
}

static void result_of(const struct names_entry *e, struct names_result *out)
{
    *out = (struct names_result){.error = e->error, .why = e->why};
    if (e->error == NAMES_OK) {
        out->pubkey = e->res.pubkey;
        out->relays = (const char(*)[NIP65_MAX_URL])e->res.relays;
        out->nrelays = e->res.nrelays;
    }
}

static void touch(struct names *n, struct names_entry *e)
{
    h2o_linklist_unlink(&e->order);
    h2o_linklist_insert(n->order.next, &e->order);
}

/* Forgets the least recently asked names past max_names; none that is being resolved. */
static void trim(struct names *n)
{
    h2o_linklist_t *l = n->order.prev;

    while (keymap_count(n->entries) > n->o.max_names && l != &n->order) {
        struct names_entry *e = H2O_STRUCT_FROM_MEMBER(struct names_entry, order, l);
        l = l->prev;
        if (e->fetch != NULL || !h2o_linklist_is_empty(&e->waits))
            continue;
        h2o_linklist_unlink(&e->order);
        keymap_del(n->entries, e->key);
        free(e);
    }
}

/* Every wait hears what the entry now says. */
static void tell(struct names_entry *e)
{
    struct names_result r;

    result_of(e, &r);
    while (!h2o_linklist_is_empty(&e->waits)) {
        struct names_wait *w = H2O_STRUCT_FROM_MEMBER(struct names_wait, _link, e->waits.next);
        h2o_linklist_unlink(&w->_link);
        w->cb(w, &r);
    }
}

static void fail(struct names_entry *e, enum names_error error, const char *fmt, const char *detail)
{
    struct names *n = e->n;
    uint64_t delay = RETRY_BASE_MS << (e->failures < 9 ? e->failures : 9);

    e->known = true;
    e->error = error;
    snprintf(e->why, sizeof(e->why), fmt, detail);
    e->failures++;
    e->until_ms = uv_now(n->loop) + (delay < RETRY_MAX_MS ? delay : RETRY_MAX_MS);
    n->stats.failed++;
    log_info("names: %s@%s: %s", e->id.name, e->id.domain, e->why);
}

static void on_fetched(void *data, struct fetch_result *res)
{
    struct names_entry *e = data;
    struct names *n = e->n;
    char err[160];
    int r;

    e->fetch = NULL;
    switch (res->error) {
    case FETCH_OK:
        r = nip05_parse_doc((const char *)res->body, res->len, e->id.name, &e->res, err, sizeof(err));
        if (r == 0) {
            e->known = true;
            e->error = NAMES_OK;
            snprintf(e->why, sizeof(e->why), "resolved");
            e->failures = 0;
            e->until_ms = uv_now(n->loop) + n->o.cache_seconds * 1000;
            n->stats.resolved++;
            for (size_t i = 0; n->o.hint != NULL && i < e->res.nrelays; i++)
                n->o.hint(n->o.hint_ctx, e->res.pubkey, e->res.relays[i]);
        } else if (r == -ENOENT) {
            fail(e, NAMES_NO_SUCH_NAME, "no such name in the domain's nostr.json%s", "");
        } else {
            fail(e, NAMES_MALFORMED, "malformed nostr.json: %s", err);
        }
        break;
    case FETCH_TOO_BIG: fail(e, NAMES_MALFORMED, "malformed nostr.json: %s", res->detail); break;
    case FETCH_REFUSED_ADDRESS: fail(e, NAMES_REFUSED, "the domain's %s", res->detail); break;
    default: fail(e, NAMES_UNREACHABLE, "domain unreachable: %s", res->detail); break;
    }
    tell(e);
    trim(n);
}

bool names_cached(struct names *n, const struct nip05_id *id, struct names_result *out)
{
    uint8_t key[32];
    struct names_entry *e;

    key_of(id, key);
    if ((e = keymap_get(n->entries, key)) == NULL || !e->known || uv_now(n->loop) >= e->until_ms)
        return false;
    touch(n, e);
    n->stats.cached++;
    result_of(e, out);
    return true;
}

void names_resolve(struct names *n, const struct nip05_id *id, struct names_wait *w)
{
    uint8_t key[32];
    struct names_entry *e;
    char url[sizeof(id->domain) + sizeof(id->name) + 64];

    key_of(id, key);
    if ((e = keymap_get(n->entries, key)) == NULL) {
        if ((e = calloc(1, sizeof(*e))) == NULL)
            abort();
        memcpy(e->key, key, 32);
        e->id = *id;
        e->n = n;
        h2o_linklist_init_anchor(&e->waits);
        h2o_linklist_insert(n->order.next, &e->order);
        keymap_put(n->entries, key, e);
    } else {
        touch(n, e);
    }
    w->_link = (h2o_linklist_t){NULL, NULL};
    h2o_linklist_insert(&e->waits, &w->_link);
    if (e->fetch != NULL)
        return;
    /* The name and domain hold only letters, digits and "-_.:", so they go into the URL as they are. */
    snprintf(url, sizeof(url), "https://%s/.well-known/nostr.json?name=%s", id->domain, id->name);
    e->fetch = fetch_start(n->fetcher, url, on_fetched, e);
}

/* A request waiting for the name it names; `ctx` follows it. */
struct served {
    struct names_wait w;
    struct http_hold *hold;
    names_go_fn go;
    max_align_t ctx[];
};

static void reply_unresolved(h2o_req_t *req, const struct names_result *r)
{
    http_reply_error(req, 404, "the NIP-05 name could not be resolved: %s", r->why);
}

static void on_served(struct names_wait *w, const struct names_result *r)
{
    struct served *sv = H2O_STRUCT_FROM_MEMBER(struct served, w, w);
    h2o_req_t *req = http_held(sv->hold);

    if (req == NULL)
        ;
    else if (r->error != NAMES_OK)
        reply_unresolved(req, r);
    else
        sv->go(sv->ctx, req, r->pubkey);
    http_unhold(sv->hold);
    free(sv);
}

void names_serve(struct names *n, h2o_req_t *req, const struct nip05_id *id, names_go_fn go, const void *ctx,
                 size_t ctx_len)
{
    struct names_result known;
    struct served *sv;

    if (names_cached(n, id, &known)) {
        if (known.error != NAMES_OK) {
            reply_unresolved(req, &known);
        } else {
            go(ctx, req, known.pubkey);
        }
        return;
    }
    if (n->closing) {
        http_reply_error(req, 503, "the relay is shutting down");
        return;
    }
    if ((sv = calloc(1, sizeof(*sv) + ctx_len)) == NULL)
        abort();
    sv->w.cb = on_served;
    sv->hold = http_hold(req);
    sv->go = go;
    memcpy(sv->ctx, ctx, ctx_len);
    names_resolve(n, id, &sv->w);
}

int names_init(struct names **out, uv_loop_t *loop, struct fetcher *fetcher, const struct names_options *o)
{
    struct names *n = calloc(1, sizeof(*n));

    if (n == NULL)
        abort();
    n->loop = loop;
    n->fetcher = fetcher;
    n->o = *o;
    if (n->o.max_names == 0)
        n->o.max_names = 1;
    n->entries = keymap_new(32);
    h2o_linklist_init_anchor(&n->order);
    *out = n;
    return 0;
}

void names_shutdown(struct names *n)
{
    h2o_linklist_t *l;

    if (n == NULL || n->closing)
        return;
    n->closing = true;
    for (l = n->order.next; l != &n->order; l = l->next) {
        struct names_entry *e = H2O_STRUCT_FROM_MEMBER(struct names_entry, order, l);
        if (e->fetch == NULL)
            continue;
        fetch_cancel(e->fetch);
        e->fetch = NULL;
        e->known = true;
        e->error = NAMES_UNREACHABLE;
        snprintf(e->why, sizeof(e->why), "shutting down");
        e->until_ms = 0;
        tell(e);
    }
}

bool names_closing(const struct names *n)
{
    return n->closing;
}

void names_free(struct names *n)
{
    if (n == NULL)
        return;
    while (!h2o_linklist_is_empty(&n->order)) {
        struct names_entry *e = H2O_STRUCT_FROM_MEMBER(struct names_entry, order, n->order.next);
        h2o_linklist_unlink(&e->order);
        free(e);
    }
    keymap_free(n->entries, NULL);
    free(n);
}

void names_stats(const struct names *n, struct names_stats *out)
{
    *out = n->stats;
    out->remembered = keymap_count(n->entries);
}
