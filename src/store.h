/* store.h -- the Nostr event store on the database: events, their indexes, NIP-01 replacement, queries. */
#ifndef PFP_STORE_H
#define PFP_STORE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "event.h"
#include "filter.h"

/*
 * Errors are negative errno values, those of db.h: -EFBIG when the database
 * has reached its size, -ENOSPC when its disk is full, -ENOENT when an event is absent, -EBUSY for a nested
 * read transaction, -EIO for anything else LMDB reports (and logs).
 */

enum store_result {
    STORE_STORED,     /* new, and now stored */
    STORE_DUPLICATE,  /* this very event is already stored */
    STORE_SUPERSEDED, /* a replaceable event older than the stored version: not stored */
};

/* Storing one event: fill `id`, `rec` and `done`, then store_put_event(). */
struct store_event_write {
    struct db_write w;
    uint8_t id[32];
    uint8_t *rec; /* event_record_build() output; stays the caller's */
    size_t rec_len;
    enum store_result result;
    void (*done)(struct store_event_write *ew); /* loop thread; w.status < 0 on failure */
    struct store *_st;
    uint64_t _commit; /* the LMDB transaction that stored it */
};

/*
 * Told of every event newly stored, from any source, on the loop thread, before
 * the writer's own `done`. `commit` orders it against queries: a store_query()
 * whose `snapshot` is at least `commit` already saw the event.
 */
typedef void (*store_listener_fn)(void *data, const struct event_view *ev, uint64_t commit);

#define STORE_MAX_LISTENERS 8

/* The fields are private. */
struct store {
    struct db *_db;
    MDB_dbi _events, _by_author, _by_author_kind, _by_kind, _by_time, _by_tag;
    struct {
        store_listener_fn fn;
        void *data;
    } _listeners[STORE_MAX_LISTENERS];
    size_t _nlisteners;
};

/*
 * Opens the event tables in `db` (between db_init() and db_start()); the store
 * then writes through `db`'s writer. Nothing to free but the db. Returns 0 or an error.
 */
int store_init(struct store *st, struct db *db);

/* What each of the store's tables holds, for db_check(): `*n` of them, static. */
const struct db_table_check *store_table_checks(size_t *n);

/* The database the store lives in, for modules that keep their own tables beside it. */
struct db *store_db(struct store *st);

/* At most STORE_MAX_LISTENERS, before any event is stored. */
void store_add_listener(struct store *st, store_listener_fn fn, void *data);

/* Stores an event, applying NIP-01's rules for replaceable and addressable kinds. Loop thread. */
void store_put_event(struct store *st, struct store_event_write *ew);

/*
 * The database's read transaction (db_read_begin()), on the loop thread, one at
 * a time. Everything read through `txn` stays valid until store_read_end().
 * Returns 0, -EBUSY or another error.
 */
int store_read_begin(struct store *st, MDB_txn **txn);
void store_read_end(struct store *st, MDB_txn *txn);

/* The event `id`, valid as long as `txn`. Returns 0, -ENOENT or -EIO. */
int store_get_event(struct store *st, MDB_txn *txn, const uint8_t id[32], struct event_view *v);

/* The newest event of `pubkey` and `kind`, valid as long as `txn`. Returns 0, -ENOENT or -EIO. */
int store_get_latest(struct store *st, MDB_txn *txn, const uint8_t pubkey[32], uint32_t kind, struct event_view *v);

/*
 * The newest event of `pubkey` and `kind`, read in a transaction of its own
 * and copied out of it, so that the caller may store or read more while using
 * it. On 0, `v` points into `*copy`, which the caller free()s; otherwise
 * `*copy` is NULL. Returns 0, -ENOENT, -EBUSY (inside a read transaction) or
 * another error. Loop thread.
 */
int store_get_latest_copy(struct store *st, const uint8_t pubkey[32], uint32_t kind, struct event_view *v, void **copy);

struct store_hit {
    int64_t created_at;
    uint8_t id[32];
};

/*
 * The stored events matching any of `filters`, newest first, without
 * duplicates; each filter contributes at most its limit. At most `scan_budget`
 * index entries are examined, so a filter the indexes serve badly cannot stall
 * the loop. Returns 0 and a malloc()ed array in `*hits` (free() it), or a
 * negative error. `*snapshot` says which commits the query saw: those up to it
 * (see store_listener_fn).
 */
int store_query(struct store *st, const struct filter *filters, size_t nfilters, size_t scan_budget,
                struct store_hit **hits, size_t *nhits, uint64_t *snapshot);

/*
 * Every stored event matching any of `filters`, their limits aside, as records sorted by created_at then id
 * (oldest first), without duplicates, as a set reconciliation needs them whole: from any thread but the loop's,
 * in a read transaction of its own. Returns 0 and a malloc()ed array in `*hits` (free() it); -EMSGSIZE when more
 * than `max` match; -E2BIG when `scan_budget` index entries were examined before the matches were all found; or
 * another negative error.
 */
int store_records(struct store *st, const struct filter *filters, size_t nfilters, size_t max, size_t scan_budget,
                  struct store_hit **hits, size_t *nhits);

/*
 * The newest window of `f`'s records that holds at most `max`, oldest first, for a reconciliation that walks a
 * large set a window at a time: every record of `f` from `*since` on, where `*since` is `f`'s own since when
 * everything fits, or else the oldest second the window holds whole. Off the loop, in a read transaction of its
 * own. Returns 0 and a malloc()ed array in `*hits` (free() it); -EMSGSIZE when a single second holds more than
 * `max`; -E2BIG when `scan_budget` index entries were examined first; or another negative error.
 */
int store_window(struct store *st, const struct filter *f, size_t max, size_t scan_budget, struct store_hit **hits,
                 size_t *nhits, int64_t *since);

#endif
