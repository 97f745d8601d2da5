/*
 * relaybook.c -- each discovered relay's record: in memory for the loop, written through to LMDB (without a flush
 * of its own: a record lost in a crash only costs a relay one more attempt) so that back-offs survive restarts.
 */
#include "relaybook.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/linklist.h>
#include <h2o/memory.h>
#include <openssl/sha.h>

#include "db.h"
#include "keymap.h"
#include "log.h"

/* The stored form (each change is written as a whole: the writer applies them in order, so the last one stays);  a new
 * layout gets a new version, and records of another are dropped on load. */
#define RECORD_VERSION 1
#define MAX_URL        512

struct stored {
    uint32_t version;
    uint32_t failures_in_row;
    uint64_t successes, failures;
    int64_t last_success, retry_at;
    uint32_t eose_ms;
    char last_error[RELAYBOOK_ERR_LEN];
};

struct entry {
    struct relaybook *rb;
    char *url;
    struct relaybook_record rec;
    h2o_linklist_t link; /* in rb->recent, least recently touched first */
};

struct relaybook {
    struct db *db;
    MDB_dbi dbi;
    size_t max;
    struct keymap *map; /* SHA-256 of the URL -> entry */
    h2o_linklist_t recent;
};

struct rb_write {
    struct db_write w;
    struct relaybook *rb;
    char url[MAX_URL];
    size_t url_len;
    struct stored value;
    bool del;
};

static void url_key(const char *url, uint8_t key[32])
{
    SHA256((const unsigned char *)url, strlen(url), key);
}

static struct entry *find(const struct relaybook *rb, const char *url)
{
    uint8_t key[32];

    url_key(url, key);
    return keymap_get(rb->map, key);
}

static int apply(MDB_txn *txn, struct db_write *w)
{
    struct rb_write *rw = H2O_STRUCT_FROM_MEMBER(struct rb_write, w, w);
    MDB_val k = {rw->url_len, rw->url}, v = {sizeof(rw->value), &rw->value};
    int rc;

    if (rw->del) {
        rc = mdb_del(txn, rw->rb->dbi, &k, NULL);
        return rc == MDB_NOTFOUND ? 0 : db_errno(rc);
    }
    return db_errno(mdb_put(txn, rw->rb->dbi, &k, &v, 0));
}

static void on_written(struct db_write *w)
{
    struct rb_write *rw = H2O_STRUCT_FROM_MEMBER(struct rb_write, w, w);

    if (w->status != 0 && w->status != -ESHUTDOWN)
        log_warn("relays: cannot store the record of %s: %s", rw->url, strerror(-w->status));
    free(rw);
}

static void submit(struct relaybook *rb, struct entry *e, const char *url, bool del)
{
    struct rb_write *rw;

    if ((rw = calloc(1, sizeof(*rw))) == NULL)
        abort();
    rw->rb = rb;
    rw->url_len = strlen(url);
    memcpy(rw->url, url, rw->url_len);
    rw->del = del;
    if (e != NULL) {
        const struct relaybook_record *r = &e->rec;
        rw->value = (struct stored){RECORD_VERSION,  r->failures_in_row, r->successes, r->failures,
                                    r->last_success, r->retry_at,        r->eose_ms,   ""};
        memcpy(rw->value.last_error, r->last_error, sizeof(rw->value.last_error));
    }
    rw->w.apply = apply;
    rw->w.done = on_written;
    rw->w.nosync = true;
    db_submit(rb->db, &rw->w);
}

static void forget(struct relaybook *rb, struct entry *e)
{
    uint8_t key[32];

    url_key(e->url, key);
    keymap_del(rb->map, key);
    h2o_linklist_unlink(&e->link);
    submit(rb, NULL, e->url, true);
    free(e->url);
    free(e);
}

/* The entry of `url`, made when there is none (the least recently touched going when the book is full). */
static struct entry *touch(struct relaybook *rb, const char *url)
{
    struct entry *e = find(rb, url);
    uint8_t key[32];

    if (e != NULL) {
        h2o_linklist_unlink(&e->link);
        h2o_linklist_insert(&rb->recent, &e->link);
        return e;
    }
    if (strlen(url) >= MAX_URL)
        return NULL;
    if (keymap_count(rb->map) >= rb->max && !h2o_linklist_is_empty(&rb->recent)) {
        forget(rb, H2O_STRUCT_FROM_MEMBER(struct entry, link, rb->recent.next));
    }
    if ((e = calloc(1, sizeof(*e))) == NULL || (e->url = strdup(url)) == NULL)
        abort();
    e->rb = rb;
    url_key(url, key);
    keymap_put(rb->map, key, e);
    h2o_linklist_insert(&rb->recent, &e->link);
    return e;
}

int relaybook_init(struct relaybook **out, struct db *db, const struct relaybook_options *o)
{
    struct relaybook *rb = calloc(1, sizeof(*rb));
    int rc;

    if (rb == NULL)
        abort();
    rb->db = db;
    rb->max = o->max_relays > 0 ? o->max_relays : 1;
    if ((rc = db_open_table(db, "relays", 0, &rb->dbi)) != 0) {
        free(rb);
        return rc;
    }
    rb->map = keymap_new(32);
    h2o_linklist_init_anchor(&rb->recent);
    *out = rb;
    return 0;
}

static int decode(const MDB_val *k, const MDB_val *v, struct stored *s)
{
    if (k->mv_size == 0 || k->mv_size >= MAX_URL || v->mv_size != sizeof(*s))
        return -EINVAL;
    memcpy(s, v->mv_data, sizeof(*s));
    if (s->version != RECORD_VERSION || memchr(s->last_error, '\0', sizeof(s->last_error)) == NULL ||
        memchr(k->mv_data, '\0', k->mv_size) != NULL)
        return -EINVAL;
    return 0;
}

int relaybook_load(struct relaybook *rb)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    if ((rc = db_read_begin(rb->db, &txn)) != 0)
        return rc;
    if ((rc = mdb_cursor_open(txn, rb->dbi, &cur)) != 0) {
        db_read_end(rb->db, txn);
        return db_errno(rc);
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && keymap_count(rb->map) < rb->max;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct stored s;
        char url[MAX_URL];
        struct entry *e;

        if (decode(&k, &v, &s) != 0)
            continue;
        memcpy(url, k.mv_data, k.mv_size);
        url[k.mv_size] = '\0';
        if ((e = touch(rb, url)) == NULL)
            continue;
        e->rec = (struct relaybook_record){s.successes, s.failures, s.failures_in_row, s.eose_ms, s.last_success,
                                           s.retry_at,  ""};
        memcpy(e->rec.last_error, s.last_error, sizeof(e->rec.last_error));
    }
    mdb_cursor_close(cur);
    db_read_end(rb->db, txn);
    return 0;
}

bool relaybook_backing_off(const struct relaybook *rb, const char *url, int64_t now)
{
    const struct entry *e = find(rb, url);
    return e != NULL && e->rec.retry_at > now;
}

bool relaybook_get(const struct relaybook *rb, const char *url, struct relaybook_record *out)
{
    const struct entry *e = find(rb, url);

    if (e == NULL) {
        memset(out, 0, sizeof(*out));
        return false;
    }
    *out = e->rec;
    return true;
}

void relaybook_success(struct relaybook *rb, const char *url, uint32_t eose_ms, int64_t now)
{
    struct entry *e = touch(rb, url);

    if (e == NULL)
        return;
    /* An average over about the last eight answers: a relay that got slow shows it soon. */
    e->rec.eose_ms = e->rec.successes == 0 ? eose_ms : (uint32_t)(((uint64_t)e->rec.eose_ms * 7 + eose_ms) / 8);
    e->rec.successes++;
    e->rec.failures_in_row = 0;
    e->rec.retry_at = 0;
    e->rec.last_success = now;
    submit(rb, e, e->url, false);
}

void relaybook_failure(struct relaybook *rb, const char *url, const char *why, int64_t now)
{
    struct entry *e = touch(rb, url);
    unsigned shift;
    int64_t wait;

    if (e == NULL)
        return;
    e->rec.failures++;
    shift = e->rec.failures_in_row < 16 ? e->rec.failures_in_row : 16;
    e->rec.failures_in_row++;
    wait = (int64_t)RELAYBOOK_BACKOFF_BASE_S << shift;
    e->rec.retry_at = now + (wait < RELAYBOOK_BACKOFF_MAX_S ? wait : RELAYBOOK_BACKOFF_MAX_S);
    snprintf(e->rec.last_error, sizeof(e->rec.last_error), "%s", why);
    log_info("relays: %s: %s; skipped for %lld s", url, why, (long long)(e->rec.retry_at - now));
    submit(rb, e, e->url, false);
}

/* Lower is better: the share of failures (an unknown relay counts as half failing), then a tenth per second to EOSE. */
static double score(const struct relaybook *rb, const char *url)
{
    const struct entry *e = find(rb, url);
    double tries;

    if (e == NULL)
        return 0.5;
    tries = (double)(e->rec.successes + e->rec.failures);
    return ((double)e->rec.failures + 0.5) / (tries + 1) + (double)e->rec.eose_ms / 10000.0;
}

void relaybook_rank(const struct relaybook *rb, const char **urls, size_t n)
{
    double scores[n > 0 ? n : 1];

    for (size_t i = 0; i < n; i++)
        scores[i] = score(rb, urls[i]);
    /* Insertion sort: a pubkey names a handful of relays; equal scores keep the list's order. */
    for (size_t i = 1; i < n; i++) {
        const char *u = urls[i];
        double s = scores[i];
        size_t j = i;
        for (; j > 0 && scores[j - 1] > s; j--) {
            urls[j] = urls[j - 1];
            scores[j] = scores[j - 1];
        }
        urls[j] = u;
        scores[j] = s;
    }
}

void relaybook_stats(const struct relaybook *rb, int64_t now, struct relaybook_stats *out)
{
    out->known = keymap_count(rb->map);
    out->backing_off = 0;
    for (h2o_linklist_t *l = rb->recent.next; l != &rb->recent; l = l->next)
        out->backing_off += H2O_STRUCT_FROM_MEMBER(struct entry, link, l)->rec.retry_at > now;
}

static void free_entry(void *p)
{
    struct entry *e = p;
    free(e->url);
    free(e);
}

void relaybook_free(struct relaybook *rb)
{
    if (rb == NULL)
        return;
    keymap_free(rb->map, free_entry);
    free(rb);
}

static int check_entry(const MDB_val *key, const MDB_val *value, char *why, size_t whylen)
{
    struct stored s;

    if (decode(key, value, &s) != 0) {
        snprintf(why, whylen, "not a relay record of version %d (%zu-byte key, %zu-byte value)", RECORD_VERSION,
                 key->mv_size, value->mv_size);
        return -EINVAL;
    }
    return 0;
}

const struct db_table_check *relaybook_table_checks(size_t *n)
{
    static const struct db_table_check checks[] = {{"relays", check_entry}};

    *n = 1;
    return checks;
}
