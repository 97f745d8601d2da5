/* store.c -- the Nostr event store: events and their indexes, NIP-01's replacement rules, the query planner. */
#include "store.h"

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <h2o/memory.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"

/*
 * Index keys end in a time suffix: the bitwise complement of created_at (8 bytes,
 * big-endian) and the event id. Walking forward then yields newest first and,
 * among equal times, the lowest id first, as NIP-01 orders results. Values are
 * empty.
 *   by_author       pubkey | time | id
 *   by_author_kind  pubkey | kind (4, big-endian) | time | id
 *   by_kind         kind | time | id
 *   by_time         time | id
 *   by_tag          letter | length (1) | value (at most 255 bytes) | time | id
 */
#define SUFFIX_LEN    40
#define MAX_KEY       512
#define MAX_TAG_INDEX 255
static void put_be32(uint8_t *p, uint32_t v)
{
    v = htobe32(v);
    memcpy(p, &v, 4);
}

static void put_be64(uint8_t *p, uint64_t v)
{
    v = htobe64(v);
    memcpy(p, &v, 8);
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return be64toh(v);
}

static size_t put_suffix(uint8_t *k, int64_t created_at, const uint8_t *id)
{
    put_be64(k, ~(uint64_t)created_at);
    memcpy(k + 8, id, 32);
    return SUFFIX_LEN;
}

static int64_t suffix_time(const uint8_t *suffix)
{
    return (int64_t)~get_be64(suffix);
}

/* Calls `fn` for every index key of the event, so that adding and deleting cannot disagree. */
static int for_each_index_key(struct store *st, const struct event_view *ev,
                              int (*fn)(MDB_txn *txn, MDB_dbi dbi, uint8_t *key, size_t len), MDB_txn *txn)
{
    uint8_t k[MAX_KEY];
    size_t n, pos = 0, vlen;
    const char *value;
    char letter;
    int rc;

    memcpy(k, ev->pubkey, 32);
    n = 32 + put_suffix(k + 32, ev->created_at, ev->id);
    if ((rc = fn(txn, st->_by_author, k, n)) != 0)
        return rc;

    put_be32(k + 32, ev->kind);
    n = 36 + put_suffix(k + 36, ev->created_at, ev->id);
    if ((rc = fn(txn, st->_by_author_kind, k, n)) != 0)
        return rc;

    put_be32(k, ev->kind);
    n = 4 + put_suffix(k + 4, ev->created_at, ev->id);
    if ((rc = fn(txn, st->_by_kind, k, n)) != 0)
        return rc;

    n = put_suffix(k, ev->created_at, ev->id);
    if ((rc = fn(txn, st->_by_time, k, n)) != 0)
        return rc;

    while (event_view_next_tag(ev, &pos, &letter, &value, &vlen)) {
        if (vlen > MAX_TAG_INDEX)
            continue;
        k[0] = (uint8_t)letter;
        k[1] = (uint8_t)vlen;
        memcpy(k + 2, value, vlen);
        n = 2 + vlen + put_suffix(k + 2 + vlen, ev->created_at, ev->id);
        if ((rc = fn(txn, st->_by_tag, k, n)) != 0)
            return rc;
    }
    return 0;
}

static int index_put(MDB_txn *txn, MDB_dbi dbi, uint8_t *key, size_t len)
{
    MDB_val k = {len, key}, v = {0, ""};
    return mdb_put(txn, dbi, &k, &v, 0);
}

static int index_del(MDB_txn *txn, MDB_dbi dbi, uint8_t *key, size_t len)
{
    MDB_val k = {len, key};
    int rc = mdb_del(txn, dbi, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Deletes the event `id` and its index keys. The record is copied first: deleting moves the pages it lives on. */
static int delete_event(struct store *st, MDB_txn *txn, const uint8_t id[32])
{
    MDB_val k = {32, (void *)id}, v;
    struct event_view ev;
    uint8_t key_id[32];
    void *copy;
    int rc;

    if ((rc = mdb_get(txn, st->_events, &k, &v)) != 0)
        return rc;
    if ((copy = malloc(v.mv_size)) == NULL)
        abort();
    memcpy(copy, v.mv_data, v.mv_size);
    memcpy(key_id, id, 32);
    if (event_view_decode(key_id, copy, v.mv_size, &ev) != 0) {
        free(copy);
        return MDB_CORRUPTED;
    }
    rc = for_each_index_key(st, &ev, index_del, txn);
    if (rc == 0)
        rc = mdb_del(txn, st->_events, &k, NULL);
    free(copy);
    return rc;
}

/*
 * For replaceable and addressable kinds: if a stored version is newer (later
 * created_at, or the same created_at and a lower id) the new event is superseded;
 * otherwise the stored versions are deleted.
 */
static int replace_versions(struct store *st, MDB_txn *txn, const struct event_view *ev, bool addressable,
                            bool *superseded)
{
    uint8_t prefix[36], (*old)[32] = NULL;
    size_t nold = 0, cap = 0;
    MDB_cursor *cur;
    MDB_val k, v;
    const char *d = NULL;
    size_t dlen = 0;
    int rc;

    *superseded = false;
    if (addressable)
        event_view_d_tag(ev, &d, &dlen);
    memcpy(prefix, ev->pubkey, 32);
    put_be32(prefix + 32, ev->kind);
    if ((rc = mdb_cursor_open(txn, st->_by_author_kind, &cur)) != 0)
        return rc;
    k.mv_size = sizeof(prefix);
    k.mv_data = prefix;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *key = k.mv_data;
        const uint8_t *old_id = key + 36 + 8;
        int64_t old_at;
        struct event_view old_ev;
        MDB_val ok, ov;

        if (k.mv_size != 36 + SUFFIX_LEN || memcmp(key, prefix, 36) != 0)
            break;
        old_at = suffix_time(key + 36);
        if (addressable) {
            const char *od;
            size_t odlen;
            ok.mv_size = 32;
            ok.mv_data = (void *)old_id;
            if (mdb_get(txn, st->_events, &ok, &ov) != 0 || event_view_decode(old_id, ov.mv_data, ov.mv_size, &old_ev))
                continue;
            event_view_d_tag(&old_ev, &od, &odlen);
            if (odlen != dlen || memcmp(od, d, dlen) != 0)
                continue;
        }
        if (old_at > ev->created_at || (old_at == ev->created_at && memcmp(old_id, ev->id, 32) < 0)) {
            *superseded = true;
            break;
        }
        if (nold == cap) {
            cap = cap ? cap * 2 : 4;
            if ((old = realloc(old, cap * 32)) == NULL)
                abort();
        }
        memcpy(old[nold++], old_id, 32);
    }
    mdb_cursor_close(cur);
    rc = (rc == MDB_NOTFOUND) ? 0 : rc;
    for (size_t i = 0; rc == 0 && !*superseded && i < nold; i++)
        rc = delete_event(st, txn, old[i]);
    free(old);
    return rc;
}

static int apply_put_event(MDB_txn *txn, struct db_write *w)
{
    struct store_event_write *ew = H2O_STRUCT_FROM_MEMBER(struct store_event_write, w, w);
    struct store *st = ew->_st;
    MDB_val k = {32, ew->id}, v;
    struct event_view ev;
    enum event_class cls;
    bool superseded;

    ew->_commit = (uint64_t)mdb_txn_id(txn);
    int rc;

    if ((rc = mdb_get(txn, st->_events, &k, &v)) == 0) {
        ew->result = STORE_DUPLICATE;
        return 0;
    }
    if (rc != MDB_NOTFOUND)
        return db_errno(rc);
    if (event_view_decode(ew->id, ew->rec, ew->rec_len, &ev) != 0)
        return -EINVAL;

    cls = event_kind_class(ev.kind);
    if (cls == EVENT_REPLACEABLE || cls == EVENT_ADDRESSABLE) {
        if ((rc = replace_versions(st, txn, &ev, cls == EVENT_ADDRESSABLE, &superseded)) != 0)
            return db_errno(rc);
        if (superseded) {
            ew->result = STORE_SUPERSEDED;
            return 0;
        }
    }
    v.mv_size = ew->rec_len;
    v.mv_data = ew->rec;
    if ((rc = mdb_put(txn, st->_events, &k, &v, 0)) != 0 || (rc = for_each_index_key(st, &ev, index_put, txn)) != 0)
        return db_errno(rc);
    ew->result = STORE_STORED;
    return 0;
}

/* Tells the listeners of a newly stored event before the writer's own callback. */
static void put_event_done(struct db_write *w)
{
    struct store_event_write *ew = H2O_STRUCT_FROM_MEMBER(struct store_event_write, w, w);
    struct store *st = ew->_st;

    if (w->status == 0 && ew->result == STORE_STORED) {
        struct event_view ev;
        event_view_decode(ew->id, ew->rec, ew->rec_len, &ev);
        for (size_t i = 0; i < st->_nlisteners; i++)
            st->_listeners[i].fn(st->_listeners[i].data, &ev, ew->_commit);
    }
    ew->done(ew);
}

void store_put_event(struct store *st, struct store_event_write *ew)
{
    ew->_st = st;
    ew->w.apply = apply_put_event;
    ew->w.done = put_event_done;
    ew->w.nosync = false;
    ew->result = STORE_STORED;
    db_submit(st->_db, &ew->w);
}

void store_add_listener(struct store *st, store_listener_fn fn, void *data)
{
    assert(st->_nlisteners < STORE_MAX_LISTENERS);
    st->_listeners[st->_nlisteners].fn = fn;
    st->_listeners[st->_nlisteners].data = data;
    st->_nlisteners++;
}

/* --- checking --------------------------------------------------------------------------------------------------- */

static int check_event(const MDB_val *k, const MDB_val *v, char *why, size_t whylen)
{
    struct event_view ev;

    if (k->mv_size != 32)
        return err_set(why, whylen, -EINVAL, "a key of %zu bytes, not an event id", k->mv_size);
    if (event_view_decode(k->mv_data, v->mv_data, v->mv_size, &ev) != 0)
        return err_set(why, whylen, -EINVAL, "not an event record");
    return 0;
}

/* An index entry: an empty value, a key of `fixed` bytes before its time suffix (by_tag: its own length). */
static int check_index(const MDB_val *k, const MDB_val *v, size_t fixed, char *why, size_t whylen)
{
    if (v->mv_size != 0)
        return err_set(why, whylen, -EINVAL, "an index entry with a value");
    if (k->mv_size != fixed + SUFFIX_LEN)
        return err_set(why, whylen, -EINVAL, "an index key of %zu bytes, not %zu", k->mv_size, fixed + SUFFIX_LEN);
    return 0;
}

static int check_by_author(const MDB_val *k, const MDB_val *v, char *why, size_t whylen)
{
    return check_index(k, v, 32, why, whylen);
}

static int check_by_author_kind(const MDB_val *k, const MDB_val *v, char *why, size_t whylen)
{
    return check_index(k, v, 36, why, whylen);
}

static int check_by_kind(const MDB_val *k, const MDB_val *v, char *why, size_t whylen)
{
    return check_index(k, v, 4, why, whylen);
}

static int check_by_time(const MDB_val *k, const MDB_val *v, char *why, size_t whylen)
{
    return check_index(k, v, 0, why, whylen);
}

static int check_by_tag(const MDB_val *k, const MDB_val *v, char *why, size_t whylen)
{
    size_t fixed = k->mv_size >= 2 ? 2 + ((const uint8_t *)k->mv_data)[1] : 2;

    return check_index(k, v, fixed, why, whylen);
}

const struct db_table_check *store_table_checks(size_t *n)
{
    static const struct db_table_check checks[] = {
        {"events", check_event},    {"by_author", check_by_author}, {"by_author_kind", check_by_author_kind},
        {"by_kind", check_by_kind}, {"by_time", check_by_time},     {"by_tag", check_by_tag},
    };

    *n = sizeof(checks) / sizeof(checks[0]);
    return checks;
}

int store_init(struct store *st, struct db *db)
{
    int rc;

    memset(st, 0, sizeof(*st));
    st->_db = db;
    if ((rc = db_open_table(db, "events", 0, &st->_events)) != 0 ||
        (rc = db_open_table(db, "by_author", 0, &st->_by_author)) != 0 ||
        (rc = db_open_table(db, "by_author_kind", 0, &st->_by_author_kind)) != 0 ||
        (rc = db_open_table(db, "by_kind", 0, &st->_by_kind)) != 0 ||
        (rc = db_open_table(db, "by_time", 0, &st->_by_time)) != 0 ||
        (rc = db_open_table(db, "by_tag", 0, &st->_by_tag)) != 0)
        return rc;
    return 0;
}

struct db *store_db(struct store *st)
{
    return st->_db;
}

int store_read_begin(struct store *st, MDB_txn **txn)
{
    return db_read_begin(st->_db, txn);
}

void store_read_end(struct store *st, MDB_txn *txn)
{
    db_read_end(st->_db, txn);
}

int store_get_event(struct store *st, MDB_txn *txn, const uint8_t id[32], struct event_view *v)
{
    MDB_val k = {32, (void *)id}, d;
    int rc = mdb_get(txn, st->_events, &k, &d);

    if (rc != 0)
        return db_errno(rc);
    return event_view_decode(id, d.mv_data, d.mv_size, v) == 0 ? 0 : -EIO;
}

/*
 * A stream walks the index keys under one prefix from `until` down to `since`,
 * newest first. Streams over several prefixes are merged through a heap.
 */
struct stream {
    MDB_cursor *cur;
    uint8_t prefix[MAX_KEY];
    size_t plen;
    int64_t since;
    bool valid;
    int64_t created_at;
    const uint8_t *id;
};

static void stream_check(struct stream *s, int rc, const MDB_val *k)
{
    const uint8_t *key = k->mv_data;

    s->valid = rc == 0 && k->mv_size == s->plen + SUFFIX_LEN && memcmp(key, s->prefix, s->plen) == 0;
    if (!s->valid)
        return;
    s->created_at = suffix_time(key + s->plen);
    s->id = key + s->plen + 8;
    if (s->created_at < s->since)
        s->valid = false;
}

static int stream_open(struct stream *s, MDB_txn *txn, MDB_dbi dbi, int64_t since, int64_t until)
{
    uint8_t seek[MAX_KEY];
    MDB_val k, v;
    int rc;

    if ((rc = mdb_cursor_open(txn, dbi, &s->cur)) != 0)
        return rc;
    s->since = since;
    memcpy(seek, s->prefix, s->plen);
    put_be64(seek + s->plen, ~(uint64_t)until);
    memset(seek + s->plen + 8, 0, 32);
    k.mv_size = s->plen + SUFFIX_LEN;
    k.mv_data = seek;
    /* The first key at or after the seek key: the newest event at or before `until`. */
    rc = mdb_cursor_get(s->cur, &k, &v, MDB_SET_RANGE);
    stream_check(s, rc, &k);
    return 0;
}

static void stream_next(struct stream *s)
{
    MDB_val k, v;
    int rc = mdb_cursor_get(s->cur, &k, &v, MDB_NEXT);
    stream_check(s, rc, &k);
}

/* Heap order: newest first, then lowest id. */
static bool stream_before(const struct stream *a, const struct stream *b)
{
    if (a->created_at != b->created_at)
        return a->created_at > b->created_at;
    return memcmp(a->id, b->id, 32) < 0;
}

static void heap_down(struct stream **h, size_t n, size_t i)
{
    for (;;) {
        size_t best = i, l = 2 * i + 1, r = l + 1;
        if (l < n && stream_before(h[l], h[best]))
            best = l;
        if (r < n && stream_before(h[r], h[best]))
            best = r;
        if (best == i)
            return;
        struct stream *t = h[i];
        h[i] = h[best];
        h[best] = t;
        i = best;
    }
}

struct hits {
    struct store_hit *v;
    size_t n, cap;
};

static void hits_push(struct hits *h, int64_t created_at, const uint8_t *id)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        if ((h->v = realloc(h->v, h->cap * sizeof(*h->v))) == NULL)
            abort();
    }
    h->v[h->n].created_at = created_at;
    memcpy(h->v[h->n].id, id, 32);
    h->n++;
}

static int cmp_hit(const void *a, const void *b)
{
    const struct store_hit *x = a, *y = b;
    if (x->created_at != y->created_at)
        return x->created_at > y->created_at ? -1 : 1;
    return memcmp(x->id, y->id, 32);
}

/* Streams are built for the filter's most selective indexed field; the rest is checked on each record. */
static bool tag_indexable(const struct filter_tag *t)
{
    for (size_t i = 0; i < t->nvalues; i++) {
        if (t->values[i].len > MAX_TAG_INDEX)
            return false;
    }
    return true;
}

#define MAX_STREAMS 4096

static bool filter_empty(const struct filter *f)
{
    if ((f->has_ids && f->nids == 0) || (f->has_authors && f->nauthors == 0) || (f->has_kinds && f->nkinds == 0))
        return true;
    for (size_t i = 0; i < f->ntags; i++) {
        if (f->tags[i].nvalues == 0)
            return true;
    }
    return f->limit == 0 || f->since > f->until;
}

static int query_ids(struct store *st, MDB_txn *txn, const struct filter *f, struct hits *out)
{
    struct hits local = {0};

    for (size_t i = 0; i < f->nids; i++) {
        struct event_view ev;
        if (store_get_event(st, txn, f->ids[i], &ev) == 0 && filter_match(f, &ev))
            hits_push(&local, ev.created_at, ev.id);
    }
    if (local.n > 1)
        qsort(local.v, local.n, sizeof(*local.v), cmp_hit);
    for (size_t i = 0; i < local.n && i < f->limit; i++)
        hits_push(out, local.v[i].created_at, local.v[i].id);
    free(local.v);
    return 0;
}

static int query_filter(struct store *st, MDB_txn *txn, const struct filter *f, size_t *budget, struct hits *out)
{
    struct stream *streams = NULL, **heap = NULL;
    size_t nstreams = 0, found = 0;
    MDB_dbi dbi;
    bool covered; /* the index answers every condition: no record needs reading */
    int rc = 0;

    if (filter_empty(f))
        return 0;
    if (f->has_ids)
        return query_ids(st, txn, f, out);

    if (f->has_authors && f->has_kinds && f->nauthors * f->nkinds <= MAX_STREAMS) {
        dbi = st->_by_author_kind;
        nstreams = f->nauthors * f->nkinds;
        covered = f->ntags == 0;
    } else if (f->has_authors && f->nauthors <= MAX_STREAMS) {
        dbi = st->_by_author;
        nstreams = f->nauthors;
        covered = f->ntags == 0 && !f->has_kinds;
    } else if (f->has_kinds) {
        dbi = st->_by_kind;
        nstreams = f->nkinds;
        covered = f->ntags == 0 && !f->has_authors;
    } else if (f->ntags > 0 && tag_indexable(&f->tags[0])) {
        dbi = st->_by_tag;
        nstreams = f->tags[0].nvalues;
        covered = f->ntags == 1 && !f->has_authors;
    } else {
        dbi = st->_by_time;
        nstreams = 1;
        covered = !f->has_authors && f->ntags == 0;
    }

    if ((streams = calloc(nstreams, sizeof(*streams))) == NULL || (heap = calloc(nstreams, sizeof(*heap))) == NULL)
        abort();
    for (size_t i = 0; i < nstreams; i++) {
        struct stream *s = &streams[i];
        if (dbi == st->_by_author_kind) {
            memcpy(s->prefix, f->authors[i / f->nkinds], 32);
            put_be32(s->prefix + 32, f->kinds[i % f->nkinds]);
            s->plen = 36;
        } else if (dbi == st->_by_author) {
            memcpy(s->prefix, f->authors[i], 32);
            s->plen = 32;
        } else if (dbi == st->_by_kind) {
            put_be32(s->prefix, f->kinds[i]);
            s->plen = 4;
        } else if (dbi == st->_by_tag) {
            const struct filter_value *fv = &f->tags[0].values[i];
            s->prefix[0] = (uint8_t)f->tags[0].letter;
            s->prefix[1] = (uint8_t)fv->len;
            memcpy(s->prefix + 2, fv->s, fv->len);
            s->plen = 2 + fv->len;
        }
        if ((rc = stream_open(s, txn, dbi, f->since, f->until)) != 0)
            goto out;
    }

    size_t nheap = 0;
    uint8_t last[32];
    bool have_last = false;
    for (size_t i = 0; i < nstreams; i++) {
        if (streams[i].valid)
            heap[nheap++] = &streams[i];
    }
    for (size_t i = nheap / 2; i-- > 0;)
        heap_down(heap, nheap, i);

    while (nheap > 0 && found<f->limit && * budget> 0) {
        struct stream *s = heap[0];
        struct event_view ev;

        (*budget)--;
        /* An event indexed under two of the filter's values pops twice in a row: it is examined once. */
        if (!have_last || memcmp(last, s->id, 32) != 0) {
            memcpy(last, s->id, 32);
            have_last = true;
            if (covered) {
                hits_push(out, s->created_at, s->id);
                found++;
            } else if (store_get_event(st, txn, s->id, &ev) == 0 && filter_match(f, &ev)) {
                hits_push(out, ev.created_at, ev.id);
                found++;
            }
        }
        stream_next(s);
        if (!s->valid)
            heap[0] = heap[--nheap];
        heap_down(heap, nheap, 0);
    }

out:
    for (size_t i = 0; i < nstreams; i++) {
        if (streams[i].cur != NULL)
            mdb_cursor_close(streams[i].cur);
    }
    free(streams);
    free(heap);
    return db_errno(rc);
}

int store_query(struct store *st, const struct filter *filters, size_t nfilters, size_t scan_budget,
                struct store_hit **hits, size_t *nhits, uint64_t *snapshot)
{
    struct hits h = {0};
    MDB_txn *txn = NULL;
    size_t n = 0;
    int rc;

    if ((rc = store_read_begin(st, &txn)) != 0)
        return rc;
    *snapshot = (uint64_t)mdb_txn_id(txn);
    for (size_t i = 0; i < nfilters && rc == 0; i++)
        rc = query_filter(st, txn, &filters[i], &scan_budget, &h);
    store_read_end(st, txn);
    if (rc != 0) {
        free(h.v);
        return rc;
    }

    if (nfilters > 1 && h.n > 1) {
        qsort(h.v, h.n, sizeof(*h.v), cmp_hit);
        for (size_t i = 0; i < h.n; i++) {
            if (n == 0 || memcmp(h.v[n - 1].id, h.v[i].id, 32) != 0)
                h.v[n++] = h.v[i];
        }
        h.n = n;
    }
    *hits = h.v;
    *nhits = h.n;
    return 0;
}

static int cmp_record(const void *a, const void *b)
{
    const struct store_hit *x = a, *y = b;
    if (x->created_at != y->created_at)
        return x->created_at < y->created_at ? -1 : 1;
    return memcmp(x->id, y->id, 32);
}

/* Sorts the records oldest first and drops those found twice (under two filters). */
static void records_settle(struct hits *h)
{
    size_t n = 0;

    if (h->n == 0)
        return;
    qsort(h->v, h->n, sizeof(*h->v), cmp_record);
    for (size_t i = 0; i < h->n; i++) {
        if (n == 0 || h->v[n - 1].created_at != h->v[i].created_at || memcmp(h->v[n - 1].id, h->v[i].id, 32) != 0)
            h->v[n++] = h->v[i];
    }
    h->n = n;
}

int store_records(struct store *st, const struct filter *filters, size_t nfilters, size_t max, size_t scan_budget,
                  struct store_hit **hits, size_t *nhits)
{
    struct hits h = {0};
    MDB_txn *txn = NULL;
    int rc;

    if (max >= UINT32_MAX)
        return -EINVAL;
    if ((rc = db_read_begin_own(st->_db, &txn)) != 0)
        return rc;
    for (size_t i = 0; i < nfilters && rc == 0; i++) {
        struct filter f = filters[i];
        /* One past `max` tells that there are more; settling as soon as there are keeps at most twice that. */
        f.limit = (uint32_t)max + 1;
        rc = query_filter(st, txn, &f, &scan_budget, &h);
        if (rc == 0 && scan_budget == 0)
            rc = -E2BIG;
        if (rc == 0 && h.n > max)
            records_settle(&h);
        if (rc == 0 && h.n > max)
            rc = -EMSGSIZE;
    }
    db_read_end_own(txn);
    if (rc != 0) {
        free(h.v);
        return rc;
    }
    records_settle(&h);
    *hits = h.v;
    *nhits = h.n;
    return 0;
}

int store_window(struct store *st, const struct filter *f, size_t max, size_t scan_budget, struct store_hit **hits,
                 size_t *nhits, int64_t *since)
{
    struct hits h = {0};
    struct filter g = *f;
    MDB_txn *txn = NULL;
    size_t drop = 0;
    int rc;

    if (max == 0 || max >= UINT32_MAX)
        return -EINVAL;
    if ((rc = db_read_begin_own(st->_db, &txn)) != 0)
        return rc;
    /* The newest max + 1: one past `max` says that older records remain below the window. */
    g.limit = (uint32_t)max + 1;
    rc = query_filter(st, txn, &g, &scan_budget, &h);
    db_read_end_own(txn);
    if (rc == 0 && scan_budget == 0)
        rc = -E2BIG;
    if (rc != 0) {
        free(h.v);
        return rc;
    }
    records_settle(&h);
    *since = f->since;
    if (h.n > max) {
        /* The oldest second may be cut short by the limit: it goes whole, to the next window. */
        while (drop < h.n && h.v[drop].created_at == h.v[0].created_at)
            drop++;
        if (drop == h.n) {
            free(h.v);
            return -EMSGSIZE;
        }
        *since = h.v[0].created_at + 1;
        memmove(h.v, h.v + drop, (h.n - drop) * sizeof(*h.v));
        h.n -= drop;
    }
    *hits = h.v;
    *nhits = h.n;
    return 0;
}

int store_get_latest(struct store *st, MDB_txn *txn, const uint8_t pubkey[32], uint32_t kind, struct event_view *v)
{
    struct stream s = {0};
    int rc;

    memcpy(s.prefix, pubkey, 32);
    put_be32(s.prefix + 32, kind);
    s.plen = 36;
    if ((rc = stream_open(&s, txn, st->_by_author_kind, 0, INT64_MAX)) != 0)
        return db_errno(rc);
    rc = s.valid ? store_get_event(st, txn, s.id, v) : -ENOENT;
    mdb_cursor_close(s.cur);
    return rc;
}

int store_get_latest_copy(struct store *st, const uint8_t pubkey[32], uint32_t kind, struct event_view *v, void **copy)
{
    struct event_view found;
    MDB_txn *txn;
    int rc;

    *copy = NULL;
    if ((rc = store_read_begin(st, &txn)) != 0)
        return rc;
    if ((rc = store_get_latest(st, txn, pubkey, kind, &found)) == 0)
        *copy = event_view_dup(&found, v);
    store_read_end(st, txn);
    return rc;
}
