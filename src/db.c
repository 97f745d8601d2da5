/* db.c -- the LMDB environment, one writer thread committing batches, read transactions on the loop. */
#include "db.h"

#include <assert.h>
#include <errno.h>
#include <h2o/memory.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "fifo.h"

/*
 * Writes per transaction. Each commit costs an fsync, so larger batches write
 * faster; LMDB keeps the page buffers of its largest transaction for reuse, so the
 * heap grows with the batch (measured: 64 gives 14,600 events/s and 6 MiB, 1024
 * gives 25,000 events/s and 20 MiB).
 */
#define BATCH_MAX 1024

struct db {
    MDB_env *env;
    MDB_txn *rtxn; /* the loop thread's read transaction, reset between uses */
    bool rtxn_open;
    struct inbox *inbox;
    struct fifo queue; /* writes for the writer thread */
    pthread_t writer;
    bool writer_running, shut;
    uint64_t commits; /* written by the writer thread */
    /* Writes waited for with db_wait() settle under this lock; few threads wait, so one condition serves all. */
    pthread_mutex_t wait_lock;
    pthread_cond_t settled;
};

int db_errno(int rc)
{
    switch (rc) {
    case 0: return 0;
    case MDB_NOTFOUND: return -ENOENT;
    case MDB_MAP_FULL: return -ENOSPC;
    default: log_error("database: %s", mdb_strerror(rc)); return rc > 0 ? -rc : -EIO;
    }
}

static struct db_write *write_of(h2o_linklist_t *link)
{
    return H2O_STRUCT_FROM_MEMBER(struct db_write, _item._q._link, link);
}

static void on_write_completed(struct inbox_item *item)
{
    struct db_write *w = H2O_STRUCT_FROM_MEMBER(struct db_write, _item, item);
    w->done(w);
}

/* Hands a settled write back: to the thread waiting for it, or to the loop. */
static void settle(struct db *db, struct db_write *w)
{
    if (!w->_waited) {
        w->_item.cb = on_write_completed;
        inbox_post(db->inbox, &w->_item);
        return;
    }
    pthread_mutex_lock(&db->wait_lock);
    w->_settled = true;
    pthread_cond_broadcast(&db->settled);
    pthread_mutex_unlock(&db->wait_lock);
}

static int commit(struct db *db, MDB_txn *txn, bool nosync)
{
    int rc;

    /* Only the writer changes the flag, and only between its transactions. */
    if (nosync)
        mdb_env_set_flags(db->env, MDB_NOSYNC, 1);
    rc = mdb_txn_commit(txn);
    if (nosync)
        mdb_env_set_flags(db->env, MDB_NOSYNC, 0);
    if (rc == 0)
        db->commits++;
    return rc;
}

/* Runs `w` alone in a transaction of its own. */
static void run_alone(struct db *db, struct db_write *w)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(db->env, NULL, 0, &txn);

    if (rc != 0) {
        w->status = db_errno(rc);
        return;
    }
    w->status = w->apply(txn, w);
    if (w->status != 0)
        mdb_txn_abort(txn);
    else if ((rc = commit(db, txn, w->nosync)) != 0)
        w->status = db_errno(rc);
}

/*
 * Runs a batch in one transaction, one commit for all. If a write fails, LMDB may
 * have left the transaction unusable, so the batch is aborted and every write is
 * run again in a transaction of its own: a failure costs nobody else their write.
 */
static void run_batch(struct db *db, h2o_linklist_t *batch)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(db->env, NULL, 0, &txn);
    bool failed = rc != 0, nosync = true;

    for (h2o_linklist_t *l = batch->next; l != batch && !failed; l = l->next) {
        struct db_write *w = write_of(l);
        nosync = nosync && w->nosync;
        failed = (w->status = w->apply(txn, w)) != 0;
    }
    if (!failed) {
        if ((rc = commit(db, txn, nosync)) == 0)
            return;
    } else if (rc == 0) {
        mdb_txn_abort(txn);
    }
    for (h2o_linklist_t *l = batch->next; l != batch; l = l->next)
        run_alone(db, write_of(l));
}

static void *writer_main(void *arg)
{
    struct db *db = arg;
    h2o_linklist_t batch;

    h2o_linklist_init_anchor(&batch);
    while (fifo_pop(&db->queue, &batch, BATCH_MAX, true) > 0) {
        run_batch(db, &batch);
        while (!h2o_linklist_is_empty(&batch)) {
            struct db_write *w = write_of(batch.next);
            h2o_linklist_unlink(&w->_item._q._link);
            settle(db, w);
        }
    }
    return NULL;
}

/* Queues `w`; false when the writer has stopped, with `w` still the caller's. */
static bool enqueue(struct db *db, struct db_write *w)
{
    w->_db = db;
    w->status = 0;
    if (fifo_push(&db->queue, &w->_item._q) == 0)
        return true;
    w->status = -ESHUTDOWN;
    return false;
}

void db_submit(struct db *db, struct db_write *w)
{
    w->_waited = false;
    if (!enqueue(db, w))
        w->done(w);
}

void db_submit_nowait(struct db *db, struct db_write *w)
{
    w->_waited = true;
    w->_settled = false;
    if (!enqueue(db, w))
        w->_settled = true;
}

int db_wait(struct db *db, struct db_write *w)
{
    assert(w->_waited);
    pthread_mutex_lock(&db->wait_lock);
    while (!w->_settled)
        pthread_cond_wait(&db->settled, &db->wait_lock);
    pthread_mutex_unlock(&db->wait_lock);
    return w->status;
}

int db_submit_wait(struct db *db, struct db_write *w)
{
    db_submit_nowait(db, w);
    return db_wait(db, w);
}

int db_init(struct db **out, const struct db_options *opt, struct inbox *inbox, char *err, size_t errlen)
{
    struct db *db = calloc(1, sizeof(*db));
    int rc, dead;

    *out = NULL;
    if (db == NULL)
        return -ENOMEM;
    db->inbox = inbox;
    pthread_mutex_init(&db->wait_lock, NULL);
    pthread_cond_init(&db->settled, NULL);
    if ((rc = fifo_init(&db->queue)) != 0) {
        snprintf(err, errlen, "cannot open the database %s: %s", opt->path, strerror(-rc));
        pthread_cond_destroy(&db->settled);
        pthread_mutex_destroy(&db->wait_lock);
        free(db);
        return rc;
    }
    if ((rc = mdb_env_create(&db->env)) != 0 || (rc = mdb_env_set_maxdbs(db->env, 32)) != 0 ||
        (rc = mdb_env_set_mapsize(db->env, (size_t)opt->max_size_mb << 20)) != 0)
        goto fail;
    /* NOTLS: the loop keeps one read transaction it resets and renews; NORDAHEAD suits random reads. */
    if ((rc = mdb_env_open(db->env, opt->path, MDB_NOSUBDIR | MDB_NOTLS | MDB_NORDAHEAD, 0644)) != 0)
        goto fail;
    mdb_reader_check(db->env, &dead);
    if ((rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &db->rtxn)) != 0)
        goto fail;
    mdb_txn_reset(db->rtxn);
    *out = db;
    return 0;

fail:
    snprintf(err, errlen, "cannot open the database %s: %s", opt->path, mdb_strerror(rc));
    db_free(db);
    return rc > 0 ? -rc : -EIO;
}

int db_open_table(struct db *db, const char *name, unsigned flags, MDB_dbi *dbi)
{
    MDB_txn *txn;
    int rc;

    assert(!db->writer_running);
    if ((rc = mdb_txn_begin(db->env, NULL, 0, &txn)) != 0)
        return db_errno(rc);
    if ((rc = mdb_dbi_open(txn, name, flags | MDB_CREATE, dbi)) != 0) {
        mdb_txn_abort(txn);
        return db_errno(rc);
    }
    return db_errno(mdb_txn_commit(txn));
}

int db_start(struct db *db)
{
    int r = pthread_create(&db->writer, NULL, writer_main, db);

    if (r != 0)
        return -r;
    db->writer_running = true;
    return 0;
}

void db_shutdown(struct db *db)
{
    h2o_linklist_t left;

    if (db == NULL || db->shut)
        return;
    db->shut = true;
    fifo_shutdown(&db->queue);
    if (db->writer_running) {
        pthread_join(db->writer, NULL);
        db->writer_running = false;
    }
    /* Queued before the writer ever started: they fail, and their owners hear it. */
    h2o_linklist_init_anchor(&left);
    fifo_pop(&db->queue, &left, SIZE_MAX, false);
    while (!h2o_linklist_is_empty(&left)) {
        struct db_write *w = write_of(left.next);
        h2o_linklist_unlink(&w->_item._q._link);
        w->status = -ESHUTDOWN;
        settle(db, w);
    }
}

void db_free(struct db *db)
{
    if (db == NULL)
        return;
    db_shutdown(db);
    if (db->rtxn != NULL)
        mdb_txn_abort(db->rtxn);
    if (db->env != NULL)
        mdb_env_close(db->env);
    fifo_free(&db->queue);
    pthread_cond_destroy(&db->settled);
    pthread_mutex_destroy(&db->wait_lock);
    free(db);
}

int db_read_begin(struct db *db, MDB_txn **txn)
{
    int rc;

    if (db->rtxn_open) {
        log_error("database: nested read transaction");
        return -EBUSY;
    }
    if ((rc = mdb_txn_renew(db->rtxn)) != 0)
        return db_errno(rc);
    db->rtxn_open = true;
    *txn = db->rtxn;
    return 0;
}

void db_read_end(struct db *db, MDB_txn *txn)
{
    assert(txn == db->rtxn && db->rtxn_open);
    (void)txn;
    mdb_txn_reset(db->rtxn);
    db->rtxn_open = false;
}

void db_stats(const struct db *db, struct db_stats *out)
{
    out->commits = db->commits;
}
