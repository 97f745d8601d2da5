/* pictures.c -- the picture index in LMDB and the files it counts. */
#include "pictures.h"

#include <assert.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <h2o/memory.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "hex.h"
#include "keymap.h"
#include "log.h"

/*
 * Files evicted per transaction, so that a large eviction holds other writes up
 * only briefly at a time. A chunk dirties about three pages per file, which
 * LMDB allocates once for its largest transaction (fresh memory is slow to
 * fault in) and writes at commit; at 500 a chunk commits in about the time the
 * file thread takes to remove the chunk before it (measured: 1000 made the
 * first chunk cost a third of a 10,000-file eviction).
 */
#define EVICT_CHUNK 500
/* Last-served times still in memory are written at least this often. */
#define TOUCH_FLUSH_MS 30000
/*
 * Picture writes nobody waits for gather this long, or up to this many, before
 * the file thread takes them: each batch costs two filesystem syncs and a
 * commit however many pictures it holds.
 */
#define PUT_GATHER_MS 50
#define PUT_BATCH_MAX 64

static const char TOTALS_KEY[] = "totals";

/*
 * Databases:
 *   pictures      pubkey -> pic_head + URL
 *   picture_urls  SHA-256 of a URL -> url_rec
 *   picture_files file hash -> file_rec
 *   picture_lru   big-endian served_ms, file hash -> (empty): oldest first
 *   picture_users file hash -> pubkeys whose record names it (sorted duplicates)
 *   picture_meta  "totals" -> struct totals
 */
struct file_rec {
    uint64_t bytes;
    uint64_t served_ms; /* when it was last served (or stored), wall-clock milliseconds */
    uint32_t users;     /* picture records that name it; 0 once they all moved on, until it is evicted */
    uint32_t unused;
};

struct totals {
    uint64_t pictures, files, bytes;
};

struct touch {
    uint8_t hash[32];
    uint64_t ms;
};

/* --- records -------------------------------------------------------------------------------------------------- */

static int pic_decode(const MDB_val *v, struct pic *out)
{
    if (v->mv_size < sizeof(out->h))
        return -EINVAL;
    memcpy(&out->h, v->mv_data, sizeof(out->h));
    if (out->h.url_len > PICTURES_MAX_URL || sizeof(out->h) + out->h.url_len != v->mv_size)
        return -EINVAL;
    memcpy(out->url, (const char *)v->mv_data + sizeof(out->h), out->h.url_len);
    out->url[out->h.url_len] = '\0';
    return 0;
}

static uint8_t *pic_encode(const struct pic *pic, size_t *len)
{
    uint8_t *v;

    *len = sizeof(pic->h) + pic->h.url_len;
    if ((v = malloc(*len)) == NULL)
        abort();
    memcpy(v, &pic->h, sizeof(pic->h));
    memcpy(v + sizeof(pic->h), pic->url, pic->h.url_len);
    return v;
}

static void lru_key(uint8_t k[40], uint64_t ms, const uint8_t hash[32])
{
    uint64_t be = htobe64(ms);

    memcpy(k, &be, 8);
    memcpy(k + 8, hash, 32);
}

/* --- writes ----------------------------------------------------------------------------------------------------- */

/*
 * What every write to the index shares. Each operation has its own struct
 * around it, with its own apply (writer thread) and completion (loop thread).
 * `work` carries it through the file thread when it needs file work before
 * (a picture's file checked) or after (files removed) the commit.
 */
struct px {
    struct db_write w;
    struct work work;
    struct pictures *x;
    uint64_t now_ms;
    struct totals totals; /* after the write */
    uint64_t seq;         /* the order in which writes were applied, so that older totals never replace newer */
    /* removals: files to delete once committed */
    uint8_t (*gone)[32];
    size_t ngone, gone_cap;
    uint64_t removed_files, removed_bytes, removed_pictures;
};

struct px_put {
    struct px b;
    uint8_t pubkey[32];
    uint8_t *value; /* the encoded record, NULL to delete it */
    size_t len;
    bool put_url;
    uint8_t url_key[32];
    struct url_rec url;
    struct blob_ref *bytes;
    bool on_disk;        /* the record's file, checked on the file thread before the write */
    uint64_t disk_bytes; /* ... and its size */
    bool staged;         /* its file is being written from `bytes`, in the batch's blob_batch */
    int write_err;       /* the file was missing and could not be written from `bytes` */
    pictures_done_fn done;
    void *ctx;
    h2o_linklist_t link; /* in the loop's queue, then in its put_batch */
};

/*
 * Picture writes handed to the file thread together: their missing files are
 * written and made durable with one round of syncs (blob_batch), then their
 * records are submitted together, so that the writer commits them at once.
 */
struct put_batch {
    struct work work;
    struct pictures *x;
    h2o_linklist_t puts; /* px_put.link */
};

struct px_touch {
    struct px b;
    struct touch *touches;
    size_t ntouches;
};

/*
 * A chunk of an eviction. The file thread submits the next chunk as soon as
 * this one has committed and removes this one's files while the next commits.
 */
struct px_evict {
    struct px b;
    struct touch *touches; /* written first */
    size_t ntouches;
    uint64_t target; /* bytes to come down to */
    bool more;       /* stopped at EVICT_CHUNK files */
    /* The file thread's: */
    bool submitted; /* queued to the writer */
    bool removed;   /* settled, and its files removed once committed */
    struct px_evict *next;
    /* Set by the loop before it hands the chunk to the file thread: */
    bool go_on;                 /* the next chunk may start */
    struct touch *next_touches; /* last-served times for the next chunk to write first */
    size_t next_ntouches;
};

struct px_purge {
    struct px b;
    enum pictures_scope scope;
    uint8_t pubkey[32];
    pictures_purged_fn purged;
    void *ctx;
    struct pictures_purged result;
};

struct px_forget {
    struct px b;
    uint8_t hash[32];
};

struct disk_file;

struct px_reconcile {
    struct px b;
    time_t cutoff;          /* files written since are not orphans: their records may be on the way */
    struct disk_file *disk; /* listed on the file thread, sorted by hash */
    size_t ndisk;
    bool rebuilt;              /* the index had no totals: counted from the picture records */
    uint64_t dropped, orphans; /* records whose file had gone; files no record named */
};

static int totals_get(struct pictures *x, MDB_txn *txn, struct totals *t, bool *present)
{
    MDB_val k = {sizeof(TOTALS_KEY) - 1, (void *)TOTALS_KEY}, v;
    int rc = mdb_get(txn, x->_meta, &k, &v);

    memset(t, 0, sizeof(*t));
    if (present != NULL)
        *present = rc == 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0 || v.mv_size != sizeof(*t))
        return rc != 0 ? db_errno(rc) : -EIO;
    memcpy(t, v.mv_data, sizeof(*t));
    return 0;
}

static int totals_put(struct pictures *x, MDB_txn *txn, const struct totals *t)
{
    MDB_val k = {sizeof(TOTALS_KEY) - 1, (void *)TOTALS_KEY}, v = {sizeof(*t), (void *)t};
    return db_errno(mdb_put(txn, x->_meta, &k, &v, 0));
}

static int file_get(struct pictures *x, MDB_txn *txn, const uint8_t hash[32], struct file_rec *f)
{
    MDB_val k = {32, (void *)hash}, v;
    int rc = mdb_get(txn, x->_files, &k, &v);

    if (rc != 0)
        return db_errno(rc);
    if (v.mv_size != sizeof(*f))
        return -EIO;
    memcpy(f, v.mv_data, sizeof(*f));
    return 0;
}

static int file_put(struct pictures *x, MDB_txn *txn, const uint8_t hash[32], const struct file_rec *f)
{
    MDB_val k = {32, (void *)hash}, v = {sizeof(*f), (void *)f};
    return db_errno(mdb_put(txn, x->_files, &k, &v, 0));
}

static int lru_put(struct pictures *x, MDB_txn *txn, uint64_t ms, const uint8_t hash[32])
{
    uint8_t key[40];
    MDB_val k = {sizeof(key), key}, v = {0, NULL};

    lru_key(key, ms, hash);
    return db_errno(mdb_put(txn, x->_lru, &k, &v, 0));
}

static int lru_del(struct pictures *x, MDB_txn *txn, uint64_t ms, const uint8_t hash[32])
{
    uint8_t key[40];
    MDB_val k = {sizeof(key), key};
    int rc;

    lru_key(key, ms, hash);
    rc = mdb_del(txn, x->_lru, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : db_errno(rc);
}

static void gone_add(struct px *pw, const uint8_t hash[32])
{
    if (pw->ngone == pw->gone_cap) {
        pw->gone_cap = pw->gone_cap ? 2 * pw->gone_cap : 64;
        if ((pw->gone = realloc(pw->gone, pw->gone_cap * sizeof(*pw->gone))) == NULL)
            abort();
    }
    memcpy(pw->gone[pw->ngone++], hash, 32);
}

/* Removes the file's entries (not the records naming it); the file itself goes after the commit. */
static int file_remove(struct px *pw, MDB_txn *txn, const uint8_t hash[32], const struct file_rec *f)
{
    struct pictures *x = pw->x;
    MDB_val k = {32, (void *)hash};
    int rc;

    if ((rc = mdb_del(txn, x->_files, &k, NULL)) != 0 || (rc = lru_del(x, txn, f->served_ms, hash)) != 0)
        return db_errno(rc);
    if ((rc = mdb_del(txn, x->_users, &k, NULL)) != 0 && rc != MDB_NOTFOUND)
        return db_errno(rc);
    pw->totals.files--;
    pw->totals.bytes -= f->bytes;
    pw->removed_files++;
    pw->removed_bytes += f->bytes;
    gone_add(pw, hash);
    return 0;
}

/* Deletes every picture record that names the file `hash`. */
static int drop_users(struct px *pw, MDB_txn *txn, const uint8_t hash[32])
{
    struct pictures *x = pw->x;
    MDB_cursor *cur;
    MDB_val k = {32, (void *)hash}, v;
    int rc;

    if ((rc = mdb_cursor_open(txn, x->_users, &cur)) != 0)
        return db_errno(rc);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
        MDB_val pk = {32, v.mv_data}, pv;
        struct pic pic;
        if (v.mv_size != 32 || mdb_get(txn, x->_records, &pk, &pv) != 0 || pic_decode(&pv, &pic) != 0 ||
            pic.h.state != PIC_OK || memcmp(pic.h.blob, hash, 32) != 0)
            continue;
        if ((rc = mdb_del(txn, x->_records, &pk, NULL)) != 0)
            break;
        pw->totals.pictures--;
        pw->removed_pictures++;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : db_errno(rc);
}

/*
 * `pubkey` now names the file `hash`. A file new to the index is counted with
 * its size on disk, `disk_bytes`, found on the file thread before the write;
 * NULL when it is not on disk, which fails the write.
 */
static int file_add_user(struct px *pw, MDB_txn *txn, const uint8_t hash[32], const uint8_t pubkey[32],
                         const uint64_t *disk_bytes)
{
    struct pictures *x = pw->x;
    MDB_val k = {32, (void *)hash}, v = {32, (void *)pubkey};
    struct file_rec f;
    int rc = file_get(x, txn, hash, &f);

    if (rc == -ENOENT) {
        if (disk_bytes == NULL)
            return -ENOENT;
        f = (struct file_rec){.bytes = *disk_bytes, .served_ms = pw->now_ms};
        if ((rc = lru_put(x, txn, f.served_ms, hash)) != 0)
            return rc;
        pw->totals.files++;
        pw->totals.bytes += f.bytes;
    } else if (rc != 0) {
        return rc;
    }
    rc = mdb_put(txn, x->_users, &k, &v, MDB_NODUPDATA);
    if (rc == 0)
        f.users++;
    else if (rc != MDB_KEYEXIST)
        return db_errno(rc);
    return file_put(x, txn, hash, &f);
}

/* `pubkey` no longer names `hash`. The file stays, unused, until it is evicted or purged, unless `remove`. */
static int file_drop_user(struct px *pw, MDB_txn *txn, const uint8_t hash[32], const uint8_t pubkey[32], bool remove)
{
    struct pictures *x = pw->x;
    MDB_val k = {32, (void *)hash}, v = {32, (void *)pubkey};
    struct file_rec f;
    int rc = file_get(x, txn, hash, &f);

    if (rc == -ENOENT)
        return 0;
    if (rc != 0)
        return rc;
    rc = mdb_del(txn, x->_users, &k, &v);
    if (rc == 0 && f.users > 0)
        f.users--;
    else if (rc != 0 && rc != MDB_NOTFOUND)
        return db_errno(rc);
    if (remove && f.users == 0)
        return file_remove(pw, txn, hash, &f);
    return file_put(x, txn, hash, &f);
}

/* Replaces the record of `pubkey` (deletes it when `value` is NULL), keeping the files' users in step. */
static int record_set(struct px *pw, MDB_txn *txn, const uint8_t pubkey[32], const uint8_t *value, size_t len,
                      bool remove_unused, const uint64_t *disk_bytes)
{
    struct pictures *x = pw->x;
    MDB_val k = {32, (void *)pubkey}, v;
    struct pic old, now;
    bool old_ok = false, now_ok = false;
    int rc;

    if (mdb_get(txn, x->_records, &k, &v) == 0 && pic_decode(&v, &old) == 0)
        old_ok = old.h.state == PIC_OK;
    if (value != NULL) {
        MDB_val nv = {len, (void *)value};
        if (pic_decode(&nv, &now) != 0)
            return -EINVAL;
        now_ok = now.h.state == PIC_OK;
    }
    if (now_ok && !(old_ok && memcmp(old.h.blob, now.h.blob, 32) == 0)) {
        if ((rc = file_add_user(pw, txn, now.h.blob, pubkey, disk_bytes)) != 0)
            return rc;
    }
    if (old_ok && !(now_ok && memcmp(old.h.blob, now.h.blob, 32) == 0)) {
        if ((rc = file_drop_user(pw, txn, old.h.blob, pubkey, remove_unused)) != 0)
            return rc;
    }
    pw->totals.pictures += (uint64_t)now_ok - (uint64_t)old_ok;
    if (value != NULL) {
        v = (MDB_val){len, (void *)value};
        return db_errno(mdb_put(txn, x->_records, &k, &v, 0));
    }
    rc = mdb_del(txn, x->_records, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : db_errno(rc);
}

/* Moves each touched file to its new place in the recency order. */
static int apply_touches(struct px *pw, MDB_txn *txn, const struct touch *touches, size_t ntouches)
{
    struct pictures *x = pw->x;

    for (size_t i = 0; i < ntouches; i++) {
        const struct touch *t = &touches[i];
        struct file_rec f;
        int rc = file_get(x, txn, t->hash, &f);
        if (rc == -ENOENT || (rc == 0 && f.served_ms >= t->ms))
            continue;
        if (rc != 0 || (rc = lru_del(x, txn, f.served_ms, t->hash)) != 0 || (rc = lru_put(x, txn, t->ms, t->hash)) != 0)
            return rc;
        f.served_ms = t->ms;
        if ((rc = file_put(x, txn, t->hash, &f)) != 0)
            return rc;
    }
    return 0;
}

/*
 * Drops the records that still name the file `hash` through `records`, its
 * users through `users` (positioned on them by the search), and counts them.
 */
static int evict_users(struct px *pw, MDB_cursor *users, MDB_cursor *records, const uint8_t hash[32])
{
    MDB_val k = {32, (void *)hash}, v;
    int rc;

    for (rc = mdb_cursor_get(users, &k, &v, MDB_SET_KEY); rc == 0; rc = mdb_cursor_get(users, &k, &v, MDB_NEXT_DUP)) {
        uint8_t pubkey[32];
        MDB_val pk = {32, pubkey}, pv;
        struct pic_head h;

        if (v.mv_size != 32)
            continue;
        /* Copied: a deletion may move what the users cursor points into. */
        memcpy(pubkey, v.mv_data, 32);
        if ((rc = mdb_cursor_get(records, &pk, &pv, MDB_SET_KEY)) == MDB_NOTFOUND)
            continue;
        if (rc != 0)
            return db_errno(rc);
        if (pv.mv_size < sizeof(h))
            continue;
        memcpy(&h, pv.mv_data, sizeof(h));
        if (h.state != PIC_OK || memcmp(h.blob, hash, 32) != 0)
            continue;
        if ((rc = mdb_cursor_del(records, 0)) != 0)
            return db_errno(rc);
        pw->totals.pictures--;
        pw->removed_pictures++;
    }
    if (rc != MDB_NOTFOUND)
        return db_errno(rc);
    /* Still on the file's key when it had users: every one of them goes at once. */
    k = (MDB_val){32, (void *)hash};
    if ((rc = mdb_cursor_get(users, &k, &v, MDB_GET_CURRENT)) == 0 && k.mv_size == 32 &&
        memcmp(k.mv_data, hash, 32) == 0)
        return db_errno(mdb_cursor_del(users, MDB_NODUPDATA));
    return 0;
}

/*
 * Removes the least recently served files, and the records naming them, down
 * to the target. Each entry is found once, and deleted through the cursor that
 * found it: no second search per table.
 */
static int evict(struct px_evict *pe, MDB_txn *txn)
{
    struct px *pw = &pe->b;
    struct pictures *x = pw->x;
    MDB_cursor *lru = NULL, *files = NULL, *users = NULL, *records = NULL;
    size_t n = 0;
    int rc;

    if ((rc = apply_touches(pw, txn, pe->touches, pe->ntouches)) != 0)
        return rc;
    if ((rc = mdb_cursor_open(txn, x->_lru, &lru)) != 0 || (rc = mdb_cursor_open(txn, x->_files, &files)) != 0 ||
        (rc = mdb_cursor_open(txn, x->_users, &users)) != 0 ||
        (rc = mdb_cursor_open(txn, x->_records, &records)) != 0) {
        rc = db_errno(rc);
        goto out;
    }
    while (pw->totals.bytes > pe->target && n < EVICT_CHUNK) {
        MDB_val k, v;
        uint8_t hash[32];
        struct file_rec f;

        if ((rc = mdb_cursor_get(lru, &k, &v, MDB_FIRST)) != 0 || k.mv_size != 40) {
            rc = rc == MDB_NOTFOUND ? 0 : rc != 0 ? db_errno(rc) : -EIO;
            break;
        }
        memcpy(hash, (uint8_t *)k.mv_data + 8, 32);
        k = (MDB_val){32, hash};
        if ((rc = mdb_cursor_get(files, &k, &v, MDB_SET_KEY)) == MDB_NOTFOUND) {
            /* A recency entry left without its file: it goes alone. */
            if ((rc = db_errno(mdb_cursor_del(lru, 0))) != 0)
                break;
            continue;
        }
        if (rc != 0 || v.mv_size != sizeof(f)) {
            rc = rc != 0 ? db_errno(rc) : -EIO;
            break;
        }
        memcpy(&f, v.mv_data, sizeof(f));
        if ((rc = evict_users(pw, users, records, hash)) != 0 || (rc = db_errno(mdb_cursor_del(files, 0))) != 0 ||
            (rc = db_errno(mdb_cursor_del(lru, 0))) != 0)
            break;
        pw->totals.files--;
        pw->totals.bytes -= f.bytes;
        pw->removed_files++;
        pw->removed_bytes += f.bytes;
        gone_add(pw, hash);
        n++;
    }
    pe->more = rc == 0 && n == EVICT_CHUNK && pw->totals.bytes > pe->target;
out:
    mdb_cursor_close(records);
    mdb_cursor_close(users);
    mdb_cursor_close(files);
    mdb_cursor_close(lru);
    return rc;
}

/* Lists every file in the index for removal, and empties the file databases. */
static int drop_all_files(struct px *pw, MDB_txn *txn)
{
    struct pictures *x = pw->x;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    if ((rc = mdb_cursor_open(txn, x->_files, &cur)) != 0)
        return db_errno(rc);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct file_rec f;
        if (k.mv_size != 32 || v.mv_size != sizeof(f))
            continue;
        memcpy(&f, v.mv_data, sizeof(f));
        gone_add(pw, k.mv_data);
        pw->removed_files++;
        pw->removed_bytes += f.bytes;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return db_errno(rc);
    if ((rc = mdb_drop(txn, x->_files, 0)) != 0 || (rc = mdb_drop(txn, x->_lru, 0)) != 0 ||
        (rc = mdb_drop(txn, x->_users, 0)) != 0 || (rc = mdb_drop(txn, x->_urls, 0)) != 0)
        return db_errno(rc);
    pw->totals.files = pw->totals.bytes = 0;
    return 0;
}

static int purge(struct px_purge *pp, MDB_txn *txn)
{
    struct px *pw = &pp->b;
    struct pictures *x = pw->x;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    pp->result.found = false;
    if (pp->scope == PURGE_PUBKEY) {
        MDB_val pk = {32, pp->pubkey};
        if ((rc = mdb_get(txn, x->_records, &pk, &v)) != 0)
            return rc == MDB_NOTFOUND ? 0 : db_errno(rc);
        pp->result.found = true;
        if ((rc = record_set(pw, txn, pp->pubkey, NULL, 0, true, NULL)) == 0)
            pw->removed_pictures++;
        return rc;
    }
    if ((rc = drop_all_files(pw, txn)) != 0)
        return rc;
    pw->removed_pictures = pw->totals.pictures;
    pw->totals.pictures = 0;
    if (pp->scope == PURGE_ALL)
        return db_errno(mdb_drop(txn, x->_records, 0));
    /* Only the pictures: remembered failures stay. */
    if ((rc = mdb_cursor_open(txn, x->_records, &cur)) != 0)
        return db_errno(rc);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct pic pic;
        if (pic_decode(&v, &pic) == 0 && pic.h.state == PIC_OK && (rc = mdb_cursor_del(cur, 0)) != 0)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : db_errno(rc);
}

/* A file found missing: its entries go, with the records naming it. */
static int forget(struct px_forget *pf, MDB_txn *txn)
{
    struct file_rec f;
    int rc = file_get(pf->b.x, txn, pf->hash, &f);

    if (rc == -ENOENT)
        return 0;
    if (rc != 0 || (rc = drop_users(&pf->b, txn, pf->hash)) != 0)
        return rc;
    return file_remove(&pf->b, txn, pf->hash, &f);
}

/* --- start-up reconciliation ---------------------------------------------------------------------------------- */

struct disk_file {
    uint8_t hash[32];
    uint64_t bytes;
    time_t mtime;
};

static int cmp_disk_file(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

/* Every picture file on disk, sorted by hash. Temporary files were removed by blobs_init(). */
static struct disk_file *list_disk(struct pictures *x, size_t *n)
{
    struct disk_file *v = NULL;
    size_t cap = 0;
    DIR *top = opendir(x->_blobs->dir);
    struct dirent *e;

    *n = 0;
    while (top != NULL && (e = readdir(top)) != NULL) {
        char sub[4096];
        DIR *d;
        struct dirent *f;

        if (strlen(e->d_name) != 2 || e->d_name[0] == '.')
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", x->_blobs->dir, e->d_name);
        if ((d = opendir(sub)) == NULL)
            continue;
        while ((f = readdir(d)) != NULL) {
            struct stat st;
            uint8_t hash[32];
            if (strlen(f->d_name) != 64 || hex_decode(f->d_name, 64, hash, 32) != 0 ||
                fstatat(dirfd(d), f->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode))
                continue;
            if (*n == cap) {
                cap = cap ? 2 * cap : 1024;
                if ((v = realloc(v, cap * sizeof(*v))) == NULL)
                    abort();
            }
            memcpy(v[*n].hash, hash, 32);
            v[*n].bytes = (uint64_t)st.st_size;
            v[*n].mtime = st.st_mtime;
            (*n)++;
        }
        closedir(d);
    }
    if (top != NULL)
        closedir(top);
    if (*n > 1)
        qsort(v, *n, sizeof(*v), cmp_disk_file);
    return v;
}

static const struct disk_file *on_disk(const struct disk_file *v, size_t n, const uint8_t hash[32])
{
    return n == 0 ? NULL : bsearch(hash, v, n, sizeof(*v), cmp_disk_file);
}

/* Counts the files again from the picture records: for an index written before files were counted. */
static int rebuild(struct px_reconcile *pr, MDB_txn *txn)
{
    struct px *pw = &pr->b;
    struct pictures *x = pw->x;
    MDB_cursor *cur;
    MDB_val k, v;
    int c, rc = 0;

    if ((c = mdb_drop(txn, x->_files, 0)) != 0 || (c = mdb_drop(txn, x->_lru, 0)) != 0 ||
        (c = mdb_drop(txn, x->_users, 0)) != 0 || (c = mdb_cursor_open(txn, x->_records, &cur)) != 0)
        return db_errno(c);
    memset(&pw->totals, 0, sizeof(pw->totals));
    for (c = mdb_cursor_get(cur, &k, &v, MDB_FIRST); c == 0 && rc == 0; c = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const struct disk_file *d;
        struct pic pic;
        uint8_t pubkey[32];
        if (k.mv_size != 32 || pic_decode(&v, &pic) != 0 || pic.h.state != PIC_OK)
            continue;
        memcpy(pubkey, k.mv_data, 32);
        if ((d = on_disk(pr->disk, pr->ndisk, pic.h.blob)) == NULL) {
            rc = db_errno(mdb_cursor_del(cur, 0));
            pr->dropped++;
            continue;
        }
        /* Recency starts from when each picture was fetched. */
        pw->now_ms = pic.h.fetched_at * 1000;
        if ((rc = file_add_user(pw, txn, pic.h.blob, pubkey, &d->bytes)) == 0)
            pw->totals.pictures++;
    }
    mdb_cursor_close(cur);
    if (rc == 0 && c != MDB_NOTFOUND)
        rc = db_errno(c);
    return rc;
}

/*
 * Drops the entries of files that are no longer on disk, with the records
 * naming them. The listing came just before, on the file thread, ahead of any
 * picture write that could name a new file.
 */
static int drop_missing(struct px_reconcile *pr, MDB_txn *txn)
{
    struct px *pw = &pr->b;
    struct pictures *x = pw->x;
    MDB_cursor *cur;
    MDB_val k, v;
    uint8_t(*missing)[32] = NULL;
    size_t nmissing = 0, cap = 0;
    int rc;

    if ((rc = mdb_cursor_open(txn, x->_files, &cur)) != 0)
        return db_errno(rc);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 32 || on_disk(pr->disk, pr->ndisk, k.mv_data) != NULL)
            continue;

        if (nmissing == cap) {
            cap = cap ? 2 * cap : 64;
            if ((missing = realloc(missing, cap * sizeof(*missing))) == NULL)
                abort();
        }
        memcpy(missing[nmissing++], k.mv_data, 32);
    }
    mdb_cursor_close(cur);
    rc = rc == MDB_NOTFOUND ? 0 : db_errno(rc);
    for (size_t i = 0; i < nmissing && rc == 0; i++) {
        struct file_rec f;
        uint64_t before = pw->removed_pictures;
        if ((rc = file_get(x, txn, missing[i], &f)) == 0 && (rc = drop_users(pw, txn, missing[i])) == 0)
            rc = file_remove(pw, txn, missing[i], &f);
        pr->dropped += pw->removed_pictures - before;
    }
    free(missing);
    return rc;
}

/* --- writes, one type per operation ------------------------------------------------------------------------------ */

/* Every apply starts from nothing, as it may run twice: the totals as stored, nothing removed yet. */
static int px_begin(struct px *pw, MDB_txn *txn)
{
    pw->ngone = 0;
    pw->removed_files = pw->removed_bytes = pw->removed_pictures = 0;
    return totals_get(pw->x, txn, &pw->totals, NULL);
}

static int px_end(struct px *pw, MDB_txn *txn, int rc)
{
    if (rc == 0 && (rc = totals_put(pw->x, txn, &pw->totals)) == 0)
        pw->seq = ++pw->x->_applied;
    return rc;
}

static int apply_put(MDB_txn *txn, struct db_write *w)
{
    struct px_put *p = H2O_STRUCT_FROM_MEMBER(struct px_put, b.w, w);
    int rc = px_begin(&p->b, txn);

    if (rc == 0)
        rc = record_set(&p->b, txn, p->pubkey, p->value, p->len, false, p->on_disk ? &p->disk_bytes : NULL);
    /* Its file is missing because it could not be written, not because it went. */
    if (rc == -ENOENT && p->write_err != 0)
        rc = p->write_err;
    if (rc == 0 && p->put_url) {
        MDB_val uk = {32, p->url_key}, uv = {sizeof(p->url), &p->url};
        rc = db_errno(mdb_put(txn, p->b.x->_urls, &uk, &uv, 0));
    }
    return px_end(&p->b, txn, rc);
}

static int apply_touch(MDB_txn *txn, struct db_write *w)
{
    struct px_touch *t = H2O_STRUCT_FROM_MEMBER(struct px_touch, b.w, w);
    int rc = px_begin(&t->b, txn);

    return px_end(&t->b, txn, rc == 0 ? apply_touches(&t->b, txn, t->touches, t->ntouches) : rc);
}

static int apply_evict(MDB_txn *txn, struct db_write *w)
{
    struct px_evict *e = H2O_STRUCT_FROM_MEMBER(struct px_evict, b.w, w);
    int rc = px_begin(&e->b, txn);

    return px_end(&e->b, txn, rc == 0 ? evict(e, txn) : rc);
}

static int apply_purge(MDB_txn *txn, struct db_write *w)
{
    struct px_purge *p = H2O_STRUCT_FROM_MEMBER(struct px_purge, b.w, w);
    int rc = px_begin(&p->b, txn);

    return px_end(&p->b, txn, rc == 0 ? purge(p, txn) : rc);
}

static int apply_forget(MDB_txn *txn, struct db_write *w)
{
    struct px_forget *f = H2O_STRUCT_FROM_MEMBER(struct px_forget, b.w, w);
    int rc = px_begin(&f->b, txn);

    return px_end(&f->b, txn, rc == 0 ? forget(f, txn) : rc);
}

static int apply_reconcile(MDB_txn *txn, struct db_write *w)
{
    struct px_reconcile *r = H2O_STRUCT_FROM_MEMBER(struct px_reconcile, b.w, w);
    struct px *pw = &r->b;
    struct pictures *x = pw->x;
    bool present;
    int rc;

    pw->ngone = 0;
    pw->removed_files = pw->removed_bytes = pw->removed_pictures = r->dropped = r->orphans = 0;
    if ((rc = totals_get(x, txn, &pw->totals, &present)) == 0)
        rc = present ? drop_missing(r, txn) : rebuild(r, txn);
    r->rebuilt = !present && (pw->totals.pictures > 0 || r->dropped > 0);
    /* Files no entry names: a crash came between writing one and storing its record. */
    for (size_t i = 0; i < r->ndisk && rc == 0; i++) {
        struct file_rec f;
        if (r->disk[i].mtime < r->cutoff && (rc = file_get(x, txn, r->disk[i].hash, &f)) == -ENOENT) {
            gone_add(pw, r->disk[i].hash);
            r->orphans++;
            rc = 0;
        }
    }
    return px_end(pw, txn, rc);
}

/* --- the file thread ---------------------------------------------------------------------------------------------- */

static void remove_files(struct px *pw)
{
    for (size_t i = 0; i < pw->ngone; i++) {
        int r = blob_remove(pw->x->_blobs, pw->gone[i]);
        if (r != 0 && r != -ENOENT)
            log_warn("pictures: cannot remove a cached file: %s", strerror(-r));
    }
}

/* Waits for an eviction chunk's commit and removes its files, once. */
static void evict_finish(struct pictures *x, struct px_evict *e)
{
    if (x->_evict_committing == e)
        x->_evict_committing = NULL;
    if (e->removed)
        return;
    e->removed = true;
    if (db_wait(x->_db, &e->b.w) == 0)
        remove_files(&e->b);
}

/*
 * Every other file work begins here: the eviction chunk still committing has
 * its files removed first, so that what follows finds the disk as the index
 * will be, and writes a file again if it needs one that went.
 */
static void settle_eviction(struct pictures *x)
{
    if (x->_evict_committing != NULL)
        evict_finish(x, x->_evict_committing);
}

/*
 * A write that removes files: committed first, then its files go. Waiting for
 * the commit here keeps the file thread's order: a later write that needs one
 * of these files checks for it only once it is gone, and writes it again.
 */
static void run_removal(struct work *work)
{
    struct px *pw = H2O_STRUCT_FROM_MEMBER(struct px, work, work);

    settle_eviction(pw->x);
    if (db_submit_wait(pw->x->_db, &pw->w) == 0)
        remove_files(pw);
}

static void run_reconcile(struct work *work)
{
    struct px_reconcile *r = H2O_STRUCT_FROM_MEMBER(struct px_reconcile, b.work, work);

    r->disk = list_disk(r->b.x, &r->ndisk);
    run_removal(work);
}

static struct px_evict *evict_new(struct pictures *x, uint64_t now_ms, uint64_t target);

/*
 * An eviction chunk: the first is submitted here, the others were by the
 * chunk before. Once it has committed, the next one is submitted before this
 * one's files are removed, so that the writer and this thread work at once.
 * A write queued meanwhile waits for the next one's files to go
 * (settle_eviction), so the order of removals and writes holds.
 */
static void run_evict(struct work *work)
{
    struct px_evict *e = H2O_STRUCT_FROM_MEMBER(struct px_evict, b.work, work);
    struct pictures *x = e->b.x;

    if (x->_evict_committing == e)
        x->_evict_committing = NULL;
    if (!e->submitted) {
        settle_eviction(x);
        e->submitted = true;
        db_submit_nowait(x->_db, &e->b.w);
    }
    if (db_wait(x->_db, &e->b.w) == 0 && e->more && e->go_on) {
        struct px_evict *n = evict_new(x, e->b.now_ms, e->target);

        n->touches = e->next_touches;
        n->ntouches = e->next_ntouches;
        e->next_touches = NULL;
        e->next_ntouches = 0;
        n->submitted = true;
        db_submit_nowait(x->_db, &n->b.w);
        e->next = n;
        x->_evict_committing = n;
    }
    evict_finish(x, e);
}

/*
 * A picture's file must be there before its record names it: when it is not
 * (a new picture, or one evicted or purged meanwhile) it joins `bb`, to be
 * written from the bytes. Returns whether it did.
 */
static bool put_check_file(struct px_put *p, struct blob_batch *bb)
{
    struct pictures *x = p->b.x;
    struct pic pic;
    MDB_val v = {p->len, p->value};
    char path[4096];
    struct stat st;

    if (p->value == NULL || pic_decode(&v, &pic) != 0 || pic.h.state != PIC_OK)
        return false;
    blob_path(x->_blobs, pic.h.blob, path, sizeof(path));
    if ((p->on_disk = stat(path, &st) == 0)) {
        p->disk_bytes = (uint64_t)st.st_size;
        return false;
    }
    if (p->bytes == NULL || memcmp(p->bytes->hash, pic.h.blob, 32) != 0)
        return false;
    p->write_err = blob_batch_add(bb, pic.h.blob, p->bytes->data, p->bytes->len);
    return p->staged = p->write_err == 0;
}

/* After the batch's commit: the size of a file it wrote, or the reason it is not there. */
static void put_written(struct px_put *p, int commit_err)
{
    char path[4096];
    struct stat st;

    blob_path(p->b.x->_blobs, p->bytes->hash, path, sizeof(path));
    if ((p->on_disk = stat(path, &st) == 0))
        p->disk_bytes = (uint64_t)st.st_size;
    else
        p->write_err = commit_err != 0 ? commit_err : -errno;
}

/*
 * Writes the batch's missing files, makes them durable, then submits the
 * records: a record is committed only once its file is durable.
 */
static void run_puts(struct work *work)
{
    struct put_batch *pb = H2O_STRUCT_FROM_MEMBER(struct put_batch, work, work);
    struct blob_batch bb;
    h2o_linklist_t *l, *next;
    bool any = false;
    int commit_err = 0;

    settle_eviction(pb->x);
    blob_batch_init(&bb, pb->x->_blobs);
    for (l = pb->puts.next; l != &pb->puts; l = l->next) {
        any = put_check_file(H2O_STRUCT_FROM_MEMBER(struct px_put, link, l), &bb) || any;
    }
    if (any)
        commit_err = blob_batch_commit(&bb);
    blob_batch_free(&bb);
    for (l = pb->puts.next; l != &pb->puts; l = l->next) {
        struct px_put *p = H2O_STRUCT_FROM_MEMBER(struct px_put, link, l);
        if (p->staged)
            put_written(p, commit_err);
    }
    /* A put may be freed on the loop as soon as it is submitted: the next one is found first. */
    for (l = pb->puts.next; l != &pb->puts; l = next) {
        next = l->next;
        db_submit(pb->x->_db, &H2O_STRUCT_FROM_MEMBER(struct px_put, link, l)->b.w);
    }
}

static void on_puts_done(struct work *work);
static void flush_puts(struct pictures *x);

static void on_put_timer(uv_timer_t *t)
{
    struct pictures *x = H2O_STRUCT_FROM_MEMBER(struct pictures, _put_timer, t);

    /* With a batch on the file thread, the writes gathered go once it is back. */
    if (x->_put_batches == 0)
        flush_puts(x);
}

/* Hands the picture writes queued on the loop to the file thread as one batch (or runs it here once stopped). */
static void flush_puts(struct pictures *x)
{
    struct put_batch *pb;

    if (h2o_linklist_is_empty(&x->_puts))
        return;
    if ((pb = calloc(1, sizeof(*pb))) == NULL)
        abort();
    pb->x = x;
    h2o_linklist_init_anchor(&pb->puts);
    h2o_linklist_insert_list(&pb->puts, &x->_puts);
    x->_nputs = 0;
    uv_timer_stop(&x->_put_timer);
    pb->work.run = run_puts;
    pb->work.done = on_puts_done;
    x->_put_batches++;
    if (!x->_file_thread_stopped) {
        workpool_submit(&x->_file_thread, &pb->work);
        return;
    }
    run_puts(&pb->work);
    on_puts_done(&pb->work);
}

/* A batch's records are submitted: the picture writes queued meanwhile go as the next batch. */
static void on_puts_done(struct work *work)
{
    struct put_batch *pb = H2O_STRUCT_FROM_MEMBER(struct put_batch, work, work);
    struct pictures *x = pb->x;

    free(pb);
    if (--x->_put_batches == 0)
        flush_puts(x);
}

/*
 * Hands `pw` to the file thread, or runs its file work here once that thread
 * has stopped. The picture writes queued before it go first, in their order.
 */
static void file_work(struct pictures *x, struct px *pw, void (*run)(struct work *), void (*done)(struct work *))
{
    flush_puts(x);
    pw->work.run = run;
    pw->work.done = done;
    if (!x->_file_thread_stopped) {
        workpool_submit(&x->_file_thread, &pw->work);
        return;
    }
    run(&pw->work);
    if (done != NULL)
        done(&pw->work);
}

/* --- completions, on the loop thread ----------------------------------------------------------------------------- */

static void check_limit(struct pictures *x);
static void take_touches(struct pictures *x, struct touch **touches, size_t *n);

static void px_free(struct px *pw)
{
    free(pw->gone);
}

/* What every committed write tells the loop: the new totals, and which files' bytes to forget. */
static void px_settled(struct px *pw)
{
    struct pictures *x = pw->x;

    if (pw->w.status != 0) {
        if (pw->w.status != -ESHUTDOWN)
            log_error("pictures: cannot update the picture index: %s", strerror(-pw->w.status));
        return;
    }
    /* Writes report out of their commit order (an eviction chunk after the writes that followed it). */
    if (pw->seq > x->_settled) {
        x->_settled = pw->seq;
        x->_stats.pictures = pw->totals.pictures;
        x->_stats.files = pw->totals.files;
        x->_stats.bytes = pw->totals.bytes;
    }
    for (size_t i = 0; i < pw->ngone; i++)
        blobcache_drop(x->_memory, pw->gone[i]);
}

static void on_put_done(struct db_write *w)
{
    struct px_put *p = H2O_STRUCT_FROM_MEMBER(struct px_put, b.w, w);
    struct pictures *x = p->b.x;

    px_settled(&p->b);
    if (p->done != NULL)
        p->done(p->ctx, w->status);
    check_limit(x);
    if (p->bytes != NULL)
        blob_release(p->bytes);
    free(p->value);
    px_free(&p->b);
    free(p);
}

static void on_touch_done(struct db_write *w)
{
    struct px_touch *t = H2O_STRUCT_FROM_MEMBER(struct px_touch, b.w, w);

    px_settled(&t->b);
    if (w->status == 0)
        t->b.x->_stats.recency_flushes++;
    free(t->touches);
    px_free(&t->b);
    free(t);
}

static void on_evicted(struct work *work)
{
    struct px_evict *e = H2O_STRUCT_FROM_MEMBER(struct px_evict, b.work, work);
    struct pictures *x = e->b.x;
    int status = e->b.w.status;

    px_settled(&e->b);
    if (status == 0) {
        x->_stats.recency_flushes += e->ntouches > 0;
        x->_stats.evicted_files += e->b.removed_files;
        x->_stats.evicted_bytes += e->b.removed_bytes;
        x->_stats.evicted_pictures += e->b.removed_pictures;
        x->_run_files += e->b.removed_files;
        x->_run_bytes += e->b.removed_bytes;
    }
    if (e->next != NULL) {
        /* Already committing: its files are to go, and the next chunk takes what was served meanwhile. */
        e->next->go_on = !x->_closing;
        take_touches(x, &e->next->next_touches, &e->next->next_ntouches);
        file_work(x, &e->next->b, run_evict, on_evicted);
    } else {
        x->_stats.evicting = false;
        if (x->_run_files > 0)
            log_info("pictures: evicted %llu file(s), %llu bytes; the cache holds %llu bytes",
                     (unsigned long long)x->_run_files, (unsigned long long)x->_run_bytes,
                     (unsigned long long)x->_stats.bytes);
        x->_run_files = x->_run_bytes = 0;
    }
    free(e->touches);
    free(e->next_touches);
    px_free(&e->b);
    free(e);
}

static void on_purged(struct work *work)
{
    struct px_purge *p = H2O_STRUCT_FROM_MEMBER(struct px_purge, b.work, work);

    px_settled(&p->b);
    p->result.status = p->b.w.status;
    p->result.pictures = p->b.removed_pictures;
    p->result.files = p->b.removed_files;
    p->result.bytes = p->b.removed_bytes;
    if (p->b.w.status == 0)
        p->b.x->_stats.purges++;
    p->purged(p->ctx, &p->result);
    px_free(&p->b);
    free(p);
}

static void on_forgotten(struct work *work)
{
    struct px_forget *f = H2O_STRUCT_FROM_MEMBER(struct px_forget, b.work, work);

    px_settled(&f->b);
    px_free(&f->b);
    free(f);
}

static void on_reconciled(struct work *work)
{
    struct px_reconcile *r = H2O_STRUCT_FROM_MEMBER(struct px_reconcile, b.work, work);
    struct pictures *x = r->b.x;

    px_settled(&r->b);
    if (r->b.w.status == 0) {
        log_info("pictures: %llu cached in %llu file(s), %llu bytes%s; %llu dropped because their file was "
                 "missing, %llu stray file(s) removed",
                 (unsigned long long)r->b.totals.pictures, (unsigned long long)r->b.totals.files,
                 (unsigned long long)r->b.totals.bytes, r->rebuilt ? " (counted from the records)" : "",
                 (unsigned long long)r->dropped, (unsigned long long)r->orphans);
        x->_stats.ready = true;
        check_limit(x);
    }
    free(r->disk);
    px_free(&r->b);
    free(r);
}

/* A zeroed operation of `size` bytes around its `struct px`, at the front. Any thread. */
static void *px_alloc(struct pictures *x, size_t size, int (*apply)(MDB_txn *, struct db_write *), uint64_t now_ms)
{
    struct px *pw = calloc(1, size);

    if (pw == NULL)
        abort();
    pw->x = x;
    pw->now_ms = now_ms;
    pw->w.apply = apply;
    return pw;
}

/* The same, made on the loop thread, now. */
static void *px_new(struct pictures *x, size_t size, int (*apply)(MDB_txn *, struct db_write *))
{
    return px_alloc(x, size, apply, x->_wall_base_ms + (uv_now(x->_loop) - x->_mono_base_ms));
}

/*
 * An eviction chunk. Its commit is not flushed to disk: should a crash lose it
 * after its files went, start-up drops the entries whose file is missing.
 */
static struct px_evict *evict_new(struct pictures *x, uint64_t now_ms, uint64_t target)
{
    struct px_evict *e = px_alloc(x, sizeof(*e), apply_evict, now_ms);

    e->target = target;
    e->b.w.nosync = true;
    return e;
}

/* Hands the last-served times gathered so far to a write. */
static void take_touches(struct pictures *x, struct touch **touches, size_t *n)
{
    *touches = x->_touches;
    *n = x->_ntouches;
    x->_touches = NULL;
    x->_ntouches = x->_touches_cap = 0;
    keymap_free(x->_touched, NULL);
    x->_touched = keymap_new(32);
}

static void flush_touches(struct pictures *x)
{
    struct px_touch *t;

    if (x->_ntouches == 0)
        return;
    t = px_new(x, sizeof(*t), apply_touch);
    t->b.w.done = on_touch_done;
    take_touches(x, &t->touches, &t->ntouches);
    db_submit(x->_db, &t->b.w);
}

/* Starts an eviction with its first chunk, the last-served times gathered so far written first. */
static void evict_start(struct pictures *x)
{
    struct px_evict *e = evict_new(x, x->_wall_base_ms + (uv_now(x->_loop) - x->_mono_base_ms), x->_low_bytes);

    e->go_on = true;
    take_touches(x, &e->touches, &e->ntouches);
    x->_stats.evicting = true;
    file_work(x, &e->b, run_evict, on_evicted);
}

/* Starts an eviction when the files exceed the limit; it goes on, a chunk at a time, down to the low-water mark. */
static void check_limit(struct pictures *x)
{
    if (!x->_stats.ready || x->_stats.evicting || x->_closing || x->_stats.bytes <= x->_limit_bytes)
        return;
    x->_stats.evictions++;
    evict_start(x);
}

/* --- the loop thread's side ------------------------------------------------------------------------------------ */

void pictures_put(struct pictures *x, const uint8_t pubkey[32], const struct pic *pic, const struct url_rec *url,
                  const uint8_t url_key[32], struct blob_ref *bytes, pictures_done_fn done, void *ctx)
{
    struct px_put *p = px_new(x, sizeof(*p), apply_put);

    p->b.w.done = on_put_done;
    memcpy(p->pubkey, pubkey, 32);
    if (pic != NULL)
        p->value = pic_encode(pic, &p->len);
    if (url != NULL) {
        p->put_url = true;
        p->url = *url;
        memcpy(p->url_key, url_key, 32);
    }
    if ((p->bytes = bytes) != NULL)
        blob_retain(bytes);
    p->done = done;
    p->ctx = ctx;
    /* Writes gather for the next batch while one is on the file thread, and for PUT_GATHER_MS at most. */
    h2o_linklist_insert(&x->_puts, &p->link);
    x->_nputs++;
    if (x->_file_thread_stopped || (x->_nputs >= PUT_BATCH_MAX && x->_put_batches == 0))
        flush_puts(x);
    else if (!uv_is_active((uv_handle_t *)&x->_put_timer))
        uv_timer_start(&x->_put_timer, on_put_timer, PUT_GATHER_MS, 0);
}

void pictures_flush(struct pictures *x)
{
    if (x->_put_batches == 0)
        flush_puts(x);
}

void pictures_purge(struct pictures *x, enum pictures_scope scope, const uint8_t pubkey[32], pictures_purged_fn done,
                    void *ctx)
{
    struct px_purge *p = px_new(x, sizeof(*p), apply_purge);

    p->scope = scope;
    if (pubkey != NULL)
        memcpy(p->pubkey, pubkey, 32);
    p->purged = done;
    p->ctx = ctx;
    file_work(x, &p->b, run_removal, on_purged);
}

void pictures_forget_file(struct pictures *x, const uint8_t hash[32])
{
    struct px_forget *f = px_new(x, sizeof(*f), apply_forget);

    memcpy(f->hash, hash, 32);
    file_work(x, &f->b, run_removal, on_forgotten);
}

void pictures_touch(struct pictures *x, const uint8_t hash[32])
{
    uintptr_t slot = (uintptr_t)keymap_get(x->_touched, hash);
    uint64_t ms = x->_wall_base_ms + (uv_now(x->_loop) - x->_mono_base_ms);

    if (slot == 0) {
        if (x->_ntouches == x->_touches_cap) {
            x->_touches_cap = x->_touches_cap ? 2 * x->_touches_cap : 256;
            if ((x->_touches = realloc(x->_touches, x->_touches_cap * sizeof(*x->_touches))) == NULL)
                abort();
        }
        memcpy(x->_touches[x->_ntouches].hash, hash, 32);
        slot = ++x->_ntouches;
        keymap_put(x->_touched, hash, (void *)slot);
    }
    x->_touches[slot - 1].ms = ms;
}

int pictures_get(struct pictures *x, const uint8_t pubkey[32], struct pic *out)
{
    MDB_txn *txn;
    MDB_val k = {32, (void *)pubkey}, v;
    int r;

    if ((r = db_read_begin(x->_db, &txn)) != 0)
        return r;
    if ((r = db_errno(mdb_get(txn, x->_records, &k, &v))) == 0)
        r = pic_decode(&v, out) == 0 ? 0 : -EIO;
    db_read_end(x->_db, txn);
    return r;
}

int pictures_get_url(struct pictures *x, const uint8_t url_key[32], struct url_rec *out)
{
    MDB_txn *txn;
    MDB_val k = {32, (void *)url_key}, v, fk;
    int r;

    if ((r = db_read_begin(x->_db, &txn)) != 0)
        return r;
    if ((r = db_errno(mdb_get(txn, x->_urls, &k, &v))) == 0 && v.mv_size != sizeof(*out))
        r = -EIO;
    if (r == 0) {
        memcpy(out, v.mv_data, sizeof(*out));
        fk = (MDB_val){32, out->blob};
        r = db_errno(mdb_get(txn, x->_files, &fk, &v));
    }
    db_read_end(x->_db, txn);
    return r;
}

void pictures_stats(const struct pictures *x, struct pictures_stats *out)
{
    *out = x->_stats;
}

static void on_timer(uv_timer_t *t)
{
    struct pictures *x = t->data;
    uint64_t now = uv_now(x->_loop);

    if (now >= x->_next_check_ms) {
        x->_next_check_ms = now + x->_check_ms;
        check_limit(x);
    }
    flush_touches(x);
}

int pictures_init(struct pictures *x, uv_loop_t *loop, const struct pictures_options *opt, struct db *db,
                  struct blobs *blobs, struct blobcache *memory, struct inbox *inbox)
{
    int r;

    memset(x, 0, sizeof(*x));
    x->_loop = loop;
    x->_db = db;
    x->_blobs = blobs;
    x->_memory = memory;
    if ((r = db_open_table(db, "pictures", 0, &x->_records)) != 0 ||
        (r = db_open_table(db, "picture_urls", 0, &x->_urls)) != 0 ||
        (r = db_open_table(db, "picture_files", 0, &x->_files)) != 0 ||
        (r = db_open_table(db, "picture_lru", 0, &x->_lru)) != 0 ||
        (r = db_open_table(db, "picture_users", MDB_DUPSORT | MDB_DUPFIXED, &x->_users)) != 0 ||
        (r = db_open_table(db, "picture_meta", 0, &x->_meta)) != 0)
        return r;
    /* One thread, so that file work keeps the order of the writes it goes with. */
    if ((r = workpool_init(&x->_file_thread, 1, inbox)) != 0)
        return r;
    x->_limit_bytes = opt->max_bytes;
    x->_low_bytes = opt->max_bytes / 100 * opt->low_water_percent;
    x->_check_ms = opt->check_interval_ms;
    x->_stats.max_bytes = opt->max_bytes;
    x->_touched = keymap_new(32);
    h2o_linklist_init_anchor(&x->_puts);
    uv_update_time(loop);
    x->_wall_base_ms = (uint64_t)clock_now_ms();
    x->_mono_base_ms = uv_now(loop);
    uv_timer_init(loop, &x->_timer);
    x->_timer.data = x;
    uv_timer_init(loop, &x->_put_timer);
    return 0;
}

void pictures_start(struct pictures *x)
{
    struct px_reconcile *r = px_new(x, sizeof(*r), apply_reconcile);

    r->cutoff = (time_t)(x->_wall_base_ms / 1000);
    file_work(x, &r->b, run_reconcile, on_reconciled);
    x->_next_check_ms = uv_now(x->_loop) + x->_check_ms;
    uv_timer_start(&x->_timer, on_timer, TOUCH_FLUSH_MS, TOUCH_FLUSH_MS);
}

void pictures_shutdown(struct pictures *x)
{
    if (x->_closing)
        return;
    x->_closing = true;
    uv_timer_stop(&x->_timer);
    flush_touches(x);
    flush_puts(x);
    workpool_shutdown(&x->_file_thread);
    x->_file_thread_stopped = true;
}

void pictures_free(struct pictures *x)
{
    workpool_free(&x->_file_thread);
    if (x->_touched != NULL)
        keymap_free(x->_touched, NULL);
    x->_touched = NULL;
    free(x->_touches);
    x->_touches = NULL;
    if (x->_timer.loop != NULL) {
        uv_close((uv_handle_t *)&x->_timer, NULL);
        uv_close((uv_handle_t *)&x->_put_timer, NULL);
    }
}
