/* store.h -- the LMDB database: events and their indexes, one writer thread that commits in batches. */
#ifndef PFP_STORE_H
#define PFP_STORE_H

#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "filter.h"
#include "inbox.h"

/*
 * Errors are negative errno values: -ENOSPC when the database has reached
 * database_max_size_mb, -ENOENT when a record is absent, -EIO for anything else
 * LMDB reports (and logs).
 */

struct store;

/* An LMDB result as one of the errors above (0 stays 0); unexpected ones are logged. Any thread. */
int store_errno(int rc);

/*
 * A write, queued to the writer thread. `apply` runs there, inside the
 * transaction of a batch of writes: it returns 0 to keep its changes or a
 * negative error to discard them, which aborts the batch and runs every write of
 * it again alone, so no other write is lost. `apply` may thus run twice and must
 * depend only on the database. Once committed, `status` holds apply's result (or
 * the commit's error) and `done` runs on the loop thread, owning the write again.
 * `committed`, when set, runs on the writer thread once the write is committed
 * and before the next batch starts: for changes outside the database that must
 * follow the commit and precede any later write (removing files). A `solo`
 * write has a transaction of its own, so that its `committed` also precedes
 * every write after it.
 */
struct store_write {
    struct inbox_item item;
    int (*apply)(struct store *st, MDB_txn *txn, struct store_write *w);
    void (*committed)(struct store_write *w);
    void (*done)(struct store_write *w);
    int status;
    bool solo;
    struct store *st; /* set by store_submit() */
    struct store_write *next;
};

enum store_result {
    STORE_STORED,     /* new, and now stored */
    STORE_DUPLICATE,  /* this very event is already stored */
    STORE_SUPERSEDED, /* a replaceable event older than the stored version: not stored */
};

/* Storing one event: fill `id`, `rec` and `done`, then store_put_event(). */
struct store_event_write {
    struct store_write w;
    uint8_t id[32];
    uint8_t *rec; /* event_record_build() output; stays the caller's */
    size_t rec_len;
    enum store_result result;
    void (*done)(struct store_event_write *ew); /* loop thread; w.status < 0 on failure */
};

/* Told of every event newly stored, from any source, on the loop thread, before the writer's own `done`. */
typedef void (*store_listener_fn)(void *data, const struct event_view *ev);

#define STORE_MAX_LISTENERS 8

struct store {
    MDB_env *env;
    MDB_dbi events, by_author, by_author_kind, by_kind, by_time, by_tag;
    MDB_txn *rtxn; /* the loop thread's read transaction, reset between uses */
    bool rtxn_open;
    struct inbox *inbox;

    pthread_t writer;
    bool writer_running;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct store_write *head, *tail;
    bool stopping;

    struct {
        store_listener_fn fn;
        void *data;
    } listeners[STORE_MAX_LISTENERS];
    size_t nlisteners;

    uint64_t commits; /* batches committed, written by the writer thread */
};

/*
 * Opens (creating if needed) the database file `path` with room for `max_size_mb`,
 * and its event databases. Returns 0, or a negative error with a message in `err`.
 * Other modules may then open their own databases with store_open_db(), after which
 * store_start() starts the writer.
 */
int store_open(struct store *st, const char *path, uint64_t max_size_mb, struct inbox *inbox, char *err, size_t errlen);
int store_open_db(struct store *st, const char *name, unsigned flags, MDB_dbi *dbi);
int store_start(struct store *st);

/* Lets the writer commit what is queued, stops it and closes the database. Completions arrive through the inbox. */
void store_close(struct store *st);

void store_add_listener(struct store *st, store_listener_fn fn, void *data);

/* Queues a write. Loop thread. */
void store_submit(struct store *st, struct store_write *w);

/* Stores an event, applying NIP-01's rules for replaceable and addressable kinds. Loop thread. */
void store_put_event(struct store *st, struct store_event_write *ew);

/*
 * Read transactions, on the loop thread, one at a time. Everything read through
 * `txn` stays valid until store_read_end().
 */
int store_read_begin(struct store *st, MDB_txn **txn);
void store_read_end(struct store *st, MDB_txn *txn);

/* The event `id`. Returns 0 or -ENOENT. */
int store_get_event(struct store *st, MDB_txn *txn, const uint8_t id[32], struct event_view *v);

/* The newest event of `pubkey` and `kind`. Returns 0 or -ENOENT. */
int store_get_latest(struct store *st, MDB_txn *txn, const uint8_t pubkey[32], uint32_t kind, struct event_view *v);

struct store_hit {
    int64_t created_at;
    uint8_t id[32];
};

/*
 * The stored events matching any of `filters`, newest first, without
 * duplicates; each filter contributes at most its limit. At most `scan_budget`
 * index entries are examined, so a filter the indexes serve badly cannot stall
 * the loop. Returns 0 and a malloc()ed array in `*hits` (free() it), or a
 * negative error.
 */
int store_query(struct store *st, const struct filter *filters, size_t nfilters, size_t scan_budget,
                struct store_hit **hits, size_t *nhits);

#endif
