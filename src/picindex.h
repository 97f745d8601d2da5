/*
 * picindex.h -- the picture index's tables and the transactions that change
 * them: picture records, the files they name (size, users, last use), the
 * recency order and the totals. Only pictures.c uses it. The changes run on
 * the database's writer thread inside its transaction and do no file I/O:
 * the files a change removes are listed for pictures.c to unlink once the
 * change has committed.
 */
#ifndef PFP_PICINDEX_H
#define PFP_PICINDEX_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "db.h"
#include "pictures.h"

struct picindex;

struct picindex_totals {
    uint64_t pictures, files, bytes;
};

/* A file served at `ms` (wall-clock milliseconds), for the recency order. */
struct picindex_touch {
    uint8_t hash[32];
    uint64_t ms;
};

/* A picture file found on disk at start-up. */
struct picindex_disk_file {
    uint8_t hash[32];
    uint64_t bytes;
    time_t mtime;
};

/*
 * What one change did. The caller sets `now_ms`; the change fills the rest,
 * from nothing each time it is applied (an apply may run twice).
 */
struct picindex_change {
    uint64_t now_ms;               /* wall-clock milliseconds: the last use of files new to the index */
    struct picindex_totals totals; /* after the change */
    uint64_t seq;        /* the order in which changes were applied, so that older totals never replace newer */
    uint8_t (*gone)[32]; /* files to remove once committed */
    size_t ngone, gone_cap;
    uint64_t removed_files, removed_bytes, removed_pictures;
};

/* What start-up reconciliation found. */
struct picindex_reconciled {
    bool rebuilt;              /* the index had no totals: counted from the picture records */
    uint64_t dropped, orphans; /* records whose file had gone or was damaged; files no record named */
    uint64_t damaged;          /* files whose size on disk was not their entry's: dropped, and removed */
};

/* A variant to store, and its file's size on disk (NULL: not on disk, which fails the write with -ENOENT). */
struct picindex_variant {
    const struct pictures_vkey *key;
    const struct variant_rec *rec;
    const uint64_t *disk_bytes;
};

/* Opens the tables (between db_init() and db_start()). Returns 0 or a negative error. */
int picindex_open(struct db *db, struct picindex **out);
void picindex_free(struct picindex *ix);

/* Reads inside `txn`. Return 0, -ENOENT, or -EIO. */
int picindex_get(const struct picindex *ix, MDB_txn *txn, const uint8_t pubkey[32], struct pic *out);
/* ... what `url_key` gave, only if its file is still in the index. */
int picindex_get_url(const struct picindex *ix, MDB_txn *txn, const uint8_t url_key[32], struct url_rec *out);
/* ... the size of the file `hash`, if the index holds it. */
int picindex_get_file(const struct picindex *ix, MDB_txn *txn, const uint8_t hash[32], uint64_t *bytes);
/* ... the variant `key` of `master`. */
int picindex_get_variant(const struct picindex *ix, MDB_txn *txn, const uint8_t master[32],
                         const struct pictures_vkey *key, struct variant_rec *out);

/* A record as stored (malloc'ed), and back. Decoding returns 0 or -EINVAL. */
uint8_t *picindex_encode(const struct pic *pic, size_t *len);
int picindex_decode(const void *data, size_t len, struct pic *out);

/*
 * The changes. Each is a whole write: it reads the totals, changes the tables
 * and stores the new totals, or returns a negative error (-ENOENT, -EINVAL,
 * -EFBIG, -ENOSPC, -EIO), after which the transaction must be aborted.
 */

/*
 * Stores the record `value` for `pubkey`, or deletes it when `value` is NULL;
 * with `url`, also what `url_key` gave. A file new to the index is counted
 * with `disk_bytes`, its size on disk; NULL when it is not on disk, which
 * fails with -ENOENT. `variants` are stored as variants of the record's
 * picture (none for a record without one).
 */
int picindex_put(struct picindex *ix, MDB_txn *txn, struct picindex_change *ch, const uint8_t pubkey[32],
                 const uint8_t *value, size_t len, const uint64_t *disk_bytes, const uint8_t url_key[32],
                 const struct url_rec *url, const struct picindex_variant *variants, size_t nvariants);

/*
 * Stores the variant `v` of the file `master`, unless the key names one already (which stays). Its file is counted once
 * however many variants name it, and goes with the last of them; a variant has no place in the recency order,
 * as it goes with its master. -ENOENT when `master` is not in the index, -EEXIST when the variant's bytes are a
 * file held as something else.
 */
int picindex_put_variant(struct picindex *ix, MDB_txn *txn, struct picindex_change *ch, const uint8_t master[32],
                         const struct picindex_variant *v);

/* Drops the variant `key` of `master` (its file found missing or damaged), and its file if no other names it. */
int picindex_forget_variant(struct picindex *ix, MDB_txn *txn, struct picindex_change *ch, const uint8_t master[32],
                            const struct pictures_vkey *key);

/* Moves each file touched to its new place in the recency order. */
int picindex_touch(struct picindex *ix, MDB_txn *txn, struct picindex_change *ch, const struct picindex_touch *touches,
                   size_t ntouches);

/*
 * Writes `touches`, then removes the least recently served files, and the
 * records naming them, down to `target` bytes, at most a chunk's worth of
 * files at a time; `more` says whether the target is still above.
 */
int picindex_evict(struct picindex *ix, MDB_txn *txn, struct picindex_change *ch, const struct picindex_touch *touches,
                   size_t ntouches, uint64_t target, bool *more);

/* Removes the records of `scope` (`pubkey` for PURGE_PUBKEY, whose presence `found` tells) and their files. */
int picindex_purge(struct picindex *ix, MDB_txn *txn, struct picindex_change *ch, enum pictures_scope scope,
                   const uint8_t pubkey[32], bool *found);

/* The file `hash` is missing: its entries go, with the records naming it. */
int picindex_forget(struct picindex *ix, MDB_txn *txn, struct picindex_change *ch, const uint8_t hash[32]);

/*
 * Brings the index in line with `disk`, the files listed just before (sorted
 * by picindex_sort_disk()): entries whose file is gone, or of another size
 * than the entry's (damaged; the file is listed for removal), are dropped
 * with the records naming them, and files older than `cutoff` that no entry names are
 * listed for removal. An index without totals is counted again from its
 * records.
 */
int picindex_reconcile(struct picindex *ix, MDB_txn *txn, struct picindex_change *ch,
                       const struct picindex_disk_file *disk, size_t ndisk, time_t cutoff,
                       struct picindex_reconciled *out);
void picindex_sort_disk(struct picindex_disk_file *disk, size_t ndisk);

void picindex_change_free(struct picindex_change *ch);

/* What each of the index's tables holds, for db_check(): `*n` of them, static. */
const struct db_table_check *picindex_table_checks(size_t *n);

#endif
