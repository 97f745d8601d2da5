/*
 * pending.c -- the picture of a pubkey being found: one search per pubkey
 * however many wait for it, from its kind 0 (here or upstream) to a picture
 * URL, a download or a reuse, and the record written before anyone is told.
 */
#include "pending.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/memory.h>

#include "blob.h"
#include "blobcache.h"
#include "clock.h"
#include "downloads.h"
#include "event.h"
#include "hex.h"
#include "keymap.h"
#include "log.h"
#include "lookup.h"
#include "pictures.h"
#include "profile.h"
#include "store.h"

_Static_assert(PROFILE_MAX_URL == PICTURES_MAX_URL, "a URL the profile accepts fits in a picture record");

/* A failure is remembered 5 minutes, then twice as long each time again, up to a day. */
#define RETRY_BASE_SECONDS 300
#define RETRY_MAX_SECONDS  86400

/* One pubkey's search for its avatar or its banner. */
struct search {
    struct pending *ps;
    uint8_t pubkey[32];
    enum pictures_slot slot;
    uint8_t key[32];      /* its record's: pictures_record_key() */
    h2o_linklist_t waits; /* pending_wait._link */
    bool background;      /* nobody waits in a browser */
    bool refresh;         /* a stale entry: ask the upstream relays again */
    bool confirmed;       /* the picture there was is still the profile's */
    bool refetched;       /* its file went while the record was written, and it was downloaded again */
    bool have_old;
    struct pic old; /* the record there was, if have_old */
    struct lookup_waiter lw;
    bool looking;
    struct pic found; /* the profile's kind 0 and picture URL, then what came of them */
    struct download_wait dw;
    bool downloading;
    uint8_t *data; /* a data: picture's bytes, kept for the download again should its file go */
    size_t data_len;
    struct blob_ref *blob; /* the picture's bytes while its record is written, when just made */
};

struct pending {
    struct store *store;
    struct pictures *pictures;
    struct lookup *lookup;
    struct downloads *downloads;
    struct pending_options o;
    struct keymap *searches; /* record key -> its search */
    bool closing;
    struct pending_stats stats;
};

/* Ends a search: every wait hears `r`, then it is freed. */
static void finish(struct search *s, struct pending_result *r)
{
    struct pending *ps = s->ps;

    keymap_del(ps->searches, s->key);
    if (s->looking)
        lookup_cancel(ps->lookup, &s->lw);
    while (!h2o_linklist_is_empty(&s->waits)) {
        struct pending_wait *w = H2O_STRUCT_FROM_MEMBER(struct pending_wait, _link, s->waits.next);
        h2o_linklist_unlink(&w->_link);
        w->cb(w, r);
    }
    free(s->data);
    free(s);
}

static void abandon(struct search *s)
{
    struct pending_result r = {.abandoned = true};
    finish(s, &r);
}

static void download(struct search *s);

/* The search's record is committed: its waits hear the outcome. */
static void on_written(void *ctx, int status)
{
    struct search *s = ctx;
    struct blob_ref *blob = s->blob;
    struct pending_result r = {.pic = &s->found, .blob = blob, .status = status, .confirmed = s->confirmed};
    struct pending *ps = s->ps;

    s->blob = NULL;
    /* What caches in front hold of the old picture is no longer the answer. */
    if (status == 0 && s->have_old && s->old.h.state == PIC_OK &&
        (s->found.h.state != PIC_OK || memcmp(s->found.h.blob, s->old.h.blob, 32) != 0) && ps->o.changed != NULL)
        ps->o.changed(ps->o.changed_ctx, s->pubkey, s->slot);
    if (status == -ENOENT && s->found.h.state == PIC_OK && !s->refetched && !s->ps->closing) {
        /* Its file was evicted or purged meanwhile: downloaded again, and written with its bytes this time. */
        s->refetched = true;
        s->confirmed = false;
        s->ps->stats.refetched++;
        download(s);
    } else {
        finish(s, &r);
    }
    if (blob != NULL)
        blob_release(blob);
}

/*
 * Stores the search's record; it is answered once that is committed. `blob`: the bytes, when just made, with the
 * variants made with them.
 */
static void write_found(struct search *s, struct blob_ref *blob, const struct url_rec *url, const uint8_t url_key[32],
                        const struct download_variant *made, size_t nmade)
{
    struct pictures_variant v[PICTURES_MAX_VARIANTS];
    size_t n = 0;

    if ((s->blob = blob) != NULL)
        blob_retain(blob);
    for (size_t i = 0; i < nmade && n < PICTURES_MAX_VARIANTS; i++, n++) {
        const struct image_variant_spec *spec = made[i].spec;
        v[n] = (struct pictures_variant){.bytes = made[i].blob};
        pictures_variant_key(&v[n].key, spec->size, spec->type, spec->animated && made[i].frames > 1, spec->width_only,
                             s->found.h.width, s->found.h.height);
        memcpy(v[n].rec.blob, made[i].blob->hash, 32);
        v[n].rec.bytes = (uint32_t)made[i].blob->len;
        v[n].rec.width = (uint16_t)made[i].width;
        v[n].rec.height = (uint16_t)made[i].height;
        v[n].rec.type = (uint8_t)spec->type;
        v[n].rec.frames = (uint8_t)(made[i].frames > 255 ? 255 : made[i].frames);
    }
    pictures_put(s->ps->pictures, s->key, &s->found, url, url_key, blob, v, n, on_written, s);
    if (!s->background)
        pictures_flush(s->ps->pictures);
}

/* The picture there was stays, confirmed for another period. */
static void confirm_old(struct search *s)
{
    s->old.h.fetched_at = (uint64_t)clock_now_s();
    s->found = s->old;
    s->confirmed = true;
    write_found(s, NULL, NULL, NULL, NULL, 0);
}

/* Remembers a failure with a back-off. A stale picture's failed refresh keeps the picture instead. */
static void fail(struct search *s, enum pending_reason reason, const char *detail)
{
    struct pic *pic = &s->found;
    unsigned failures;
    uint64_t delay;
    char hex[17];

    if (s->ps->closing) {
        abandon(s);
        return;
    }
    hex_encode(s->pubkey, 8, hex);
    hex[16] = '\0';
    log_info("pictures: %s...: %s", hex, detail);
    if (s->have_old && s->old.h.state == PIC_OK) {
        confirm_old(s);
        return;
    }
    failures = s->have_old && s->old.h.state == PIC_NEGATIVE ? s->old.h.failures + 1 : 1;
    delay = RETRY_BASE_SECONDS << (failures - 1 < 9 ? failures - 1 : 9);
    if (delay > RETRY_MAX_SECONDS)
        delay = RETRY_MAX_SECONDS;
    pic->h.state = PIC_NEGATIVE;
    pic->h.reason = (uint8_t)reason;
    pic->h.failures = failures;
    pic->h.fetched_at = (uint64_t)clock_now_s();
    pic->h.retry_at = pic->h.fetched_at + delay;
    write_found(s, NULL, NULL, NULL, NULL, 0);
}

/* The picture is stored: the record points at it. */
static void succeed(struct search *s, const struct url_rec *u, struct blob_ref *blob, const struct url_rec *put_url,
                    const uint8_t url_key[32], const struct download_variant *made, size_t nmade)
{
    struct pic *pic = &s->found;

    pic->h.state = PIC_OK;
    pic->h.reason = 0;
    pic->h.failures = 0;
    pic->h.type = u->type;
    pic->h.flags = u->flags;
    memcpy(pic->h.blob, u->blob, 32);
    pic->h.bytes = u->bytes;
    pic->h.width = u->width;
    pic->h.height = u->height;
    pic->h.fetched_at = (uint64_t)clock_now_s();
    pic->h.retry_at = 0;
    write_found(s, blob, put_url, url_key, made, nmade);
}

static void on_downloaded(struct download_wait *w, const struct download_result *r)
{
    struct search *s = H2O_STRUCT_FROM_MEMBER(struct search, dw, w);

    s->downloading = false;
    if (r->error != DOWNLOAD_OK)
        fail(s, r->error == DOWNLOAD_BAD_IMAGE ? PENDING_BAD_IMAGE : PENDING_DOWNLOAD_FAILED, r->detail);
    else
        succeed(s, r->url, r->blob, r->first ? r->url : NULL, r->url_key, r->variants, r->nvariants);
}

static void download(struct search *s)
{
    s->downloading = true;
    s->dw.cb = on_downloaded;
    s->dw.first = s->slot == PICTURES_AVATAR;
    s->dw.master_size = s->slot == PICTURES_BANNER ? s->ps->o.banner_master_size : 0;
    if (s->data != NULL)
        downloads_get_data(s->ps->downloads, s->found.url, s->found.h.url_len, s->data, s->data_len, !s->background,
                           &s->dw);
    else
        downloads_get(s->ps->downloads, s->found.url, s->found.h.url_len, !s->background, &s->dw);
}

/* Remembers why the profile's picture URL cannot be used. */
static void refuse_url(struct search *s, enum profile_url_state state)
{
    char detail[128];

    switch (state) {
    case PROFILE_URL_ABSENT:
        fail(s, PENDING_NO_PICTURE,
             s->slot == PICTURES_BANNER ? "the kind 0 has no banner" : "the kind 0 has no picture");
        return;
    case PROFILE_URL_TOO_LONG:
        snprintf(detail, sizeof(detail), "the picture URL is longer than %d bytes", PROFILE_MAX_URL);
        fail(s, PENDING_URL_TOO_LONG, detail);
        return;
    case PROFILE_DATA_TOO_BIG:
        snprintf(detail, sizeof(detail), "the data: picture is larger than %zu bytes", s->ps->o.max_data_bytes);
        fail(s, PENDING_DATA_TOO_BIG, detail);
        return;
    default: fail(s, PENDING_BAD_URL, "the picture URL is not usable"); return;
    }
}

/* Reuses what an earlier download of the same URL gave, when it is fresh and its file is still cached. */
static bool reuse_url(struct search *s)
{
    struct pending *ps = s->ps;
    uint8_t key[32];
    struct url_rec u;

    blob_hash((const uint8_t *)s->found.url, s->found.h.url_len, key);
    if (pictures_get_url(ps->pictures, key, &u) != 0 || u.fetched_at + ps->o.max_age <= (uint64_t)clock_now_s())
        return false;
    ps->stats.url_reuses++;
    succeed(s, &u, NULL, NULL, NULL, NULL, 0);
    return true;
}

/* Goes on from the profile's kind 0 (`ev`, valid during the call). */
static void use_profile(struct search *s, const struct event_view *ev)
{
    struct pic *pic = &s->found;
    json_t *obj = json_loadb(ev->json, ev->json_len, 0, NULL), *content = json_object_get(obj, "content");
    struct profile *prof = malloc(sizeof(*prof));
    struct profile_url *u;

    if (prof == NULL)
        abort();
    memcpy(pic->h.event_id, ev->id, 32);
    pic->h.kind0_at = ev->created_at;
    if (!json_is_string(content) ||
        profile_parse(json_string_value(content), json_string_length(content), s->ps->o.max_data_bytes, prof) != 0)
        prof->picture.state = prof->banner.state = PROFILE_URL_ABSENT;
    json_decref(obj);
    u = s->slot == PICTURES_BANNER ? &prof->banner : &prof->picture;
    if (u->state != PROFILE_URL_OK) {
        enum profile_url_state state = u->state;
        profile_free(prof);
        free(prof);
        refuse_url(s, state);
        return;
    }
    memcpy(pic->url, u->url, u->len + 1);
    pic->h.url_len = (uint16_t)u->len;
    free(s->data);
    s->data = u->data;
    s->data_len = u->data_len;
    u->data = NULL;
    profile_free(prof);
    free(prof);

    if (s->have_old && s->old.h.state == PIC_OK && strcmp(s->old.url, pic->url) == 0) {
        /* The same picture as before: confirmed, nothing to download. */
        memcpy(s->old.h.event_id, ev->id, 32);
        s->old.h.kind0_at = ev->created_at;
        confirm_old(s);
        return;
    }
    if (reuse_url(s))
        return;
    download(s);
}

/* Goes on from the newest kind 0 stored here. Returns false when there is none. */
static bool use_local_profile(struct search *s)
{
    struct event_view ev;
    void *copy;

    if (store_get_latest_copy(s->ps->store, s->pubkey, 0, &ev, &copy) != 0)
        return false;
    use_profile(s, &ev);
    free(copy);
    return true;
}

static void on_looked_up(struct lookup_waiter *w, const struct event_view *ev)
{
    struct search *s = H2O_STRUCT_FROM_MEMBER(struct search, lw, w);

    s->looking = false;
    if (ev != NULL) {
        use_profile(s, ev);
        return;
    }
    if (s->ps->closing || lookup_closing(s->ps->lookup)) {
        abandon(s);
        return;
    }
    /* A refresh that found nothing newer upstream goes on with the kind 0 stored here. */
    if (!use_local_profile(s))
        fail(s, PENDING_NO_PROFILE, "no kind 0 here or on the upstream relays");
}

int pending_start(struct pending *ps, const uint8_t pubkey[32], enum pictures_slot slot, bool background, bool refresh,
                  const struct pic *old, struct pending_wait *w)
{
    uint8_t key[32];
    struct search *s;

    pictures_record_key(pubkey, slot, key);
    s = keymap_get(ps->searches, key);

    if (ps->closing)
        return -ECANCELED;
    w->_link = (h2o_linklist_t){NULL, NULL};
    if (s != NULL) {
        h2o_linklist_insert(&s->waits, &w->_link);
        if (!background && s->background) {
            s->background = false;
            if (s->downloading)
                downloads_promote(ps->downloads, &s->dw);
        }
        return 0;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL)
        abort();
    s->ps = ps;
    memcpy(s->pubkey, pubkey, 32);
    s->slot = slot;
    memcpy(s->key, key, 32);
    h2o_linklist_init_anchor(&s->waits);
    h2o_linklist_insert(&s->waits, &w->_link);
    s->background = background;
    s->refresh = refresh;
    if (old != NULL) {
        s->old = *old;
        s->have_old = true;
    }
    keymap_put(ps->searches, key, s);
    if (!refresh && use_local_profile(s)) {
        lookup_count_local(ps->lookup);
        return 0;
    }
    s->looking = true;
    s->lw.cb = on_looked_up;
    lookup_get(ps->lookup, pubkey, 0, &s->lw);
    return 0;
}

bool pending_active(const struct pending *ps, const uint8_t key[32])
{
    return keymap_get(ps->searches, key) != NULL;
}

int pending_init(struct pending **out, struct store *store, struct pictures *pictures, struct lookup *lookup,
                 struct downloads *downloads, const struct pending_options *o)
{
    struct pending *ps = calloc(1, sizeof(*ps));

    if (ps == NULL)
        abort();
    ps->store = store;
    ps->pictures = pictures;
    ps->lookup = lookup;
    ps->downloads = downloads;
    ps->o = *o;
    if (ps->o.max_age == 0)
        ps->o.max_age = 1;
    ps->searches = keymap_new(32);
    *out = ps;
    return 0;
}

void pending_shutdown(struct pending *ps)
{
    ps->closing = true;
}

void pending_free(struct pending *ps)
{
    if (ps == NULL)
        return;
    keymap_free(ps->searches, free);
    free(ps);
}

void pending_stats(const struct pending *ps, struct pending_stats *out)
{
    *out = ps->stats;
    out->active = keymap_count(ps->searches);
}
