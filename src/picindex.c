/* picindex.c -- the picture index's tables and the changes that keep records, files, recency and totals in step. */
#include "picindex.h"

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

/*
 * Files evicted per transaction, so that a large eviction holds other writes up
 * only briefly at a time. A chunk dirties about three pages per file, which
 * LMDB allocates once for its largest transaction (fresh memory is slow to
 * fault in) and writes at commit; at 500 a chunk commits in about the time the
 * file thread takes to remove the chunk before it (measured: 1000 made the
 * first chunk cost a third of a 10,000-file eviction).
 */
#define EVICT_CHUNK 500

static const char TOTALS_KEY[] = "totals";

/*
 * Tables:
 *   pictures      pubkey -> pic_head + URL
 *   picture_urls  SHA-256 of a URL -> url_rec
 *   picture_files file hash -> file_rec
 *   picture_lru   big-endian served_ms, file hash -> (empty): oldest first
 *   picture_users file hash -> pubkeys whose record names it (sorted duplicates)
 *   picture_meta  "totals" -> struct picindex_totals
 *   picture_variants master's file hash, variant key -> variant_rec
 *
 * A variant's file is in picture_files, counted like any other, with the
 * number of variants naming it as its users; it has no place in the recency
 * order, since it goes with its master.
 */
struct picindex {
    MDB_dbi records, urls, files, lru, users, meta, variants;
    uint64_t applied; /* writer thread: changes applied, numbering them */
};

struct file_rec {
    uint64_t bytes;
    uint64_t served_ms; /* when it was last served (or stored), wall-clock milliseconds */
    uint32_t users;     /* picture records (variants, for a variant's file) that name it; 0 once they all moved
                           on, until it is evicted */
    uint32_t kind;      /* FILE_PICTURE or FILE_VARIANT */
};

enum { FILE_PICTURE = 0, FILE_VARIANT = 1 };

/* A variant's entry: its master's hash, then its key of PICTURES_VARIANT_KEY to PICTURES_VARIANT_KEY_MAX bytes. */
#define VARIANT_ENTRY_MAX (32 + PICTURES_VARIANT_KEY_MAX)

static bool variant_entry_size_ok(size_t n)
{
    return n >= 32 + PICTURES_VARIANT_KEY && n <= VARIANT_ENTRY_MAX;
}

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

uint8_t *picindex_encode(const struct pic *pic, size_t *len)
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

static int totals_get(struct picindex *ix, MDB_txn *txn, struct picindex_totals *t, bool *present)
{
    MDB_val k = {sizeof(TOTALS_KEY) - 1, (void *)TOTALS_KEY}, v;
    int rc = mdb_get(txn, ix->meta, &k, &v);

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

static int totals_put(struct picindex *ix, MDB_txn *txn, const struct picindex_totals *t)
{
    MDB_val k = {sizeof(TOTALS_KEY) - 1, (void *)TOTALS_KEY}, v = {sizeof(*t), (void *)t};
    return db_errno(mdb_put(txn, ix->meta, &k, &v, 0));
}

static int file_get(const struct picindex *ix, MDB_txn *txn, const uint8_t hash[32], struct file_rec *f)
{
    MDB_val k = {32, (void *)hash}, v;
    int rc = mdb_get(txn, ix->files, &k, &v);

    if (rc != 0)
        return db_errno(rc);
    if (v.mv_size != sizeof(*f))
        return -EIO;
    memcpy(f, v.mv_data, sizeof(*f));
    return 0;
}

int picindex_get_file(const struct picindex *ix, MDB_txn *txn, const uint8_t hash[32], uint64_t *bytes)
{
    struct file_rec f;
    int rc = file_get(ix, txn, hash, &f);

    if (rc == 0)
        *bytes = f.bytes;
    return rc;
}

static int file_put(struct picindex *ix, MDB_txn *txn, const uint8_t hash[32], const struct file_rec *f)
{
    MDB_val k = {32, (void *)hash}, v = {sizeof(*f), (void *)f};
    return db_errno(mdb_put(txn, ix->files, &k, &v, 0));
}

static int lru_put(struct picindex *ix, MDB_txn *txn, uint64_t ms, const uint8_t hash[32])
{
    uint8_t key[40];
    MDB_val k = {sizeof(key), key}, v = {0, NULL};

    lru_key(key, ms, hash);
    return db_errno(mdb_put(txn, ix->lru, &k, &v, 0));
}

static int lru_del(struct picindex *ix, MDB_txn *txn, uint64_t ms, const uint8_t hash[32])
{
    uint8_t key[40];
    MDB_val k = {sizeof(key), key};
    int rc;

    lru_key(key, ms, hash);
    rc = mdb_del(txn, ix->lru, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : db_errno(rc);
}

static void gone_add(struct picindex_change *ch, const uint8_t hash[32])
{
    if (ch->ngone == ch->gone_cap) {
        ch->gone_cap = ch->gone_cap ? 2 * ch->gone_cap : 64;
        if ((ch->gone = realloc(ch->gone, ch->gone_cap * sizeof(*ch->gone))) == NULL)
            abort();
    }
    memcpy(ch->gone[ch->ngone++], hash, 32);
}

static int variants_drop(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn, const uint8_t master[32]);

/*
 * Removes the file's entries (not the records naming it), and a picture's variants with it; the files themselves
 * go after the commit.
 */
static int file_remove(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn, const uint8_t hash[32],
                       const struct file_rec *f)
{
    MDB_val k = {32, (void *)hash};
    int rc;

    if ((rc = mdb_del(txn, ix->files, &k, NULL)) != 0 || (rc = lru_del(ix, txn, f->served_ms, hash)) != 0)
        return db_errno(rc);
    if ((rc = mdb_del(txn, ix->users, &k, NULL)) != 0 && rc != MDB_NOTFOUND)
        return db_errno(rc);
    ch->totals.files--;
    ch->totals.bytes -= f->bytes;
    ch->removed_files++;
    ch->removed_bytes += f->bytes;
    gone_add(ch, hash);
    return f->kind == FILE_VARIANT ? 0 : variants_drop(ix, ch, txn, hash);
}

/* --- variants ----------------------------------------------------------------------------------------------------- */

/* The entry's key into `k`; its length. */
static size_t variant_entry_key(uint8_t k[VARIANT_ENTRY_MAX], const uint8_t master[32], const struct pictures_vkey *key)
{
    size_t n = key->len > PICTURES_VARIANT_KEY_MAX ? PICTURES_VARIANT_KEY_MAX : key->len;

    memcpy(k, master, 32);
    memcpy(k + 32, key->b, n);
    return 32 + n;
}

/* One variant fewer names the file `hash`: it goes with the last. */
static int variant_unuse(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn, const uint8_t hash[32])
{
    struct file_rec f;
    int rc = file_get(ix, txn, hash, &f);

    if (rc == -ENOENT || (rc == 0 && f.kind != FILE_VARIANT))
        return 0;
    if (rc != 0)
        return rc;
    if (f.users > 0)
        f.users--;
    return f.users == 0 ? file_remove(ix, ch, txn, hash, &f) : file_put(ix, txn, hash, &f);
}

/* Removes every variant of `master`, and their files that no other variant names. */
static int variants_drop(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn, const uint8_t master[32])
{
    MDB_cursor *cur;
    int rc;

    if ((rc = mdb_cursor_open(txn, ix->variants, &cur)) != 0)
        return db_errno(rc);
    for (;;) {
        MDB_val k = {32, (void *)master}, v;
        struct variant_rec r;
        bool named;

        /* Sought again each time: the master's key sorts just before its variants' keys. */
        if ((rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)) != 0)
            break;
        if (!variant_entry_size_ok(k.mv_size) || memcmp(k.mv_data, master, 32) != 0)
            break;
        if ((named = v.mv_size == sizeof(r)))
            memcpy(&r, v.mv_data, sizeof(r));
        if ((rc = mdb_cursor_del(cur, 0)) != 0 || (named && (rc = variant_unuse(ix, ch, txn, r.blob)) != 0))
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc < 0 ? rc : db_errno(rc);
}

static int variant_put(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn, const uint8_t master[32],
                       const struct picindex_variant *pv)
{
    uint8_t key[VARIANT_ENTRY_MAX];
    MDB_val k = {0, key}, v;
    struct file_rec mf, f;
    int rc;

    if ((rc = file_get(ix, txn, master, &mf)) != 0)
        return rc;
    if (mf.kind == FILE_VARIANT)
        return -ENOENT;
    k.mv_size = variant_entry_key(key, master, pv->key);
    /* Made twice (two relays' worth of requests at once): the first stays, as both are the same picture. */
    if ((rc = mdb_get(txn, ix->variants, &k, &v)) != MDB_NOTFOUND)
        return db_errno(rc);
    rc = file_get(ix, txn, pv->rec->blob, &f);
    if (rc == -ENOENT) {
        if (pv->disk_bytes == NULL)
            return -ENOENT;
        f = (struct file_rec){.bytes = *pv->disk_bytes, .served_ms = ch->now_ms, .kind = FILE_VARIANT};
        ch->totals.files++;
        ch->totals.bytes += f.bytes;
    } else if (rc != 0) {
        return rc;
    } else if (f.kind != FILE_VARIANT) {
        return -EEXIST;
    }
    f.users++;
    v = (MDB_val){sizeof(*pv->rec), (void *)pv->rec};
    if ((rc = file_put(ix, txn, pv->rec->blob, &f)) != 0)
        return rc;
    return db_errno(mdb_put(txn, ix->variants, &k, &v, 0));
}

static int variant_forget(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn, const uint8_t master[32],
                          const struct pictures_vkey *vkey)
{
    uint8_t key[VARIANT_ENTRY_MAX];
    MDB_val k = {0, key}, v;
    struct variant_rec r;
    int rc;

    k.mv_size = variant_entry_key(key, master, vkey);
    if ((rc = mdb_get(txn, ix->variants, &k, &v)) != 0)
        return rc == MDB_NOTFOUND ? 0 : db_errno(rc);
    if (v.mv_size == sizeof(r))
        memcpy(&r, v.mv_data, sizeof(r));
    if ((rc = db_errno(mdb_del(txn, ix->variants, &k, NULL))) != 0 || v.mv_size != sizeof(r))
        return rc;
    return variant_unuse(ix, ch, txn, r.blob);
}

/*
 * Drops the variants whose master or file is no longer in the index, after start-up reconciliation dropped the
 * entries of files found missing.
 */
static int variants_sweep(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    if ((rc = mdb_cursor_open(txn, ix->variants, &cur)) != 0)
        return db_errno(rc);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct file_rec mf, f;
        struct variant_rec r;
        bool ok = variant_entry_size_ok(k.mv_size) && v.mv_size == sizeof(r), file;

        if (ok)
            memcpy(&r, v.mv_data, sizeof(r));
        file = ok && file_get(ix, txn, r.blob, &f) == 0 && f.kind == FILE_VARIANT;
        if (ok && file && file_get(ix, txn, k.mv_data, &mf) == 0 && mf.kind != FILE_VARIANT)
            continue;
        if ((rc = mdb_cursor_del(cur, 0)) != 0 || (file && (rc = variant_unuse(ix, ch, txn, r.blob)) != 0))
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc < 0 ? rc : db_errno(rc);
}

/* Deletes every picture record that names the file `hash`. */
static int drop_users(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn, const uint8_t hash[32])
{
    MDB_cursor *cur;
    MDB_val k = {32, (void *)hash}, v;
    int rc;

    if ((rc = mdb_cursor_open(txn, ix->users, &cur)) != 0)
        return db_errno(rc);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP)) {
        MDB_val pk = {32, v.mv_data}, pv;
        struct pic pic;
        if (v.mv_size != 32 || mdb_get(txn, ix->records, &pk, &pv) != 0 || pic_decode(&pv, &pic) != 0 ||
            pic.h.state != PIC_OK || memcmp(pic.h.blob, hash, 32) != 0)
            continue;
        if ((rc = mdb_del(txn, ix->records, &pk, NULL)) != 0)
            break;
        ch->totals.pictures--;
        ch->removed_pictures++;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : db_errno(rc);
}

/*
 * `pubkey` now names the file `hash`. A file new to the index is counted with
 * its size on disk, `disk_bytes`, found on the file thread before the write;
 * NULL when it is not on disk, which fails the write.
 */
static int file_add_user(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn, const uint8_t hash[32],
                         const uint8_t pubkey[32], const uint64_t *disk_bytes)
{
    MDB_val k = {32, (void *)hash}, v = {32, (void *)pubkey};
    struct file_rec f;
    int rc = file_get(ix, txn, hash, &f);

    if (rc == -ENOENT) {
        if (disk_bytes == NULL)
            return -ENOENT;
        f = (struct file_rec){.bytes = *disk_bytes, .served_ms = ch->now_ms};
        if ((rc = lru_put(ix, txn, f.served_ms, hash)) != 0)
            return rc;
        ch->totals.files++;
        ch->totals.bytes += f.bytes;
    } else if (rc != 0) {
        return rc;
    }
    rc = mdb_put(txn, ix->users, &k, &v, MDB_NODUPDATA);
    if (rc == 0)
        f.users++;
    else if (rc != MDB_KEYEXIST)
        return db_errno(rc);
    return file_put(ix, txn, hash, &f);
}

/* `pubkey` no longer names `hash`. The file stays, unused, until it is evicted or purged, unless `remove`. */
static int file_drop_user(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn, const uint8_t hash[32],
                          const uint8_t pubkey[32], bool remove)
{
    MDB_val k = {32, (void *)hash}, v = {32, (void *)pubkey};
    struct file_rec f;
    int rc = file_get(ix, txn, hash, &f);

    if (rc == -ENOENT)
        return 0;
    if (rc != 0)
        return rc;
    rc = mdb_del(txn, ix->users, &k, &v);
    if (rc == 0 && f.users > 0)
        f.users--;
    else if (rc != 0 && rc != MDB_NOTFOUND)
        return db_errno(rc);
    if (remove && f.users == 0)
        return file_remove(ix, ch, txn, hash, &f);
    return file_put(ix, txn, hash, &f);
}

/* Replaces the record of `pubkey` (deletes it when `value` is NULL), keeping the files' users in step. */
static int record_set(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn, const uint8_t pubkey[32],
                      const uint8_t *value, size_t len, bool remove_unused, const uint64_t *disk_bytes)
{
    MDB_val k = {32, (void *)pubkey}, v;
    struct pic old, now;
    bool old_ok = false, now_ok = false;
    int rc;

    if (mdb_get(txn, ix->records, &k, &v) == 0 && pic_decode(&v, &old) == 0)
        old_ok = old.h.state == PIC_OK;
    if (value != NULL) {
        MDB_val nv = {len, (void *)value};
        if (pic_decode(&nv, &now) != 0)
            return -EINVAL;
        now_ok = now.h.state == PIC_OK;
    }
    if (now_ok && !(old_ok && memcmp(old.h.blob, now.h.blob, 32) == 0)) {
        if ((rc = file_add_user(ix, ch, txn, now.h.blob, pubkey, disk_bytes)) != 0)
            return rc;
    }
    if (old_ok && !(now_ok && memcmp(old.h.blob, now.h.blob, 32) == 0)) {
        if ((rc = file_drop_user(ix, ch, txn, old.h.blob, pubkey, remove_unused)) != 0)
            return rc;
    }
    ch->totals.pictures += (uint64_t)now_ok - (uint64_t)old_ok;
    if (value != NULL) {
        v = (MDB_val){len, (void *)value};
        return db_errno(mdb_put(txn, ix->records, &k, &v, 0));
    }
    rc = mdb_del(txn, ix->records, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : db_errno(rc);
}

/* Moves each touched file to its new place in the recency order. */
static int apply_touches(struct picindex *ix, MDB_txn *txn, const struct picindex_touch *touches, size_t ntouches)
{
    for (size_t i = 0; i < ntouches; i++) {
        const struct picindex_touch *t = &touches[i];
        struct file_rec f;
        int rc = file_get(ix, txn, t->hash, &f);
        if (rc == -ENOENT || (rc == 0 && (f.served_ms >= t->ms || f.kind == FILE_VARIANT)))
            continue;
        if (rc != 0 || (rc = lru_del(ix, txn, f.served_ms, t->hash)) != 0 ||
            (rc = lru_put(ix, txn, t->ms, t->hash)) != 0)
            return rc;
        f.served_ms = t->ms;
        if ((rc = file_put(ix, txn, t->hash, &f)) != 0)
            return rc;
    }
    return 0;
}

/*
 * Drops the records that still name the file `hash` through `records`, its
 * users through `users` (positioned on them by the search), and counts them.
 */
static int evict_users(struct picindex_change *ch, MDB_cursor *users, MDB_cursor *records, const uint8_t hash[32])
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
        ch->totals.pictures--;
        ch->removed_pictures++;
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
static int evict(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn, uint64_t target, bool *more)
{
    MDB_cursor *lru = NULL, *files = NULL, *users = NULL, *records = NULL;
    size_t n = 0;
    int rc;

    if ((rc = mdb_cursor_open(txn, ix->lru, &lru)) != 0 || (rc = mdb_cursor_open(txn, ix->files, &files)) != 0 ||
        (rc = mdb_cursor_open(txn, ix->users, &users)) != 0 ||
        (rc = mdb_cursor_open(txn, ix->records, &records)) != 0) {
        rc = db_errno(rc);
        goto out;
    }
    while (ch->totals.bytes > target && n < EVICT_CHUNK) {
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
        if ((rc = evict_users(ch, users, records, hash)) != 0 || (rc = db_errno(mdb_cursor_del(files, 0))) != 0 ||
            (rc = db_errno(mdb_cursor_del(lru, 0))) != 0)
            break;
        ch->totals.files--;
        ch->totals.bytes -= f.bytes;
        ch->removed_files++;
        ch->removed_bytes += f.bytes;
        gone_add(ch, hash);
        if ((rc = variants_drop(ix, ch, txn, hash)) != 0)
            break;
        n++;
    }
    *more = rc == 0 && n == EVICT_CHUNK && ch->totals.bytes > target;
out:
    mdb_cursor_close(records);
    mdb_cursor_close(users);
    mdb_cursor_close(files);
    mdb_cursor_close(lru);
    return rc;
}

/* Lists every file in the index for removal, and empties the file databases. */
static int drop_all_files(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    if ((rc = mdb_cursor_open(txn, ix->files, &cur)) != 0)
        return db_errno(rc);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct file_rec f;
        if (k.mv_size != 32 || v.mv_size != sizeof(f))
            continue;
        memcpy(&f, v.mv_data, sizeof(f));
        gone_add(ch, k.mv_data);
        ch->removed_files++;
        ch->removed_bytes += f.bytes;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return db_errno(rc);
    if ((rc = mdb_drop(txn, ix->files, 0)) != 0 || (rc = mdb_drop(txn, ix->lru, 0)) != 0 ||
        (rc = mdb_drop(txn, ix->users, 0)) != 0 || (rc = mdb_drop(txn, ix->urls, 0)) != 0 ||
        (rc = mdb_drop(txn, ix->variants, 0)) != 0)
        return db_errno(rc);
    ch->totals.files = ch->totals.bytes = 0;
    return 0;
}

static int purge(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn, enum pictures_scope scope,
                 const uint8_t pubkey[32], bool *found)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    *found = false;
    if (scope == PURGE_PUBKEY) {
        for (int slot = PICTURES_AVATAR; slot <= PICTURES_BANNER; slot++) {
            uint8_t key[32];
            MDB_val pk = {32, key};
            pictures_record_key(pubkey, (enum pictures_slot)slot, key);
            if ((rc = mdb_get(txn, ix->records, &pk, &v)) == MDB_NOTFOUND)
                continue;
            if (rc != 0)
                return db_errno(rc);
            *found = true;
            if ((rc = record_set(ix, ch, txn, key, NULL, 0, true, NULL)) != 0)
                return rc;
            ch->removed_pictures++;
        }
        return 0;
    }
    if ((rc = drop_all_files(ix, ch, txn)) != 0)
        return rc;
    ch->removed_pictures = ch->totals.pictures;
    ch->totals.pictures = 0;
    if (scope == PURGE_ALL)
        return db_errno(mdb_drop(txn, ix->records, 0));
    /* Only the pictures: remembered failures stay. */
    if ((rc = mdb_cursor_open(txn, ix->records, &cur)) != 0)
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
static int forget(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn, const uint8_t hash[32])
{
    struct file_rec f;
    int rc = file_get(ix, txn, hash, &f);

    if (rc == -ENOENT)
        return 0;
    if (rc != 0 || (rc = drop_users(ix, ch, txn, hash)) != 0)
        return rc;
    return file_remove(ix, ch, txn, hash, &f);
}

/* --- start-up reconciliation ---------------------------------------------------------------------------------- */

static int cmp_disk_file(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

static const struct picindex_disk_file *on_disk(const struct picindex_disk_file *v, size_t n, const uint8_t hash[32])
{
    return n == 0 ? NULL : bsearch(hash, v, n, sizeof(*v), cmp_disk_file);
}

/* Counts the files again from the picture records: for an index written before files were counted. */
static int rebuild(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn, const struct picindex_disk_file *disk,
                   size_t ndisk, struct picindex_reconciled *out)
{
    MDB_cursor *cur;
    MDB_val k, v;
    uint64_t now_ms = ch->now_ms;
    int c, rc = 0;

    if ((c = mdb_drop(txn, ix->files, 0)) != 0 || (c = mdb_drop(txn, ix->lru, 0)) != 0 ||
        (c = mdb_drop(txn, ix->users, 0)) != 0 || (c = mdb_drop(txn, ix->variants, 0)) != 0 ||
        (c = mdb_cursor_open(txn, ix->records, &cur)) != 0)
        return db_errno(c);
    memset(&ch->totals, 0, sizeof(ch->totals));
    for (c = mdb_cursor_get(cur, &k, &v, MDB_FIRST); c == 0 && rc == 0; c = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const struct picindex_disk_file *d;
        struct pic pic;
        uint8_t pubkey[32];
        if (k.mv_size != 32 || pic_decode(&v, &pic) != 0 || pic.h.state != PIC_OK)
            continue;
        memcpy(pubkey, k.mv_data, 32);
        /* A file of another size than its record's is damaged; it becomes an orphan, removed below. */
        if ((d = on_disk(disk, ndisk, pic.h.blob)) == NULL || d->bytes != pic.h.bytes) {
            rc = db_errno(mdb_cursor_del(cur, 0));
            out->dropped++;
            continue;
        }
        /* Recency starts from when each picture was fetched. */
        ch->now_ms = pic.h.fetched_at * 1000;
        if ((rc = file_add_user(ix, ch, txn, pic.h.blob, pubkey, &d->bytes)) == 0)
            ch->totals.pictures++;
    }
    mdb_cursor_close(cur);
    ch->now_ms = now_ms;
    if (rc == 0 && c != MDB_NOTFOUND)
        rc = db_errno(c);
    return rc;
}

/*
 * Drops the entries of files that are no longer on disk, with the records
 * naming them. The listing came just before, on the file thread, ahead of any
 * picture write that could name a new file.
 */
static int drop_missing(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn,
                        const struct picindex_disk_file *disk, size_t ndisk, struct picindex_reconciled *out)
{
    MDB_cursor *cur;
    MDB_val k, v;
    uint8_t(*missing)[32] = NULL;
    size_t nmissing = 0, cap = 0;
    int rc;

    if ((rc = mdb_cursor_open(txn, ix->files, &cur)) != 0)
        return db_errno(rc);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const struct picindex_disk_file *d;
        struct file_rec f;
        if (k.mv_size != 32 || v.mv_size != sizeof(f))
            continue;
        memcpy(&f, v.mv_data, sizeof(f));
        if ((d = on_disk(disk, ndisk, k.mv_data)) != NULL && d->bytes == f.bytes)
            continue;
        /* Truncated, emptied or grown: its entries go like a missing file's, and file_remove() lists it to go. */
        out->damaged += d != NULL;
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
        uint64_t before = ch->removed_pictures;
        if ((rc = file_get(ix, txn, missing[i], &f)) == 0 && (rc = drop_users(ix, ch, txn, missing[i])) == 0)
            rc = file_remove(ix, ch, txn, missing[i], &f);
        out->dropped += ch->removed_pictures - before;
    }
    free(missing);
    return rc == 0 ? variants_sweep(ix, ch, txn) : rc;
}

/* --- the interface ---------------------------------------------------------------------------------------------- */

/* Every change starts from nothing, as it may run twice: the totals as stored, nothing removed yet. */
static int begin(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn, bool *present)
{
    ch->ngone = 0;
    ch->removed_files = ch->removed_bytes = ch->removed_pictures = 0;
    return totals_get(ix, txn, &ch->totals, present);
}

static int end(struct picindex *ix, struct picindex_change *ch, MDB_txn *txn, int rc)
{
    if (rc == 0 && (rc = totals_put(ix, txn, &ch->totals)) == 0)
        ch->seq = ++ix->applied;
    return rc;
}

int picindex_put(struct picindex *ix, MDB_txn *txn, struct picindex_change *ch, const uint8_t pubkey[32],
                 const uint8_t *value, size_t len, const uint64_t *disk_bytes, const uint8_t url_key[32],
                 const struct url_rec *url, const struct picindex_variant *variants, size_t nvariants)
{
    struct pic pic;
    int rc = begin(ix, ch, txn, NULL);

    if (rc == 0)
        rc = record_set(ix, ch, txn, pubkey, value, len, false, disk_bytes);
    if (rc == 0 && url != NULL) {
        MDB_val uk = {32, (void *)url_key}, uv = {sizeof(*url), (void *)url};
        rc = db_errno(mdb_put(txn, ix->urls, &uk, &uv, 0));
    }
    if (rc == 0 && nvariants > 0 && value != NULL && picindex_decode(value, len, &pic) == 0 && pic.h.state == PIC_OK) {
        /* A variant that cannot be stored is made again when asked for: the record does not wait on it. */
        for (size_t i = 0; i < nvariants && rc == 0; i++) {
            rc = variant_put(ix, ch, txn, pic.h.blob, &variants[i]);
            if (rc == -EEXIST || rc == -ENOENT)
                rc = 0;
        }
    }
    return end(ix, ch, txn, rc);
}

int picindex_put_variant(struct picindex *ix, MDB_txn *txn, struct picindex_change *ch, const uint8_t master[32],
                         const struct picindex_variant *v)
{
    int rc = begin(ix, ch, txn, NULL);

    return end(ix, ch, txn, rc == 0 ? variant_put(ix, ch, txn, master, v) : rc);
}

int picindex_forget_variant(struct picindex *ix, MDB_txn *txn, struct picindex_change *ch, const uint8_t master[32],
                            const struct pictures_vkey *key)
{
    int rc = begin(ix, ch, txn, NULL);

    return end(ix, ch, txn, rc == 0 ? variant_forget(ix, ch, txn, master, key) : rc);
}

int picindex_touch(struct picindex *ix, MDB_txn *txn, struct picindex_change *ch, const struct picindex_touch *touches,
                   size_t ntouches)
{
    int rc = begin(ix, ch, txn, NULL);

    return end(ix, ch, txn, rc == 0 ? apply_touches(ix, txn, touches, ntouches) : rc);
}

int picindex_evict(struct picindex *ix, MDB_txn *txn, struct picindex_change *ch, const struct picindex_touch *touches,
                   size_t ntouches, uint64_t target, bool *more)
{
    int rc = begin(ix, ch, txn, NULL);

    *more = false;
    if (rc == 0 && (rc = apply_touches(ix, txn, touches, ntouches)) == 0)
        rc = evict(ix, ch, txn, target, more);
    return end(ix, ch, txn, rc);
}

int picindex_purge(struct picindex *ix, MDB_txn *txn, struct picindex_change *ch, enum pictures_scope scope,
                   const uint8_t pubkey[32], bool *found)
{
    int rc = begin(ix, ch, txn, NULL);

    *found = false;
    return end(ix, ch, txn, rc == 0 ? purge(ix, ch, txn, scope, pubkey, found) : rc);
}

int picindex_forget(struct picindex *ix, MDB_txn *txn, struct picindex_change *ch, const uint8_t hash[32])
{
    int rc = begin(ix, ch, txn, NULL);

    return end(ix, ch, txn, rc == 0 ? forget(ix, ch, txn, hash) : rc);
}

int picindex_reconcile(struct picindex *ix, MDB_txn *txn, struct picindex_change *ch,
                       const struct picindex_disk_file *disk, size_t ndisk, time_t cutoff,
                       struct picindex_reconciled *out)
{
    bool present;
    int rc = begin(ix, ch, txn, &present);

    memset(out, 0, sizeof(*out));
    if (rc == 0)
        rc = present ? drop_missing(ix, ch, txn, disk, ndisk, out) : rebuild(ix, ch, txn, disk, ndisk, out);
    out->rebuilt = !present && (ch->totals.pictures > 0 || out->dropped > 0);
    /* Files no entry names: a crash came between writing one and storing its record. */
    for (size_t i = 0; i < ndisk && rc == 0; i++) {
        struct file_rec f;
        if (disk[i].mtime < cutoff && (rc = file_get(ix, txn, disk[i].hash, &f)) == -ENOENT) {
            gone_add(ch, disk[i].hash);
            out->orphans++;
            rc = 0;
        }
    }
    return end(ix, ch, txn, rc);
}

void picindex_sort_disk(struct picindex_disk_file *disk, size_t ndisk)
{
    if (ndisk > 1)
        qsort(disk, ndisk, sizeof(*disk), cmp_disk_file);
}

int picindex_get(const struct picindex *ix, MDB_txn *txn, const uint8_t pubkey[32], struct pic *out)
{
    MDB_val k = {32, (void *)pubkey}, v;
    int r = db_errno(mdb_get(txn, ix->records, &k, &v));

    return r != 0 ? r : pic_decode(&v, out) == 0 ? 0 : -EIO;
}

int picindex_get_url(const struct picindex *ix, MDB_txn *txn, const uint8_t url_key[32], struct url_rec *out)
{
    MDB_val k = {32, (void *)url_key}, v, fk;
    int r = db_errno(mdb_get(txn, ix->urls, &k, &v));

    if (r != 0)
        return r;
    if (v.mv_size != sizeof(*out))
        return -EIO;
    memcpy(out, v.mv_data, sizeof(*out));
    fk = (MDB_val){32, out->blob};
    return db_errno(mdb_get(txn, ix->files, &fk, &v));
}

int picindex_get_variant(const struct picindex *ix, MDB_txn *txn, const uint8_t master[32],
                         const struct pictures_vkey *key, struct variant_rec *out)
{
    uint8_t kb[VARIANT_ENTRY_MAX];
    MDB_val k = {0, kb}, v;
    int r;

    k.mv_size = variant_entry_key(kb, master, key);
    if ((r = db_errno(mdb_get(txn, ix->variants, &k, &v))) != 0)
        return r;
    if (v.mv_size != sizeof(*out))
        return -EIO;
    memcpy(out, v.mv_data, sizeof(*out));
    return 0;
}

int picindex_decode(const void *data, size_t len, struct pic *out)
{
    MDB_val v = {len, (void *)data};
    return pic_decode(&v, out);
}

void picindex_change_free(struct picindex_change *ch)
{
    free(ch->gone);
    ch->gone = NULL;
    ch->ngone = ch->gone_cap = 0;
}

int picindex_open(struct db *db, struct picindex **out)
{
    struct picindex *ix = calloc(1, sizeof(*ix));
    int r;

    if (ix == NULL)
        abort();
    if ((r = db_open_table(db, "pictures", 0, &ix->records)) != 0 ||
        (r = db_open_table(db, "picture_urls", 0, &ix->urls)) != 0 ||
        (r = db_open_table(db, "picture_files", 0, &ix->files)) != 0 ||
        (r = db_open_table(db, "picture_lru", 0, &ix->lru)) != 0 ||
        (r = db_open_table(db, "picture_users", MDB_DUPSORT | MDB_DUPFIXED, &ix->users)) != 0 ||
        (r = db_open_table(db, "picture_meta", 0, &ix->meta)) != 0 ||
        (r = db_open_table(db, "picture_variants", 0, &ix->variants)) != 0) {
        free(ix);
        return r;
    }
    *out = ix;
    return 0;
}

/* --- checking --------------------------------------------------------------------------------------------------- */

/* An entry whose key and value have the sizes given (SIZE_MAX: any). */
static int check_sizes(const MDB_val *k, const MDB_val *v, size_t klen, size_t vlen, char *why, size_t whylen)
{
    if (klen != SIZE_MAX && k->mv_size != klen)
        return err_set(why, whylen, -EINVAL, "a key of %zu bytes, not %zu", k->mv_size, klen);
    if (vlen != SIZE_MAX && v->mv_size != vlen)
        return err_set(why, whylen, -EINVAL, "a value of %zu bytes, not %zu", v->mv_size, vlen);
    return 0;
}

static int check_record(const MDB_val *k, const MDB_val *v, char *why, size_t whylen)
{
    struct pic pic;
    int rc = check_sizes(k, v, 32, SIZE_MAX, why, whylen);

    if (rc == 0 && (pic_decode(v, &pic) != 0 || (pic.h.state != PIC_OK && pic.h.state != PIC_NEGATIVE)))
        rc = err_set(why, whylen, -EINVAL, "not a picture record");
    return rc;
}

static int check_url(const MDB_val *k, const MDB_val *v, char *why, size_t whylen)
{
    return check_sizes(k, v, 32, sizeof(struct url_rec), why, whylen);
}

static int check_file(const MDB_val *k, const MDB_val *v, char *why, size_t whylen)
{
    return check_sizes(k, v, 32, sizeof(struct file_rec), why, whylen);
}

static int check_lru(const MDB_val *k, const MDB_val *v, char *why, size_t whylen)
{
    return check_sizes(k, v, 40, 0, why, whylen);
}

static int check_user(const MDB_val *k, const MDB_val *v, char *why, size_t whylen)
{
    return check_sizes(k, v, 32, 32, why, whylen);
}

static int check_variant(const MDB_val *k, const MDB_val *v, char *why, size_t whylen)
{
    if (!variant_entry_size_ok(k->mv_size))
        return err_set(why, whylen, -EINVAL, "a key of %zu bytes, not %d to %d", k->mv_size, 32 + PICTURES_VARIANT_KEY,
                       VARIANT_ENTRY_MAX);
    return check_sizes(k, v, SIZE_MAX, sizeof(struct variant_rec), why, whylen);
}

static int check_meta(const MDB_val *k, const MDB_val *v, char *why, size_t whylen)
{
    if (k->mv_size != sizeof(TOTALS_KEY) - 1 || memcmp(k->mv_data, TOTALS_KEY, k->mv_size) != 0)
        return err_set(why, whylen, -EINVAL, "an unknown key");
    return check_sizes(k, v, SIZE_MAX, sizeof(struct picindex_totals), why, whylen);
}

const struct db_table_check *picindex_table_checks(size_t *n)
{
    static const struct db_table_check checks[] = {
        {"pictures", check_record},          {"picture_urls", check_url},   {"picture_files", check_file},
        {"picture_lru", check_lru},          {"picture_users", check_user}, {"picture_meta", check_meta},
        {"picture_variants", check_variant},
    };

    *n = sizeof(checks) / sizeof(checks[0]);
    return checks;
}

void picindex_free(struct picindex *ix)
{
    free(ix);
}
