/* store.c -- the LMDB database: events and their indexes, one writer thread that commits in batches. */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
/*
 * Writes per transaction. Each commit costs an fsync, so larger batches write
 * faster; LMDB keeps the page buffers of its largest transaction for reuse, so the
 * heap grows with the batch (measured: 64 gives 14,600 events/s and 6 MiB, 1024
 * gives 25,000 events/s and 20 MiB).
 */
#define BATCH_MAX 1024

int store_errno(int rc)
{
    switch (rc) {
    case 0: return 0;
    case MDB_NOTFOUND: return -ENOENT;
    case MDB_MAP_FULL: return -ENOSPC;
    default: log_error("database: %s", mdb_strerror(rc)); return rc > 0 ? -rc : -EIO;
    }
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
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
    if ((rc = fn(txn, st->by_author, k, n)) != 0)
        return rc;

    put_be32(k + 32, ev->kind);
    n = 36 + put_suffix(k + 36, ev->created_at, ev->id);
    if ((rc = fn(txn, st->by_author_kind, k, n)) != 0)
        return rc;

    put_be32(k, ev->kind);
    n = 4 + put_suffix(k + 4, ev->created_at, ev->id);
    if ((rc = fn(txn, st->by_kind, k, n)) != 0)
        return rc;

    n = put_suffix(k, ev->created_at, ev->id);
    if ((rc = fn(txn, st->by_time, k, n)) != 0)
        return rc;

    while (event_view_next_tag(ev, &pos, &letter, &value, &vlen)) {
        if (vlen > MAX_TAG_INDEX)
            continue;
        k[0] = (uint8_t)letter;
        k[1] = (uint8_t)vlen;
        memcpy(k + 2, value, vlen);
        n = 2 + vlen + put_suffix(k + 2 + vlen, ev->created_at, ev->id);
        if ((rc = fn(txn, st->by_tag, k, n)) != 0)
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

    if ((rc = mdb_get(txn, st->events, &k, &v)) != 0)
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
        rc = mdb_del(txn, st->events, &k, NULL);
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
    if ((rc = mdb_cursor_open(txn, st->by_author_kind, &cur)) != 0)
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
            if (mdb_get(txn, st->events, &ok, &ov) != 0 || event_view_decode(old_id, ov.mv_data, ov.mv_size, &old_ev))
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

static int apply_put_event(struct store *st, MDB_txn *txn, struct store_write *w)
{
    struct store_event_write *ew = (struct store_event_write *)w;
    MDB_val k = {32, ew->id}, v;
    struct event_view ev;
    enum event_class cls;
    bool superseded;
    int rc;

    if ((rc = mdb_get(txn, st->events, &k, &v)) == 0) {
        ew->result = STORE_DUPLICATE;
        return 0;
    }
    if (rc != MDB_NOTFOUND)
        return store_errno(rc);
    if (event_view_decode(ew->id, ew->rec, ew->rec_len, &ev) != 0)
        return -EINVAL;

    cls = event_kind_class(ev.kind);
    if (cls == EVENT_REPLACEABLE || cls == EVENT_ADDRESSABLE) {
        if ((rc = replace_versions(st, txn, &ev, cls == EVENT_ADDRESSABLE, &superseded)) != 0)
            return store_errno(rc);
        if (superseded) {
            ew->result = STORE_SUPERSEDED;
            return 0;
        }
    }
    v.mv_size = ew->rec_len;
    v.mv_data = ew->rec;
    if ((rc = mdb_put(txn, st->events, &k, &v, 0)) != 0 || (rc = for_each_index_key(st, &ev, index_put, txn)) != 0)
        return store_errno(rc);
    ew->result = STORE_STORED;
    return 0;
}

/* Tells the listeners of a newly stored event before the writer's own callback. */
static void put_event_done(struct store_write *w)
{
    struct store_event_write *ew = (struct store_event_write *)w;
    struct store *st = w->st;

    if (w->status == 0 && ew->result == STORE_STORED) {
        struct event_view ev;
        event_view_decode(ew->id, ew->rec, ew->rec_len, &ev);
        for (size_t i = 0; i < st->nlisteners; i++)
            st->listeners[i].fn(st->listeners[i].data, &ev);
    }
    ew->done(ew);
}

static void on_write_completed(struct inbox_item *item)
{
    struct store_write *w = (struct store_write *)item;
    w->done(w);
}

/* Runs `w` alone in a transaction of its own. */
static void run_alone(struct store *st, struct store_write *w)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);

    if (rc != 0) {
        w->status = store_errno(rc);
        return;
    }
    w->status = w->apply(st, txn, w);
    if (w->status != 0) {
        mdb_txn_abort(txn);
    } else if ((rc = mdb_txn_commit(txn)) != 0) {
        w->status = store_errno(rc);
    } else {
        st->commits++;
    }
}

/*
 * Runs a batch in one transaction, one commit for all. If a write fails, LMDB may
 * have left the transaction unusable, so the batch is aborted and every write is
 * run again in a transaction of its own: a failure costs nobody else their write.
 */
static void run_batch(struct store *st, struct store_write *batch)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    bool failed = rc != 0;

    for (struct store_write *w = batch; w != NULL && !failed; w = w->next)
        failed = (w->status = w->apply(st, txn, w)) != 0;
    if (!failed) {
        if ((rc = mdb_txn_commit(txn)) == 0) {
            st->commits++;
            return;
        }
    } else if (rc == 0) {
        mdb_txn_abort(txn);
    }
    for (struct store_write *w = batch; w != NULL; w = w->next)
        run_alone(st, w);
}

static void *writer_main(void *arg)
{
    struct store *st = arg;

    for (;;) {
        struct store_write *batch, *last, *w;
        size_t n = 0;

        pthread_mutex_lock(&st->lock);
        while (st->head == NULL && !st->stopping)
            pthread_cond_wait(&st->cond, &st->lock);
        if (st->head == NULL) {
            pthread_mutex_unlock(&st->lock);
            return NULL;
        }
        batch = last = st->head;
        while (!batch->solo && last->next != NULL && !last->next->solo && ++n < BATCH_MAX)
            last = last->next;
        st->head = last->next;
        if (st->head == NULL)
            st->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&st->lock);

        run_batch(st, batch);
        for (w = batch; w != NULL; w = w->next) {
            if (w->status == 0 && w->committed != NULL)
                w->committed(w);
        }
        while (batch != NULL) {
            w = batch;
            batch = batch->next;
            inbox_post(st->inbox, &w->item);
        }
    }
}

void store_submit(struct store *st, struct store_write *w)
{
    w->next = NULL;
    w->st = st;
    w->item.cb = on_write_completed;
    pthread_mutex_lock(&st->lock);
    if (st->tail != NULL)
        st->tail->next = w;
    else
        st->head = w;
    st->tail = w;
    pthread_cond_signal(&st->cond);
    pthread_mutex_unlock(&st->lock);
}

void store_put_event(struct store *st, struct store_event_write *ew)
{
    ew->w.apply = apply_put_event;
    ew->w.committed = NULL;
    ew->w.solo = false;
    ew->w.done = put_event_done;
    ew->w.status = 0;
    ew->result = STORE_STORED;
    store_submit(st, &ew->w);
}

void store_add_listener(struct store *st, store_listener_fn fn, void *data)
{
    if (st->nlisteners < STORE_MAX_LISTENERS) {
        st->listeners[st->nlisteners].fn = fn;
        st->listeners[st->nlisteners].data = data;
        st->nlisteners++;
    }
}

int store_open(struct store *st, const char *path, uint64_t max_size_mb, struct inbox *inbox, char *err, size_t errlen)
{
    MDB_txn *txn;
    int rc, dead;

    memset(st, 0, sizeof(*st));
    st->inbox = inbox;
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->cond, NULL);

    if ((rc = mdb_env_create(&st->env)) != 0 || (rc = mdb_env_set_maxdbs(st->env, 32)) != 0 ||
        (rc = mdb_env_set_mapsize(st->env, (size_t)max_size_mb << 20)) != 0)
        goto fail;
    /* NOTLS: the loop keeps one read transaction it resets and renews; NORDAHEAD suits random reads. */
    if ((rc = mdb_env_open(st->env, path, MDB_NOSUBDIR | MDB_NOTLS | MDB_NORDAHEAD, 0644)) != 0)
        goto fail;
    mdb_reader_check(st->env, &dead);

    if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn)) != 0)
        goto fail;
    if ((rc = mdb_dbi_open(txn, "events", MDB_CREATE, &st->events)) != 0 ||
        (rc = mdb_dbi_open(txn, "by_author", MDB_CREATE, &st->by_author)) != 0 ||
        (rc = mdb_dbi_open(txn, "by_author_kind", MDB_CREATE, &st->by_author_kind)) != 0 ||
        (rc = mdb_dbi_open(txn, "by_kind", MDB_CREATE, &st->by_kind)) != 0 ||
        (rc = mdb_dbi_open(txn, "by_time", MDB_CREATE, &st->by_time)) != 0 ||
        (rc = mdb_dbi_open(txn, "by_tag", MDB_CREATE, &st->by_tag)) != 0) {
        mdb_txn_abort(txn);
        goto fail;
    }
    if ((rc = mdb_txn_commit(txn)) != 0)
        goto fail;
    if ((rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &st->rtxn)) != 0)
        goto fail;
    mdb_txn_reset(st->rtxn);
    return 0;

fail:
    snprintf(err, errlen, "cannot open the database %s: %s", path, mdb_strerror(rc));
    if (st->env != NULL)
        mdb_env_close(st->env);
    st->env = NULL;
    return rc > 0 ? -rc : -EIO;
}

int store_open_db(struct store *st, const char *name, unsigned flags, MDB_dbi *dbi)
{
    MDB_txn *txn;
    int rc;

    if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn)) != 0)
        return store_errno(rc);
    if ((rc = mdb_dbi_open(txn, name, flags | MDB_CREATE, dbi)) != 0) {
        mdb_txn_abort(txn);
        return store_errno(rc);
    }
    return store_errno(mdb_txn_commit(txn));
}

int store_start(struct store *st)
{
    int r = pthread_create(&st->writer, NULL, writer_main, st);
    if (r != 0)
        return -r;
    st->writer_running = true;
    return 0;
}

void store_close(struct store *st)
{
    if (st->env == NULL)
        return;
    if (st->writer_running) {
        pthread_mutex_lock(&st->lock);
        st->stopping = true;
        pthread_cond_broadcast(&st->cond);
        pthread_mutex_unlock(&st->lock);
        pthread_join(st->writer, NULL);
        st->writer_running = false;
    }
    if (st->rtxn != NULL)
        mdb_txn_abort(st->rtxn);
    st->rtxn = NULL;
    mdb_env_close(st->env);
    st->env = NULL;
}

int store_read_begin(struct store *st, MDB_txn **txn)
{
    int rc;

    if (st->rtxn_open) {
        log_error("database: nested read transaction");
        return -EBUSY;
    }
    if ((rc = mdb_txn_renew(st->rtxn)) != 0)
        return store_errno(rc);
    st->rtxn_open = true;
    *txn = st->rtxn;
    return 0;
}

void store_read_end(struct store *st, MDB_txn *txn)
{
    (void)txn;
    mdb_txn_reset(st->rtxn);
    st->rtxn_open = false;
}

int store_get_event(struct store *st, MDB_txn *txn, const uint8_t id[32], struct event_view *v)
{
    MDB_val k = {32, (void *)id}, d;
    int rc = mdb_get(txn, st->events, &k, &d);

    if (rc != 0)
        return store_errno(rc);
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
        dbi = st->by_author_kind;
        nstreams = f->nauthors * f->nkinds;
        covered = f->ntags == 0;
    } else if (f->has_authors && f->nauthors <= MAX_STREAMS) {
        dbi = st->by_author;
        nstreams = f->nauthors;
        covered = f->ntags == 0 && !f->has_kinds;
    } else if (f->has_kinds) {
        dbi = st->by_kind;
        nstreams = f->nkinds;
        covered = f->ntags == 0 && !f->has_authors;
    } else if (f->ntags > 0 && tag_indexable(&f->tags[0])) {
        dbi = st->by_tag;
        nstreams = f->tags[0].nvalues;
        covered = f->ntags == 1 && !f->has_authors;
    } else {
        dbi = st->by_time;
        nstreams = 1;
        covered = !f->has_authors && f->ntags == 0;
    }

    if ((streams = calloc(nstreams, sizeof(*streams))) == NULL || (heap = calloc(nstreams, sizeof(*heap))) == NULL)
        abort();
    for (size_t i = 0; i < nstreams; i++) {
        struct stream *s = &streams[i];
        if (dbi == st->by_author_kind) {
            memcpy(s->prefix, f->authors[i / f->nkinds], 32);
            put_be32(s->prefix + 32, f->kinds[i % f->nkinds]);
            s->plen = 36;
        } else if (dbi == st->by_author) {
            memcpy(s->prefix, f->authors[i], 32);
            s->plen = 32;
        } else if (dbi == st->by_kind) {
            put_be32(s->prefix, f->kinds[i]);
            s->plen = 4;
        } else if (dbi == st->by_tag) {
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
    return store_errno(rc);
}

int store_query(struct store *st, const struct filter *filters, size_t nfilters, size_t scan_budget,
                struct store_hit **hits, size_t *nhits)
{
    struct hits h = {0};
    MDB_txn *txn = NULL;
    size_t n = 0;
    int rc;

    if ((rc = store_read_begin(st, &txn)) != 0)
        return rc;
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

int store_get_latest(struct store *st, MDB_txn *txn, const uint8_t pubkey[32], uint32_t kind, struct event_view *v)
{
    struct stream s = {0};
    int rc;

    memcpy(s.prefix, pubkey, 32);
    put_be32(s.prefix + 32, kind);
    s.plen = 36;
    if ((rc = stream_open(&s, txn, st->by_author_kind, 0, INT64_MAX)) != 0)
        return store_errno(rc);
    rc = s.valid ? store_get_event(st, txn, s.id, v) : -ENOENT;
    mdb_cursor_close(s.cur);
    return rc;
}
