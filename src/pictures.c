/* pictures.c -- the picture index in LMDB and the files it counts. */
#include "pictures.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "hex.h"
#include "keymap.h"
#include "log.h"

/* Files evicted per transaction, so that a large eviction holds other writes up only briefly at a time. */
#define EVICT_CHUNK 1000
/* Last-served times still in memory are written at least this often. */
#define TOUCH_FLUSH_MS 30000

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
    for (int i = 0; i < 8; i++)
        k[i] = (uint8_t)(ms >> (56 - 8 * i));
    memcpy(k + 8, hash, 32);
}

static uint64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* --- writes ----------------------------------------------------------------------------------------------------- */

enum px_op { PX_PUT, PX_TOUCH, PX_EVICT, PX_PURGE, PX_FORGET, PX_RECONCILE };

/* One write to the index. Those that remove files are solo, so files go before any later write runs. */
struct px_write {
    struct store_write w;
    struct pictures *x;
    enum px_op op;
    uint64_t now_ms;
    struct totals totals; /* after the write */

    /* PX_PUT, PX_PURGE of a pubkey; PX_FORGET: the file's hash */
    uint8_t pubkey[32];
    uint8_t *value; /* the encoded record, NULL to delete it */
    size_t len;
    bool put_url;
    uint8_t url_key[32];
    struct url_rec url;
    struct blob_ref *bytes;
    pictures_done_fn done;
    void *ctx;

    /* PX_TOUCH, PX_EVICT */
    struct touch *touches;
    size_t ntouches;
    uint64_t target; /* PX_EVICT: bytes to come down to */
    bool more;       /* PX_EVICT: stopped at EVICT_CHUNK files */

    /* PX_PURGE */
    enum pictures_scope scope;
    pictures_purged_fn purged;
    struct pictures_purged result;

    /* PX_RECONCILE */
    time_t cutoff;             /* files written since are not orphans: their records may be on the way */
    bool rebuilt;              /* the index had no totals: counted from the picture records */
    uint64_t dropped, orphans; /* records whose file had gone; files no record named */

    /* removals: files to delete once committed */
    uint8_t (*gone)[32];
    size_t ngone, gone_cap;
    uint64_t removed_files, removed_bytes, removed_pictures;
};

static int totals_get(struct pictures *x, MDB_txn *txn, struct totals *t, bool *present)
{
    MDB_val k = {sizeof(TOTALS_KEY) - 1, (void *)TOTALS_KEY}, v;
    int rc = mdb_get(txn, x->meta, &k, &v);

    memset(t, 0, sizeof(*t));
    if (present != NULL)
        *present = rc == 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0 || v.mv_size != sizeof(*t))
        return rc != 0 ? store_errno(rc) : -EIO;
    memcpy(t, v.mv_data, sizeof(*t));
    return 0;
}

static int totals_put(struct pictures *x, MDB_txn *txn, const struct totals *t)
{
    MDB_val k = {sizeof(TOTALS_KEY) - 1, (void *)TOTALS_KEY}, v = {sizeof(*t), (void *)t};
    return store_errno(mdb_put(txn, x->meta, &k, &v, 0));
}

static int file_get(struct pictures *x, MDB_txn *txn, const uint8_t hash[32], struct file_rec *f)
{
    MDB_val k = {32, (void *)hash}, v;
    int rc = mdb_get(txn, x->files, &k, &v);

    if (rc != 0)
        return store_errno(rc);
    if (v.mv_size != sizeof(*f))
        return -EIO;
    memcpy(f, v.mv_data, sizeof(*f));
    return 0;
}

static int file_put(struct pictures *x, MDB_txn *txn, const uint8_t hash[32], const struct file_rec *f)
{
    MDB_val k = {32, (void *)hash}, v = {sizeof(*f), (void *)f};
    return store_errno(mdb_put(txn, x->files, &k, &v, 0));
}

static int lru_put(struct pictures *x, MDB_txn *txn, uint64_t ms, const uint8_t hash[32])
{
    uint8_t key[40];
    MDB_val k = {sizeof(key), key}, v = {0, NULL};

    lru_key(key, ms, hash);
    return store_errno(mdb_put(txn, x->lru, &k, &v, 0));
}

static int lru_del(struct pictures *x, MDB_txn *txn, uint64_t ms, const uint8_t hash[32])
{
    uint8_t key[40];
    MDB_val k = {sizeof(key), key};
    int rc;

    lru_key(key, ms, hash);
    rc = mdb_del(txn, x->lru, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : store_errno(rc);
}

static void gone_add(struct px_write *pw, const uint8_t hash[32])
{
    if (pw->ngone == pw->gone_cap) {
        pw->gone_cap = pw->gone_cap ? 2 * pw->gone_cap : 64;
        if ((pw->gone = realloc(pw->gone, pw->gone_cap * sizeof(*pw->gone))) == NULL)
            abort();
    }
    memcpy(pw->gone[pw->ngone++], hash, 32);
}

/* Removes the file's entries (not the records naming it); the file itself goes after the commit. */
static int file_remove(struct px_write *pw, MDB_txn *txn, const uint8_t hash[32], const struct file_rec *f)
{
    struct pictures *x = pw->x;
    MDB_val k = {32, (void *)hash};
    int rc;

    if ((rc = mdb_del(txn, x->files, &k, NULL)) != 0 || (rc = lru_del(x, txn, f->served_ms, hash)) != 0)
        return store_errno(rc);
    if ((rc = mdb_del(txn, x->users, &k, NULL)) != 0 && rc != MDB_NOTFOUND)
        return store_errno(rc);
    pw->totals.files--;
    pw->totals.bytes -= f->bytes;
    pw->removed_files++;
    pw->removed_bytes += f->bytes;
    gone_add(pw, hash);
    return 0;
}

/* Deletes every picture record that names the file `hash`. */
static int drop_users(struct px_write *pw, MDB_txn *txn, const uint8_t hash[32])
{
    struct pictures *x = pw->x;
    MDB_cursor *cur;
    MDB_val k = {32, (void *)hash}, v;
    int rc;

    if ((rc = mdb_cursor_open(txn, x->users, &cur)) != 0)
        return store_errno(rc);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
        MDB_val pk = {32, v.mv_data}, pv;
        struct pic pic;
        if (v.mv_size != 32 || mdb_get(txn, x->records, &pk, &pv) != 0 || pic_decode(&pv, &pic) != 0 ||
            pic.h.state != PIC_OK || memcmp(pic.h.blob, hash, 32) != 0)
            continue;
        if ((rc = mdb_del(txn, x->records, &pk, NULL)) != 0)
            break;
        pw->totals.pictures--;
        pw->removed_pictures++;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : store_errno(rc);
}

/*
 * `pubkey` now names the file `hash`. A file new to the index is counted with
 * its size on disk; when it is not on disk (removed since it was written), it
 * is written again from the write's bytes if it has them.
 */
static int file_add_user(struct px_write *pw, MDB_txn *txn, const uint8_t hash[32], const uint8_t pubkey[32])
{
    struct pictures *x = pw->x;
    MDB_val k = {32, (void *)hash}, v = {32, (void *)pubkey};
    struct file_rec f;
    int rc = file_get(x, txn, hash, &f);

    if (rc == -ENOENT) {
        char path[4096];
        struct stat st;

        blob_path(x->blobs, hash, path, sizeof(path));
        if (stat(path, &st) != 0) {
            if (pw->bytes == NULL || memcmp(pw->bytes->hash, hash, 32) != 0)
                return -ENOENT;
            if ((rc = blob_write(x->blobs, hash, pw->bytes->data, pw->bytes->len)) != 0 || stat(path, &st) != 0)
                return rc != 0 ? rc : -EIO;
        }
        f = (struct file_rec){.bytes = (uint64_t)st.st_size, .served_ms = pw->now_ms};
        if ((rc = lru_put(x, txn, f.served_ms, hash)) != 0)
            return rc;
        pw->totals.files++;
        pw->totals.bytes += f.bytes;
    } else if (rc != 0) {
        return rc;
    }
    rc = mdb_put(txn, x->users, &k, &v, MDB_NODUPDATA);
    if (rc == 0)
        f.users++;
    else if (rc != MDB_KEYEXIST)
        return store_errno(rc);
    return file_put(x, txn, hash, &f);
}

/* `pubkey` no longer names `hash`. The file stays, unused, until it is evicted or purged, unless `remove`. */
static int file_drop_user(struct px_write *pw, MDB_txn *txn, const uint8_t hash[32], const uint8_t pubkey[32],
                          bool remove)
{
    struct pictures *x = pw->x;
    MDB_val k = {32, (void *)hash}, v = {32, (void *)pubkey};
    struct file_rec f;
    int rc = file_get(x, txn, hash, &f);

    if (rc == -ENOENT)
        return 0;
    if (rc != 0)
        return rc;
    rc = mdb_del(txn, x->users, &k, &v);
    if (rc == 0 && f.users > 0)
        f.users--;
    else if (rc != 0 && rc != MDB_NOTFOUND)
        return store_errno(rc);
    if (remove && f.users == 0)
        return file_remove(pw, txn, hash, &f);
    return file_put(x, txn, hash, &f);
}

/* Replaces the record of `pubkey` (deletes it when `value` is NULL), keeping the files' users in step. */
static int record_set(struct px_write *pw, MDB_txn *txn, const uint8_t pubkey[32], const uint8_t *value, size_t len,
                      bool remove_unused)
{
    struct pictures *x = pw->x;
    MDB_val k = {32, (void *)pubkey}, v;
    struct pic old, now;
    bool old_ok = false, now_ok = false;
    int rc;

    if (mdb_get(txn, x->records, &k, &v) == 0 && pic_decode(&v, &old) == 0)
        old_ok = old.h.state == PIC_OK;
    if (value != NULL) {
        MDB_val nv = {len, (void *)value};
        if (pic_decode(&nv, &now) != 0)
            return -EINVAL;
        now_ok = now.h.state == PIC_OK;
    }
    if (now_ok && !(old_ok && memcmp(old.h.blob, now.h.blob, 32) == 0)) {
        if ((rc = file_add_user(pw, txn, now.h.blob, pubkey)) != 0)
            return rc;
    }
    if (old_ok && !(now_ok && memcmp(old.h.blob, now.h.blob, 32) == 0)) {
        if ((rc = file_drop_user(pw, txn, old.h.blob, pubkey, remove_unused)) != 0)
            return rc;
    }
    pw->totals.pictures += (uint64_t)now_ok - (uint64_t)old_ok;
    if (value != NULL) {
        v = (MDB_val){len, (void *)value};
        return store_errno(mdb_put(txn, x->records, &k, &v, 0));
    }
    rc = mdb_del(txn, x->records, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : store_errno(rc);
}

/* Moves each touched file to its new place in the recency order. */
static int apply_touches(struct px_write *pw, MDB_txn *txn)
{
    struct pictures *x = pw->x;

    for (size_t i = 0; i < pw->ntouches; i++) {
        const struct touch *t = &pw->touches[i];
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

/* Removes the least recently served files, and the records naming them, down to the target. */
static int apply_evict(struct px_write *pw, MDB_txn *txn)
{
    struct pictures *x = pw->x;
    MDB_cursor *cur;
    size_t n = 0;
    int rc;

    if ((rc = apply_touches(pw, txn)) != 0)
        return rc;
    if ((rc = mdb_cursor_open(txn, x->lru, &cur)) != 0)
        return store_errno(rc);
    while (rc == 0 && pw->totals.bytes > pw->target && n < EVICT_CHUNK) {
        MDB_val k, v;
        uint8_t hash[32];
        struct file_rec f;

        /* The first entry again each time: the removals below move the cursor's ground. */
        if ((rc = store_errno(mdb_cursor_get(cur, &k, &v, MDB_FIRST))) != 0)
            break;
        if (k.mv_size != 40) {
            rc = -EIO;
            break;
        }
        memcpy(hash, (uint8_t *)k.mv_data + 8, 32);
        if ((rc = file_get(x, txn, hash, &f)) == -ENOENT) {
            rc = store_errno(mdb_cursor_del(cur, 0));
            continue;
        }
        if (rc == 0 && (rc = drop_users(pw, txn, hash)) == 0 && (rc = file_remove(pw, txn, hash, &f)) == 0)
            n++;
    }
    mdb_cursor_close(cur);
    pw->more = n == EVICT_CHUNK && pw->totals.bytes > pw->target;
    return rc == -ENOENT ? 0 : rc;
}

/* Lists every file in the index for removal, and empties the file databases. */
static int drop_all_files(struct px_write *pw, MDB_txn *txn)
{
    struct pictures *x = pw->x;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    if ((rc = mdb_cursor_open(txn, x->files, &cur)) != 0)
        return store_errno(rc);
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
        return store_errno(rc);
    if ((rc = mdb_drop(txn, x->files, 0)) != 0 || (rc = mdb_drop(txn, x->lru, 0)) != 0 ||
        (rc = mdb_drop(txn, x->users, 0)) != 0 || (rc = mdb_drop(txn, x->urls, 0)) != 0)
        return store_errno(rc);
    pw->totals.files = pw->totals.bytes = 0;
    return 0;
}

static int apply_purge(struct px_write *pw, MDB_txn *txn)
{
    struct pictures *x = pw->x;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    pw->result.found = false;
    if (pw->scope == PURGE_PUBKEY) {
        MDB_val pk = {32, pw->pubkey};
        if ((rc = mdb_get(txn, x->records, &pk, &v)) != 0)
            return rc == MDB_NOTFOUND ? 0 : store_errno(rc);
        pw->result.found = true;
        if ((rc = record_set(pw, txn, pw->pubkey, NULL, 0, true)) == 0)
            pw->removed_pictures++;
        return rc;
    }
    if ((rc = drop_all_files(pw, txn)) != 0)
        return rc;
    pw->removed_pictures = pw->totals.pictures;
    pw->totals.pictures = 0;
    if (pw->scope == PURGE_ALL)
        return store_errno(mdb_drop(txn, x->records, 0));
    /* Only the pictures: remembered failures stay. */
    if ((rc = mdb_cursor_open(txn, x->records, &cur)) != 0)
        return store_errno(rc);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct pic pic;
        if (pic_decode(&v, &pic) == 0 && pic.h.state == PIC_OK && (rc = mdb_cursor_del(cur, 0)) != 0)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : store_errno(rc);
}

/* A file found missing: its entries go, with the records naming it. */
static int apply_forget(struct px_write *pw, MDB_txn *txn)
{
    struct file_rec f;
    int rc = file_get(pw->x, txn, pw->pubkey, &f);

    if (rc == -ENOENT)
        return 0;
    if (rc != 0 || (rc = drop_users(pw, txn, pw->pubkey)) != 0)
        return rc;
    return file_remove(pw, txn, pw->pubkey, &f);
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
    DIR *top = opendir(x->blobs->dir);
    struct dirent *e;

    *n = 0;
    while (top != NULL && (e = readdir(top)) != NULL) {
        char sub[4096];
        DIR *d;
        struct dirent *f;

        if (strlen(e->d_name) != 2 || e->d_name[0] == '.')
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", x->blobs->dir, e->d_name);
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
static int rebuild(struct px_write *pw, MDB_txn *txn, const struct disk_file *disk, size_t n)
{
    struct pictures *x = pw->x;
    MDB_cursor *cur;
    MDB_val k, v;
    int c, rc = 0;

    if ((c = mdb_drop(txn, x->files, 0)) != 0 || (c = mdb_drop(txn, x->lru, 0)) != 0 ||
        (c = mdb_drop(txn, x->users, 0)) != 0 || (c = mdb_cursor_open(txn, x->records, &cur)) != 0)
        return store_errno(c);
    memset(&pw->totals, 0, sizeof(pw->totals));
    for (c = mdb_cursor_get(cur, &k, &v, MDB_FIRST); c == 0 && rc == 0; c = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct pic pic;
        uint8_t pubkey[32];
        if (k.mv_size != 32 || pic_decode(&v, &pic) != 0 || pic.h.state != PIC_OK)
            continue;
        memcpy(pubkey, k.mv_data, 32);
        if (on_disk(disk, n, pic.h.blob) == NULL) {
            rc = store_errno(mdb_cursor_del(cur, 0));
            pw->dropped++;
            continue;
        }
        /* Recency starts from when each picture was fetched. */
        pw->now_ms = pic.h.fetched_at * 1000;
        if ((rc = file_add_user(pw, txn, pic.h.blob, pubkey)) == 0)
            pw->totals.pictures++;
    }
    mdb_cursor_close(cur);
    if (rc == 0 && c != MDB_NOTFOUND)
        rc = store_errno(c);
    return rc;
}

/* Drops the entries of files that are no longer on disk, with the records naming them. */
static int drop_missing(struct px_write *pw, MDB_txn *txn, const struct disk_file *disk, size_t n)
{
    struct pictures *x = pw->x;
    MDB_cursor *cur;
    MDB_val k, v;
    uint8_t(*missing)[32] = NULL;
    size_t nmissing = 0, cap = 0;
    int rc;

    if ((rc = mdb_cursor_open(txn, x->files, &cur)) != 0)
        return store_errno(rc);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 32 || on_disk(disk, n, k.mv_data) != NULL)
            continue;
        if (nmissing == cap) {
            cap = cap ? 2 * cap : 64;
            if ((missing = realloc(missing, cap * sizeof(*missing))) == NULL)
                abort();
        }
        memcpy(missing[nmissing++], k.mv_data, 32);
    }
    mdb_cursor_close(cur);
    rc = rc == MDB_NOTFOUND ? 0 : store_errno(rc);
    for (size_t i = 0; i < nmissing && rc == 0; i++) {
        struct file_rec f;
        uint64_t before = pw->removed_pictures;
        if ((rc = file_get(x, txn, missing[i], &f)) == 0 && (rc = drop_users(pw, txn, missing[i])) == 0)
            rc = file_remove(pw, txn, missing[i], &f);
        pw->dropped += pw->removed_pictures - before;
    }
    free(missing);
    return rc;
}

static int apply_reconcile(struct px_write *pw, MDB_txn *txn)
{
    struct pictures *x = pw->x;
    size_t n;
    struct disk_file *disk = list_disk(x, &n);
    bool present;
    int rc = totals_get(x, txn, &pw->totals, &present);

    if (rc == 0)
        rc = present ? drop_missing(pw, txn, disk, n) : rebuild(pw, txn, disk, n);
    pw->rebuilt = !present && (pw->totals.pictures > 0 || pw->dropped > 0);
    /* Files no entry names: a crash came between writing one and storing its record. */
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct file_rec f;
        if (disk[i].mtime < pw->cutoff && (rc = file_get(x, txn, disk[i].hash, &f)) == -ENOENT) {
            gone_add(pw, disk[i].hash);
            pw->orphans++;
            rc = 0;
        }
    }
    free(disk);
    return rc;
}

/* Runs in the writer thread, inside the transaction; may run twice, so starts from nothing each time. */
static int apply_px(struct store *st, MDB_txn *txn, struct store_write *w)
{
    struct px_write *pw = (struct px_write *)w;
    struct pictures *x = pw->x;
    int rc;

    (void)st;
    pw->ngone = 0;
    pw->removed_files = pw->removed_bytes = pw->removed_pictures = pw->dropped = pw->orphans = 0;
    if (pw->op != PX_RECONCILE && (rc = totals_get(x, txn, &pw->totals, NULL)) != 0)
        return rc;
    switch (pw->op) {
    case PX_PUT:
        rc = record_set(pw, txn, pw->pubkey, pw->value, pw->len, false);
        if (rc == 0 && pw->put_url) {
            MDB_val uk = {32, pw->url_key}, uv = {sizeof(pw->url), &pw->url};
            rc = store_errno(mdb_put(txn, x->urls, &uk, &uv, 0));
        }
        break;
    case PX_TOUCH: rc = apply_touches(pw, txn); break;
    case PX_EVICT: rc = apply_evict(pw, txn); break;
    case PX_PURGE: rc = apply_purge(pw, txn); break;
    case PX_FORGET: rc = apply_forget(pw, txn); break;
    case PX_RECONCILE: rc = apply_reconcile(pw, txn); break;
    default: rc = -EINVAL;
    }
    return rc == 0 ? totals_put(x, txn, &pw->totals) : rc;
}

/* Writer thread, after the commit and before any later write: the files whose entries went. */
static void remove_gone(struct store_write *w)
{
    struct px_write *pw = (struct px_write *)w;

    for (size_t i = 0; i < pw->ngone; i++) {
        int r = blob_remove(pw->x->blobs, pw->gone[i]);
        if (r != 0 && r != -ENOENT)
            log_warn("pictures: cannot remove a cached file: %s", strerror(-r));
    }
}

static void check_limit(struct pictures *x);
static void evict_chunk(struct pictures *x);

static void px_free(struct px_write *pw)
{
    if (pw->bytes != NULL)
        blob_release(pw->bytes);
    free(pw->value);
    free(pw->touches);
    free(pw->gone);
    free(pw);
}

static void on_px_done(struct store_write *w)
{
    struct px_write *pw = (struct px_write *)w;
    struct pictures *x = pw->x;

    if (w->status == 0) {
        x->stats.pictures = pw->totals.pictures;
        x->stats.files = pw->totals.files;
        x->stats.bytes = pw->totals.bytes;
        for (size_t i = 0; i < pw->ngone; i++)
            blobcache_drop(x->memory, pw->gone[i]);
    } else {
        log_error("pictures: cannot update the picture index: %s", strerror(-w->status));
    }
    switch (pw->op) {
    case PX_PUT:
        if (pw->done != NULL)
            pw->done(pw->ctx, w->status);
        check_limit(x);
        break;
    case PX_TOUCH:
        if (w->status == 0)
            x->stats.recency_flushes++;
        break;
    case PX_EVICT:
        if (w->status == 0) {
            x->stats.recency_flushes += pw->ntouches > 0;
            x->stats.evicted_files += pw->removed_files;
            x->stats.evicted_bytes += pw->removed_bytes;
            x->stats.evicted_pictures += pw->removed_pictures;
            x->run_files += pw->removed_files;
            x->run_bytes += pw->removed_bytes;
        }
        x->evicting = false;
        if (w->status == 0 && pw->more && !x->closing) {
            evict_chunk(x);
        } else if (x->run_files > 0) {
            log_info("pictures: evicted %llu file(s), %llu bytes; the cache holds %llu bytes",
                     (unsigned long long)x->run_files, (unsigned long long)x->run_bytes,
                     (unsigned long long)x->stats.bytes);
            x->run_files = x->run_bytes = 0;
        }
        break;
    case PX_FORGET: break;
    case PX_PURGE:
        pw->result.status = w->status;
        pw->result.pictures = pw->removed_pictures;
        pw->result.files = pw->removed_files;
        pw->result.bytes = pw->removed_bytes;
        if (w->status == 0)
            x->stats.purges++;
        pw->purged(pw->ctx, &pw->result);
        break;
    case PX_RECONCILE:
        if (w->status == 0) {
            log_info("pictures: %llu cached in %llu file(s), %llu bytes%s; %llu dropped because their file was "
                     "missing, %llu stray file(s) removed",
                     (unsigned long long)pw->totals.pictures, (unsigned long long)pw->totals.files,
                     (unsigned long long)pw->totals.bytes, pw->rebuilt ? " (counted from the records)" : "",
                     (unsigned long long)pw->dropped, (unsigned long long)pw->orphans);
            x->ready = true;
            check_limit(x);
        }
        break;
    }
    px_free(pw);
}

static struct px_write *px_new(struct pictures *x, enum px_op op)
{
    struct px_write *pw = calloc(1, sizeof(*pw));

    if (pw == NULL)
        abort();
    pw->x = x;
    pw->op = op;
    pw->now_ms = x->wall_base_ms + (uv_now(x->loop) - x->mono_base_ms);
    pw->w.apply = apply_px;
    pw->w.done = on_px_done;
    if (op == PX_EVICT || op == PX_PURGE || op == PX_FORGET || op == PX_RECONCILE) {
        pw->w.solo = true;
        pw->w.committed = remove_gone;
    }
    return pw;
}

/* Hands the last-served times gathered so far to `pw`. */
static void take_touches(struct pictures *x, struct px_write *pw)
{
    pw->touches = x->touches;
    pw->ntouches = x->ntouches;
    x->touches = NULL;
    x->ntouches = x->touches_cap = 0;
    keymap_free(x->touched, NULL);
    x->touched = keymap_new(32);
}

static void flush_touches(struct pictures *x)
{
    struct px_write *pw;

    if (x->ntouches == 0)
        return;
    pw = px_new(x, PX_TOUCH);
    take_touches(x, pw);
    store_submit(x->store, &pw->w);
}

/* Evicts a chunk, with the last-served times gathered so far written first. */
static void evict_chunk(struct pictures *x)
{
    struct px_write *pw = px_new(x, PX_EVICT);

    pw->target = x->low_bytes;
    take_touches(x, pw);
    x->evicting = true;
    store_submit(x->store, &pw->w);
}

/* Starts an eviction when the files exceed the limit; it goes on, a chunk at a time, down to the low-water mark. */
static void check_limit(struct pictures *x)
{
    if (!x->ready || x->evicting || x->closing || x->stats.bytes <= x->limit_bytes)
        return;
    x->stats.evictions++;
    evict_chunk(x);
}

/* --- the loop thread's side ------------------------------------------------------------------------------------ */

void pictures_put(struct pictures *x, const uint8_t pubkey[32], const struct pic *pic, const struct url_rec *url,
                  const uint8_t url_key[32], struct blob_ref *bytes, pictures_done_fn done, void *ctx)
{
    struct px_write *pw = px_new(x, PX_PUT);

    memcpy(pw->pubkey, pubkey, 32);
    if (pic != NULL)
        pw->value = pic_encode(pic, &pw->len);
    if (url != NULL) {
        pw->put_url = true;
        pw->url = *url;
        memcpy(pw->url_key, url_key, 32);
    }
    if ((pw->bytes = bytes) != NULL)
        blob_retain(bytes);
    pw->done = done;
    pw->ctx = ctx;
    store_submit(x->store, &pw->w);
}

void pictures_purge(struct pictures *x, enum pictures_scope scope, const uint8_t pubkey[32], pictures_purged_fn done,
                    void *ctx)
{
    struct px_write *pw = px_new(x, PX_PURGE);

    pw->scope = scope;
    if (pubkey != NULL)
        memcpy(pw->pubkey, pubkey, 32);
    pw->purged = done;
    pw->ctx = ctx;
    store_submit(x->store, &pw->w);
}

void pictures_forget_file(struct pictures *x, const uint8_t hash[32])
{
    struct px_write *pw = px_new(x, PX_FORGET);

    memcpy(pw->pubkey, hash, 32);
    store_submit(x->store, &pw->w);
}

void pictures_touch(struct pictures *x, const uint8_t hash[32])
{
    uintptr_t slot = (uintptr_t)keymap_get(x->touched, hash);
    uint64_t ms = x->wall_base_ms + (uv_now(x->loop) - x->mono_base_ms);

    if (slot == 0) {
        if (x->ntouches == x->touches_cap) {
            x->touches_cap = x->touches_cap ? 2 * x->touches_cap : 256;
            if ((x->touches = realloc(x->touches, x->touches_cap * sizeof(*x->touches))) == NULL)
                abort();
        }
        memcpy(x->touches[x->ntouches].hash, hash, 32);
        slot = ++x->ntouches;
        keymap_put(x->touched, hash, (void *)slot);
    }
    x->touches[slot - 1].ms = ms;
}

int pictures_get(struct pictures *x, const uint8_t pubkey[32], struct pic *out)
{
    MDB_txn *txn;
    MDB_val k = {32, (void *)pubkey}, v;
    int r;

    if ((r = store_read_begin(x->store, &txn)) != 0)
        return r;
    r = mdb_get(txn, x->records, &k, &v) == 0 ? pic_decode(&v, out) : -ENOENT;
    store_read_end(x->store, txn);
    return r;
}

int pictures_get_url(struct pictures *x, const uint8_t url_key[32], struct url_rec *out)
{
    MDB_txn *txn;
    MDB_val k = {32, (void *)url_key}, v, fk;
    int r = -ENOENT;

    if (store_read_begin(x->store, &txn) != 0)
        return -EIO;
    if (mdb_get(txn, x->urls, &k, &v) == 0 && v.mv_size == sizeof(*out)) {
        memcpy(out, v.mv_data, sizeof(*out));
        fk = (MDB_val){32, out->blob};
        r = mdb_get(txn, x->files, &fk, &v) == 0 ? 0 : -ENOENT;
    }
    store_read_end(x->store, txn);
    return r;
}

static void on_timer(uv_timer_t *t)
{
    struct pictures *x = t->data;
    uint64_t now = uv_now(x->loop);

    if (now >= x->next_check_ms) {
        x->next_check_ms = now + x->check_ms;
        check_limit(x);
    }
    flush_touches(x);
}

int pictures_open(struct pictures *x, uv_loop_t *loop, const struct config *cfg, struct store *store,
                  struct blobs *blobs, struct blobcache *memory)
{
    int r;

    memset(x, 0, sizeof(*x));
    x->loop = loop;
    x->store = store;
    x->blobs = blobs;
    x->memory = memory;
    if ((r = store_open_db(store, "pictures", 0, &x->records)) != 0 ||
        (r = store_open_db(store, "picture_urls", 0, &x->urls)) != 0 ||
        (r = store_open_db(store, "picture_files", 0, &x->files)) != 0 ||
        (r = store_open_db(store, "picture_lru", 0, &x->lru)) != 0 ||
        (r = store_open_db(store, "picture_users", MDB_DUPSORT | MDB_DUPFIXED, &x->users)) != 0 ||
        (r = store_open_db(store, "picture_meta", 0, &x->meta)) != 0)
        return r;
    x->limit_bytes = (uint64_t)cfg->max_cache_size_mb << 20;
    x->low_bytes = x->limit_bytes / 100 * (uint64_t)cfg->lru_low_water_percent;
    x->check_ms = (uint64_t)cfg->lru_check_interval * 60000;
    x->touched = keymap_new(32);
    uv_update_time(loop);
    x->wall_base_ms = wall_ms();
    x->mono_base_ms = uv_now(loop);
    uv_timer_init(loop, &x->timer);
    x->timer.data = x;
    return 0;
}

void pictures_start(struct pictures *x)
{
    struct px_write *pw = px_new(x, PX_RECONCILE);

    pw->cutoff = (time_t)(x->wall_base_ms / 1000);
    store_submit(x->store, &pw->w);
    x->next_check_ms = uv_now(x->loop) + x->check_ms;
    uv_timer_start(&x->timer, on_timer, TOUCH_FLUSH_MS, TOUCH_FLUSH_MS);
}

void pictures_shutdown(struct pictures *x)
{
    x->closing = true;
    uv_timer_stop(&x->timer);
    flush_touches(x);
}

void pictures_close(struct pictures *x)
{
    if (x->touched != NULL)
        keymap_free(x->touched, NULL);
    x->touched = NULL;
    free(x->touches);
    x->touches = NULL;
    if (x->timer.loop != NULL)
        uv_close((uv_handle_t *)&x->timer, NULL);
}
