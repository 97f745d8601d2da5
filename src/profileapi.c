/*
 * profileapi.c -- profiles as JSON: GET /profile/{id} and POST /profiles answer
 * what a stored kind 0 says (looked up upstream when missing) and how far this
 * relay is with its picture, without waiting for any download.
 */
#include "profileapi.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "blurhash.h"
#include "hex.h"
#include "http.h"
#include "image.h"
#include "keymap.h"
#include "lookup.h"
#include "names.h"
#include "cluster.h"
#include "hashurl.h"
#include "nip19.h"
#include "pending.h"
#include "pfp.h"
#include "profile.h"
#include "store.h"
#include "workpool.h"

static const char *const state_names[] = {"none", "pending", "cached", "failed"};

/* The fields of a kind 0's content copied as published: strings, else null. */
static const char *const text_fields[] = {"name", "display_name", "about", "nip05", "website", "lud16"};

/* --- summaries of pictures -------------------------------------------------------------------------------------- */

void profileapi_dominant_color(const uint8_t *rgb, int width, int height, char out[8])
{
    uint32_t *count = calloc(4096, sizeof(*count));
    uint64_t sum[3] = {0, 0, 0};
    size_t n = (size_t)width * (size_t)height, best = 0;

    if (count == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = rgb + 3 * i;
        count[(p[0] >> 4) << 8 | (p[1] >> 4) << 4 | p[2] >> 4]++;
    }
    for (size_t b = 1; b < 4096; b++) {
        if (count[b] > count[best])
            best = b;
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = rgb + 3 * i;
        if (((size_t)(p[0] >> 4) << 8 | (size_t)(p[1] >> 4) << 4 | (size_t)(p[2] >> 4)) == best) {
            for (int c = 0; c < 3; c++)
                sum[c] += p[c];
        }
    }
    if (count[best] == 0)
        snprintf(out, 8, "#000000");
    else
        snprintf(out, 8, "#%02x%02x%02x", (unsigned)(sum[0] / count[best]), (unsigned)(sum[1] / count[best]),
                 (unsigned)(sum[2] / count[best]));
    free(count);
}

/* A stored picture's blurhash and colour, made once per file on the image threads; the slots waiting for it. */
struct summary {
    uint8_t hash[32]; /* of the picture's file */
    bool ready, ok;
    char blurhash[BLURHASH_MAX];
    char color[8];
    h2o_linklist_t waits; /* sum_wait.link */
    h2o_linklist_t order; /* profileapi._order */
};

/* --- the answer's objects -------------------------------------------------------------------------------------- */

static json_t *string_or_null(json_t *v)
{
    return json_is_string(v) ? json_incref(v) : json_null();
}

static json_t *picture_object(const struct profile_url *u, const struct pic *pic, const uint8_t event_id[32],
                              const char *relay_url, const char *base, enum profileapi_state *state)
{
    char path[HASHURL_PATH_MAX], file_url[1024];
    json_t *o;

    if (u->state == PROFILE_URL_ABSENT) {
        *state = PROFILEAPI_NONE;
        return json_pack("{s:n, s:n, s:s}", "url", "relay_url", "state", "none");
    }
    if (u->state != PROFILE_URL_OK) {
        *state = PROFILEAPI_FAILED;
        return json_pack("{s:n, s:n, s:s}", "url", "relay_url", "state", "failed");
    }
    if (pic != NULL && pic->h.state == PIC_OK && strcmp(pic->url, u->url) == 0)
        *state = PROFILEAPI_CACHED;
    else if (pic != NULL && pic->h.state == PIC_NEGATIVE && memcmp(pic->h.event_id, event_id, 32) == 0 &&
             (pic->h.reason == PENDING_DOWNLOAD_FAILED || pic->h.reason == PENDING_BAD_IMAGE))
        *state = PROFILEAPI_FAILED;
    else
        *state = PROFILEAPI_PENDING;
    o = json_pack("{s:s, s:s, s:s}", "url", u->url, "relay_url", relay_url, "state", state_names[*state]);
    if (*state == PROFILEAPI_CACHED) {
        json_object_set_new(o, "width", json_integer(pic->h.width));
        json_object_set_new(o, "height", json_integer(pic->h.height));
        /* The stored file itself, by its hash: immutable, for a CDN to keep for ever. */
        hashurl_path(pic->h.blob, (enum image_type)pic->h.type, path);
        snprintf(file_url, sizeof(file_url), "%s%s", base, path);
        json_object_set_new(o, "file_url", json_string(file_url));
    }
    return o;
}

json_t *profileapi_entry(const char *json, size_t len, const struct pic *pic, const struct pic *banner,
                         const char *base, enum profileapi_state *state, enum profileapi_state *banner_state)
{
    json_t *ev = json_loadb(json, len, 0, NULL), *content, *fields = NULL, *out, *id, *pk, *created;
    uint8_t pubkey[32], event_id[32];
    char hex[65], npub[NIP19_ERR_LEN + 64], relay_url[1024], banner_url[1024];
    struct profile *prof;

    content = json_object_get(ev, "content");
    id = json_object_get(ev, "id");
    pk = json_object_get(ev, "pubkey");
    created = json_object_get(ev, "created_at");
    if (!json_is_string(content) || !json_is_string(id) || !json_is_string(pk) || !json_is_integer(created) ||
        json_integer_value(json_object_get(ev, "kind")) != 0 || !json_is_integer(json_object_get(ev, "kind")) ||
        hex_decode(json_string_value(pk), json_string_length(pk), pubkey, 32) != 0 ||
        hex_decode(json_string_value(id), json_string_length(id), event_id, 32) != 0) {
        json_decref(ev);
        return NULL;
    }
    hex_encode(pubkey, 32, hex);
    hex[64] = '\0';
    nip19_encode_npub(pubkey, npub, sizeof(npub));
    snprintf(relay_url, sizeof(relay_url), "%s/profile-pic/%s", base, hex);
    snprintf(banner_url, sizeof(banner_url), "%s/profile-banner/%s", base, hex);
    out = json_pack("{s:s, s:s}", "pubkey", hex, "npub", npub);
    fields = json_loadb(json_string_value(content), json_string_length(content), 0, NULL);
    for (size_t i = 0; i < sizeof(text_fields) / sizeof(text_fields[0]); i++)
        json_object_set_new(out, text_fields[i], string_or_null(json_object_get(fields, text_fields[i])));
    json_object_set_new(out, "created_at", json_integer(json_integer_value(created)));
    if ((prof = malloc(sizeof(*prof))) == NULL)
        abort();
    /* data: pictures are named by their bytes' SHA-256; their size is bounded by the event's. */
    profile_parse(json_string_value(content), json_string_length(content), SIZE_MAX, prof);
    json_object_set_new(out, "picture", picture_object(&prof->picture, pic, event_id, relay_url, base, state));
    json_object_set_new(out, "banner", picture_object(&prof->banner, banner, event_id, banner_url, base, banner_state));
    profile_free(prof);
    free(prof);
    json_decref(fields);
    json_decref(ev);
    return out;
}

/* --- the body of POST /profiles -------------------------------------------------------------------------------- */

int profileapi_parse_batch(const char *body, size_t len, uint8_t (**keys)[32], size_t *n,
                           void (*hint)(void *ctx, const uint8_t pubkey[32], const char *url), void *ctx, char *err,
                           size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr), *pubkeys = json_object_get(root, "pubkeys"), *v;
    char why[NIP19_ERR_LEN];
    size_t i;

    *keys = NULL;
    *n = 0;
    if (root == NULL) {
        snprintf(err, errlen, "malformed JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        return -EINVAL;
    }
    if (!json_is_object(root) || pubkeys == NULL)
        snprintf(err, errlen, "the body must be an object with a \"pubkeys\" array: {\"pubkeys\": [...]}");
    else if (!json_is_array(pubkeys))
        snprintf(err, errlen, "\"pubkeys\" must be an array of public keys");
    else if (json_array_size(pubkeys) == 0)
        snprintf(err, errlen, "\"pubkeys\" is empty");
    else if (json_array_size(pubkeys) > PROFILEAPI_BATCH_MAX)
        snprintf(err, errlen, "at most %d pubkeys per request; got %zu", PROFILEAPI_BATCH_MAX,
                 json_array_size(pubkeys));
    else if ((*keys = malloc(json_array_size(pubkeys) * 32)) == NULL)
        abort();
    if (*keys == NULL) {
        json_decref(root);
        return -EINVAL;
    }
    json_array_foreach(pubkeys, i, v)
    {
        /* Not echoed: what was pasted might be a secret key. */
        if (!json_is_string(v)) {
            snprintf(err, errlen, "pubkeys[%zu] is not a string", i);
            break;
        }
        if (nip19_decode_pubkey(json_string_value(v), json_string_length(v), (*keys)[i], why, sizeof(why)) != 0) {
            snprintf(err, errlen, "pubkeys[%zu] is not a public key: %s", i, why);
            break;
        }
    }
    if (i < json_array_size(pubkeys)) {
        free(*keys);
        *keys = NULL;
        json_decref(root);
        return -EINVAL;
    }
    *n = json_array_size(pubkeys);
    /* Once the whole batch is good, the relays of its nprofiles become hints. */
    json_array_foreach(pubkeys, i, v)
    {
        struct nip19_relays relays;
        uint8_t pubkey[32];
        if (hint == NULL || strncmp(json_string_value(v), "nprofile1", 9) != 0 ||
            nip19_decode_profile(json_string_value(v), json_string_length(v), pubkey, &relays, why, sizeof(why)) != 0)
            continue;
        for (size_t r = 0; r < relays.n; r++)
            hint(ctx, pubkey, relays.urls[r]);
    }
    json_decref(root);
    return 0;
}

/* --- requests ---------------------------------------------------------------------------------------------------- */

/* One pubkey of a request: its kind 0 as JSON once found, or NULL. */
/* A slot's wait for the summary of one of its pictures. */
struct sum_wait {
    h2o_linklist_t link; /* on a summary being made */
    struct request *rq;
};

struct slot {
    struct lookup_waiter lw;
    struct sum_wait sum[PICTURES_BANNER + 1]; /* by enum pictures_slot */
    struct request *rq;
    char *json;
    size_t len;
};

/* A request whose kind 0s are being found; answered when the last lookup has. */
struct request {
    struct profileapi *pa;
    struct http_hold *hold;
    bool batch; /* POST /profiles: an array; else one object, or 404 */
    size_t n, waiting;
    uint8_t (*keys)[32];
    struct slot slots[];
};

/* Queues the picture of `pubkey` ahead of any request; nobody waits for the outcome. */
static void on_queued_done(struct pfp_watch *w, enum pfp_outcome outcome)
{
    (void)outcome;
    free(w);
}

static void queue_picture(struct profileapi *pa, const uint8_t pubkey[32], enum pictures_slot slot)
{
    struct pfp_watch *w = malloc(sizeof(*w));

    if (w == NULL)
        abort();
    w->cb = on_queued_done;
    pfp_precache(pa->_pfp, pubkey, slot, w);
}

/* The prefix of relay URLs: the scheme and authority the client used. */
static void base_of(h2o_req_t *req, char *base, size_t len)
{
    if (req->input.authority.len == 0 || req->input.authority.len > 255) {
        base[0] = '\0';
        return;
    }
    snprintf(base, len, "%.*s://%.*s", (int)req->input.scheme->name.len, req->input.scheme->name.base,
             (int)req->input.authority.len, req->input.authority.base);
}

#define STRINGIFY_(x) #x
#define STRINGIFY(x)  STRINGIFY_(x)

/* Sends `body` with an ETag of its bytes (so it changes with the kind 0 and the picture state), or 304. */
static void send_answer(struct profileapi *pa, h2o_req_t *req, json_t *body)
{
    static h2o_generator_t generator = {NULL, NULL};
    static const char cache_control[] = "public, max-age=" STRINGIFY(PROFILEAPI_MAX_AGE);
    size_t len = json_dumpb(body, NULL, 0, JSON_COMPACT);
    char *etag = h2o_mem_alloc_pool(&req->pool, 35);
    h2o_iovec_t text = h2o_iovec_init(h2o_mem_alloc_pool(&req->pool, len), len);
    bool not_modified, head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    uint8_t hash[32];

    json_dumpb(body, text.base, len, JSON_COMPACT);
    blob_hash((const uint8_t *)text.base, len, hash);
    etag[0] = '"';
    hex_encode(hash, 16, etag + 1);
    etag[33] = '"';
    etag[34] = '\0';
    not_modified = http_if_none_match(req, h2o_iovec_init(etag, 34));
    http_begin_response(req, not_modified ? 304 : 200);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL, etag, 34);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT(cache_control));
    if (not_modified) {
        pa->_stats.not_modified++;
    } else {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
        req->res.content_length = len;
    }
    h2o_start_response(req, &generator);
    h2o_send(req, &text, not_modified || head ? 0 : 1, H2O_SEND_STATE_FINAL);
}

/* Adds the blurhash and colour of the file `blob` to `o`, when they are known. */
static void add_summary(struct profileapi *pa, json_t *o, const uint8_t blob[32])
{
    const struct summary *sm = keymap_get(pa->_summaries, blob);

    if (sm != NULL && sm->ok) {
        json_object_set_new(o, "blurhash", json_string(sm->blurhash));
        json_object_set_new(o, "color", json_string(sm->color));
    }
}

static void on_checked(struct names_wait *w, const struct names_result *r)
{
    (void)r;
    free(w);
}

/*
 * Whether the kind 0's `nip05` names this pubkey: true or false once its name is resolved (and remembered), null
 * when the kind 0 has none or it is not known yet, in which case it is resolved in the background and a later
 * answer (with another ETag) says.
 */
static json_t *nip05_valid(struct profileapi *pa, const uint8_t pubkey[32], json_t *nip05)
{
    struct nip05_id id;
    struct names_result r;
    struct names_wait *w;

    if (!json_is_string(nip05) || pa->_names == NULL)
        return json_null();
    if (nip05_parse_id(json_string_value(nip05), json_string_length(nip05), &id) != 0)
        return json_false();
    if (names_cached(pa->_names, &id, &r))
        return json_boolean(r.error == NAMES_OK && memcmp(r.pubkey, pubkey, 32) == 0);
    if (!pa->_closing) {
        if ((w = calloc(1, sizeof(*w))) == NULL)
            abort();
        w->cb = on_checked;
        names_resolve(pa->_names, &id, w);
    }
    return json_null();
}

/* The object of one pubkey, counted; NULL when it has no kind 0. Queues pictures not cached yet. */
static json_t *entry_of(struct profileapi *pa, const uint8_t pubkey[32], const struct slot *s, const char *base)
{
    struct pic *pic = calloc(2, sizeof(*pic));
    enum profileapi_state state[2];
    uint8_t blob[2][32];
    bool have[2];
    json_t *o = NULL;

    if (pic == NULL)
        abort();
    for (int i = PICTURES_AVATAR; i <= PICTURES_BANNER; i++) {
        uint8_t key[32];
        pictures_record_key(pubkey, (enum pictures_slot)i, key);
        have[i] = pictures_get(pa->_pictures, key, &pic[i]) == 0;
        memcpy(blob[i], pic[i].h.blob, 32);
    }
    if (s->json != NULL)
        o = profileapi_entry(s->json, s->len, have[0] ? &pic[0] : NULL, have[1] ? &pic[1] : NULL, base, &state[0],
                             &state[1]);
    free(pic);
    if (o == NULL) {
        pa->_stats.not_found++;
        return NULL;
    }
    pa->_stats.found++;
    json_object_set_new(o, "nip05_valid", nip05_valid(pa, pubkey, json_object_get(o, "nip05")));
    for (int i = PICTURES_AVATAR; i <= PICTURES_BANNER; i++) {
        if (state[i] == PROFILEAPI_CACHED)
            add_summary(pa, json_object_get(o, i == PICTURES_AVATAR ? "picture" : "banner"), blob[i]);
    }
    /* The answer's state is the picture's; a banner is fetched behind it. */
    if (state[0] == PROFILEAPI_PENDING)
        pa->_stats.pending++;
    for (int i = PICTURES_AVATAR; i <= PICTURES_BANNER; i++) {
        if (state[i] == PROFILEAPI_PENDING)
            queue_picture(pa, pubkey, (enum pictures_slot)i);
    }
    return o;
}

static void answer(struct request *rq, h2o_req_t *req)
{
    struct profileapi *pa = rq->pa;
    char base[300];
    json_t *arr, *o;

    base_of(req, base, sizeof(base));
    if (!rq->batch) {
        if ((o = entry_of(pa, rq->keys[0], &rq->slots[0], base)) == NULL)
            http_reply_error(req, 404, "no profile (kind 0) found for this pubkey");
        else
            send_answer(pa, req, o);
        json_decref(o);
        return;
    }
    arr = json_array();
    for (size_t i = 0; i < rq->n; i++) {
        if ((o = entry_of(pa, rq->keys[i], &rq->slots[i], base)) == NULL) {
            char hex[65];
            hex_encode(rq->keys[i], 32, hex);
            hex[64] = '\0';
            o = json_pack("{s:s, s:b}", "pubkey", hex, "found", 0);
        }
        json_array_append_new(arr, o);
    }
    send_answer(pa, req, arr);
    json_decref(arr);
}

static void finish(struct request *rq)
{
    h2o_req_t *req = http_held(rq->hold);

    if (req != NULL)
        answer(rq, req);
    http_unhold(rq->hold);
    for (size_t i = 0; i < rq->n; i++)
        free(rq->slots[i].json);
    free(rq->keys);
    free(rq);
}

static void keep_event(struct slot *s, const struct event_view *ev)
{
    if ((s->json = malloc(ev->json_len)) == NULL)
        abort();
    memcpy(s->json, ev->json, ev->json_len);
    s->len = ev->json_len;
}

/* --- making summaries ------------------------------------------------------------------------------------------ */

struct sum_work {
    struct work work;
    struct profileapi *pa;
    struct summary *sm;
    uint32_t bytes;
    bool ok;
    char blurhash[BLURHASH_MAX];
    char color[8];
};

static void sum_run(struct work *w)
{
    struct sum_work *sw = H2O_STRUCT_FROM_MEMBER(struct sum_work, work, w);
    uint8_t *data, *rgb;
    size_t len;
    int width, height;

    if (blob_read(sw->pa->_blobs, sw->sm->hash, sw->bytes, &data, &len) != 0)
        return;
    if (image_thumbnail_rgb(data, len, PROFILEAPI_THUMBNAIL, &rgb, &width, &height) == 0) {
        sw->ok =
            blurhash_encode(rgb, width, height, (size_t)width * 3, 3, 4, 3, sw->blurhash, sizeof(sw->blurhash)) == 0;
        profileapi_dominant_color(rgb, width, height, sw->color);
        free(rgb);
    }
    free(data);
}

/* Forgets the oldest summaries made while there are too many. */
static void trim(struct profileapi *pa)
{
    while (keymap_count(pa->_summaries) > PROFILEAPI_SUMMARIES_MAX) {
        struct summary *sm = H2O_STRUCT_FROM_MEMBER(struct summary, order, pa->_order.next);
        if (!sm->ready)
            break;
        h2o_linklist_unlink(&sm->order);
        keymap_del(pa->_summaries, sm->hash);
        free(sm);
    }
}

static void sum_done(struct work *w)
{
    struct sum_work *sw = H2O_STRUCT_FROM_MEMBER(struct sum_work, work, w);
    struct summary *sm = sw->sm;
    struct profileapi *pa = sw->pa;

    sm->ready = true;
    sm->ok = sw->ok;
    memcpy(sm->blurhash, sw->blurhash, sizeof(sm->blurhash));
    memcpy(sm->color, sw->color, sizeof(sm->color));
    if (sm->ok)
        pa->_stats.summaries++;
    free(sw);
    while (!h2o_linklist_is_empty(&sm->waits)) {
        struct sum_wait *wait = H2O_STRUCT_FROM_MEMBER(struct sum_wait, link, sm->waits.next);
        h2o_linklist_unlink(&wait->link);
        if (--wait->rq->waiting == 0)
            finish(wait->rq);
    }
    if (!sm->ok) {
        /* Not remembered: the file may have gone (evicted, purged) and come back by the next answer. */
        h2o_linklist_unlink(&sm->order);
        keymap_del(pa->_summaries, sm->hash);
        free(sm);
    }
    trim(pa);
}

/* Makes `s` wait for the summary of its cached picture in `slot` when there is none yet. */
static void summarize(struct profileapi *pa, struct slot *s, const uint8_t pubkey[32], enum pictures_slot slot)
{
    struct pic *pic;
    struct summary *sm;
    struct sum_work *sw;
    uint8_t key[32];

    if (s->json == NULL || pa->_closing)
        return;
    if ((pic = malloc(sizeof(*pic))) == NULL)
        abort();
    pictures_record_key(pubkey, slot, key);
    if (pictures_get(pa->_pictures, key, pic) != 0 || pic->h.state != PIC_OK ||
        ((sm = keymap_get(pa->_summaries, pic->h.blob)) != NULL && sm->ready)) {
        free(pic);
        return;
    }
    if (sm == NULL) {
        if ((sm = calloc(1, sizeof(*sm))) == NULL || (sw = calloc(1, sizeof(*sw))) == NULL)
            abort();
        memcpy(sm->hash, pic->h.blob, 32);
        h2o_linklist_init_anchor(&sm->waits);
        h2o_linklist_insert(&pa->_order, &sm->order);
        keymap_put(pa->_summaries, sm->hash, sm);
        sw->pa = pa;
        sw->sm = sm;
        sw->bytes = pic->h.bytes;
        sw->work.run = sum_run;
        sw->work.done = sum_done;
        /* Someone waits for it: ahead of the pictures being resized in the background. */
        workpool_submit_urgent(pa->_images, &sw->work);
    }
    free(pic);
    s->rq->waiting++;
    s->sum[slot].rq = s->rq;
    h2o_linklist_insert(&sm->waits, &s->sum[slot].link);
}

/* Every kind 0 is known: the summaries of cached pictures are made, then the request is answered. */
static void found_all(struct request *rq)
{
    /* One more than the summaries, so that none can finish the request before all are asked. */
    rq->waiting = 1;
    for (size_t i = 0; i < rq->n; i++) {
        summarize(rq->pa, &rq->slots[i], rq->keys[i], PICTURES_AVATAR);
        summarize(rq->pa, &rq->slots[i], rq->keys[i], PICTURES_BANNER);
    }
    if (--rq->waiting == 0)
        finish(rq);
}

static void on_looked_up(struct lookup_waiter *w, const struct event_view *ev)
{
    struct slot *s = H2O_STRUCT_FROM_MEMBER(struct slot, lw, w);
    struct request *rq = s->rq;

    if (ev != NULL)
        keep_event(s, ev);
    if (--rq->waiting == 0)
        found_all(rq);
}

/* Takes `keys` (n of them): reads the kind 0s stored here, looks the others up in one go, then answers. */
static void start(struct profileapi *pa, h2o_req_t *req, uint8_t (*keys)[32], size_t n, bool batch)
{
    struct request *rq = calloc(1, sizeof(*rq) + n * sizeof(struct slot));
    bool upstream = lookup_enabled(pa->_lookup) && !lookup_closing(pa->_lookup);

    if (rq == NULL)
        abort();
    rq->pa = pa;
    rq->batch = batch;
    rq->n = n;
    rq->keys = keys;
    rq->hold = http_hold(req);
    /* One more than the lookups, so that none can finish the request before all are asked. */
    rq->waiting = 1;
    for (size_t i = 0; i < n; i++) {
        struct slot *s = &rq->slots[i];
        struct event_view ev;
        void *copy;
        s->rq = rq;
        if (store_get_latest_copy(pa->_store, keys[i], 0, &ev, &copy) == 0) {
            lookup_count_local(pa->_lookup);
            keep_event(s, &ev);
            free(copy);
        } else if (upstream) {
            rq->waiting++;
            s->lw.cb = on_looked_up;
            lookup_get(pa->_lookup, keys[i], 0, &s->lw);
        }
    }
    if (--rq->waiting == 0)
        found_all(rq);
}

/* Answers for one pubkey, named by a key or by a name resolved to it (`ctx` is the module). */
static void start_one(const void *ctx, h2o_req_t *req, const uint8_t pubkey[32])
{
    struct profileapi *pa = *(struct profileapi *const *)ctx;
    uint8_t(*keys)[32];

    if (cluster_route(pa->_cluster, req, pubkey))
        return;
    if ((keys = malloc(32)) == NULL)
        abort();
    memcpy(keys[0], pubkey, 32);
    start(pa, req, keys, 1, false);
}

static void on_profile(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    struct profileapi *pa = data;
    uint8_t pubkey[32];
    char why[NIP19_ERR_LEN];
    struct nip05_id name;
    struct nip19_relays hints;

    if (nip19_decode_profile(param.base, param.len, pubkey, &hints, why, sizeof(why)) == 0) {
        for (size_t i = 0; i < hints.n; i++)
            lookup_hint(pa->_lookup, pubkey, hints.urls[i]);
        start_one(&pa, req, pubkey);
    } else if (pa->_names != NULL && nip05_parse_id(param.base, param.len, &name) == 0)
        names_serve(pa->_names, req, &name, start_one, &pa, sizeof(pa));
    else
        http_reply_error(req, 400, "not a public key or a NIP-05 name: %s", why);
}

static void on_profiles(void *data, h2o_req_t *req, h2o_iovec_t param)
{
    uint8_t(*keys)[32];
    size_t n;
    char err[256];

    (void)param;
    if (profileapi_parse_batch(req->entity.base, req->entity.len, &keys, &n, lookup_hint_to,
                               ((struct profileapi *)data)->_lookup, err, sizeof(err)) != 0) {
        http_reply_error(req, 400, "%s", err);
        return;
    }
    start(data, req, keys, n, true);
}

void profileapi_init(struct profileapi *pa, struct store *store, struct lookup *lookup, struct pictures *pictures,
                     struct blobs *blobs, struct pfp *pfp, struct names *names, struct cluster *cluster)
{
    *pa = (struct profileapi){._store = store,
                              ._lookup = lookup,
                              ._pictures = pictures,
                              ._pfp = pfp,
                              ._names = names,
                              ._cluster = cluster,
                              ._blobs = blobs,
                              ._images = pfp_image_threads(pfp),
                              ._summaries = keymap_new(32)};
    h2o_linklist_init_anchor(&pa->_order);
}

void profileapi_shutdown(struct profileapi *pa)
{
    pa->_closing = true;
}

void profileapi_free(struct profileapi *pa)
{
    if (pa->_summaries != NULL)
        keymap_free(pa->_summaries, free);
    pa->_summaries = NULL;
}

int profileapi_route(struct profileapi *pa, struct http_server *http)
{
    int r;

    if ((r = http_route(http, HTTP_GET, "/profile/*", on_profile, pa)) != 0)
        return r;
    return http_route(http, HTTP_POST, "/profiles", on_profiles, pa);
}

void profileapi_stats(const struct profileapi *pa, struct profileapi_stats *out)
{
    *out = pa->_stats;
}
