/*
 * db.h -- the LMDB environment: tables opened by name, one writer thread that
 * commits queued writes in batches, the loop thread's read transactions, and
 * LMDB's results as negative errno values.
 */
#ifndef PFP_DB_H
#define PFP_DB_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "inbox.h"

/*
 * Errors are negative errno values: -EFBIG when the map is full (the database
 * has reached its configured size), -ENOSPC when the disk under it is full,
 * -ENOENT when a record is absent, -ESHUTDOWN for a write submitted after
 * db_shutdown(), -EBUSY for a nested read transaction, -EIO for anything else
 * LMDB reports (and logs). Opening adds -EBUSY (another process holds the
 * database) and -EUCLEAN (the file is damaged).
 */

struct db;

struct db_options {
    const char *path;     /* the database file */
    uint64_t max_size_mb; /* the map's size */
    bool read_only;       /* for db_check(): the file must exist, and nothing is written */
};

struct db_stats {
    uint64_t commits; /* transactions committed by the writer */
};

/* An LMDB result as one of the errors above (0 stays 0); unexpected ones are logged. Any thread. */
int db_errno(int rc);

/*
 * A write, queued to the writer thread. `apply` runs there, inside the
 * transaction of a batch of writes: it returns 0 to keep its changes or a
 * negative error to discard them, which aborts the batch and runs every write
 * of it again alone, so no other write is lost. `apply` may thus run twice: it
 * must depend only on the database and the write, and it does no file or
 * network I/O (every commit waits for it). Once committed, `status` holds
 * apply's result (or the commit's error) and `done` runs on the loop thread,
 * owning the write again. With `nosync`, a batch made only of such writes is
 * committed without a flush to disk: it is durable once a later commit flushes,
 * and a crash may lose it (for writes whose loss start-up repairs).
 */
struct db_write {
    struct inbox_item _item;
    int (*apply)(MDB_txn *txn, struct db_write *w);
    void (*done)(struct db_write *w);
    int status;
    bool nosync;
    struct db *_db;
    bool _waited;  /* submitted by db_submit_nowait(): settles to db_wait(), not to `done` */
    bool _settled; /* ... and has settled (under the db's wait lock) */
};

/*
 * Opens (creating if needed) the database file with room for `max_size_mb`;
 * completions will arrive through `inbox`. Returns 0 and the handle in `*out`
 * (db_free() it), or a negative error with a message in `err`. Tables are then
 * opened with db_open_table(), after which db_start() starts the writer.
 *
 * Before anything is read, the file is locked with flock(), so that a second
 * process on the same file fails with -EBUSY and `err` naming the file and the
 * PID that holds it; and it is checked against what LMDB's header says it
 * holds: an existing file that is empty, shorter than its last page, or whose
 * header (the two meta pages) is not LMDB's fails with -EUCLEAN.
 */
int db_init(struct db **out, const struct db_options *opt, struct inbox *inbox, char *err, size_t errlen);

/* Opens (creating) the table `name` with LMDB `flags` (MDB_DUPSORT...). Before db_start(). Returns 0 or an error. */
int db_open_table(struct db *db, const char *name, unsigned flags, MDB_dbi *dbi);

/* Starts the writer thread. Returns 0 or a negative errno. */
int db_start(struct db *db);

/*
 * Lets the writer commit what is queued and stops it; completions arrive
 * through the inbox. Later writes fail with -ESHUTDOWN. Idempotent. Loop thread.
 */
void db_shutdown(struct db *db);

/* Closes the database (after db_shutdown(), once no read transaction is open). NULL is allowed. */
void db_free(struct db *db);

/* Queues a write. Any thread. After db_shutdown() `done` hears -ESHUTDOWN before this returns. */
void db_submit(struct db *db, struct db_write *w);

/*
 * The pair for a thread that works while its write commits: db_submit_nowait()
 * queues `w`, and db_wait() blocks until it is committed or has failed and
 * returns its status; `done` is not called. Every write so submitted must be
 * waited for once, by one thread, before it is freed or submitted again. For
 * threads other than the writer; the loop thread only where blocking on a
 * commit is acceptable (at shutdown). db_wait() also works after db_shutdown().
 */
void db_submit_nowait(struct db *db, struct db_write *w);
int db_wait(struct db *db, struct db_write *w);

/* db_submit_nowait() then db_wait(). Returns the write's status. */
int db_submit_wait(struct db *db, struct db_write *w);

/*
 * Read transactions, on the loop thread, one at a time. Everything read through
 * `txn` stays valid until db_read_end(). Returns 0, -EBUSY or another error.
 */
int db_read_begin(struct db *db, MDB_txn **txn);
void db_read_end(struct db *db, MDB_txn *txn);

/*
 * A read transaction of its own, for any thread but the loop's (the environment is MDB_NOTLS): for reads too long
 * for the loop. End it with db_read_end_own() on the same thread. Returns 0 or a negative error.
 */
int db_read_begin_own(struct db *db, MDB_txn **txn);
void db_read_end_own(MDB_txn *txn);

void db_stats(const struct db *db, struct db_stats *out);

/* What a table's entries must look like, for db_check(). */
struct db_table_check {
    const char *name; /* the table, as db_open_table() names it */
    /* Returns 0 when the entry is one this table holds, else -EINVAL with the reason in `why`. */
    int (*entry)(const MDB_val *key, const MDB_val *value, char *why, size_t whylen);
};

/* Problems db_check() reports one by one; past them it only counts. */
#define DB_CHECK_MAX_REPORTED 20

/*
 * Walks the whole database read-only (after db_init(), before db_start()):
 * every table and every entry, in order, counted against what the table says
 * it holds; every page the free list names within the file; and each entry of
 * a table named in `checks` given to its check. `report` hears one line per
 * table and per problem (the first DB_CHECK_MAX_REPORTED) and a last line
 * with the verdict. A crash of LMDB on a damaged page (an assertion, SIGSEGV,
 * SIGBUS) is caught and reported as damage; so this is for a process that
 * does nothing else meanwhile. Returns 0 when the database is sound, -EUCLEAN
 * when it is damaged, or another error when it could not be read.
 */
int db_check(struct db *db, const struct db_table_check *checks, size_t nchecks,
             void (*report)(void *ctx, const char *line), void *ctx);

#endif
