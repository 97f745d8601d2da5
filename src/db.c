/* db.c -- the LMDB environment, one writer thread committing batches, read transactions on the loop. */
#include "db.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <h2o/memory.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "err.h"
#include "hex.h"
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
    int lock_fd;   /* the database file, flock()ed for as long as the handle lives */
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
    case MDB_MAP_FULL: return -EFBIG;
    /* The disk is full: not the map. Callers say so in their own words. */
    case ENOSPC: return -ENOSPC;
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

/* The PID holding a flock() on the file open as `fd`, from /proc/locks; -1 when it cannot be told. */
static long lock_holder(int fd)
{
    struct stat st;
    char line[256];
    long pid = -1;
    FILE *f;

    if (fstat(fd, &st) != 0 || (f = fopen("/proc/locks", "re")) == NULL)
        return -1;
    /* "1: FLOCK  ADVISORY  WRITE 4242 fe:00:1234567 0 EOF"; a waiter's line reads "1: -> FLOCK ...". */
    while (pid < 0 && fgets(line, sizeof(line), f) != NULL) {
        char kind[16];
        unsigned maj, min;
        unsigned long ino;
        long p;
        if (sscanf(line, "%*d: %15s %*s %*s %ld %x:%x:%lu", kind, &p, &maj, &min, &ino) == 5 &&
            strcmp(kind, "FLOCK") == 0 && maj == major(st.st_dev) && min == minor(st.st_dev) && ino == st.st_ino)
            pid = p;
    }
    fclose(f);
    return pid;
}

/*
 * Opens and locks the database file itself, not a lock file beside it: LMDB's
 * own lock file only coordinates processes that find it, and one deleted (or
 * on another path to the same file) let a second relay write the same file.
 * A flock() belongs to the open file, so LMDB's fcntl() locks and descriptors
 * never release it. `*fresh` tells whether the file was created here.
 */
static int lock_file(struct db *db, const struct db_options *opt, bool *fresh, char *err, size_t errlen)
{
    int flags = (opt->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;

    *fresh = false;
    if (!opt->read_only && (db->lock_fd = open(opt->path, flags | O_CREAT | O_EXCL, 0644)) >= 0)
        *fresh = true;
    else if ((db->lock_fd = open(opt->path, flags)) < 0)
        return err_set(err, errlen, -errno, "cannot open the database %s: %s", opt->path, strerror(errno));
    if (flock(db->lock_fd, (opt->read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) == 0)
        return 0;
    if (errno != EWOULDBLOCK)
        return err_set(err, errlen, -errno, "cannot lock the database %s: %s", opt->path, strerror(errno));
    long pid = lock_holder(db->lock_fd);
    char who[48] = "another process";
    if (pid > 0)
        snprintf(who, sizeof(who), "process %ld", pid);
    return err_set(err, errlen, -EBUSY,
                   "the database %s is in use by %s; one relay per database: stop it, or give this one "
                   "another database_path",
                   opt->path, who);
}

/* Whether the file holds every page its header counts: a truncated file would fault (SIGBUS) on the first read. */
static int check_size(struct db *db, const char *path, char *err, size_t errlen)
{
    MDB_envinfo info;
    MDB_stat st;
    struct stat fst;
    uint64_t need;

    if (mdb_env_info(db->env, &info) != 0 || mdb_env_stat(db->env, &st) != 0 || fstat(db->lock_fd, &fst) != 0)
        return err_set(err, errlen, -EIO, "cannot read the size of the database %s", path);
    need = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    if ((uint64_t)fst.st_size >= need)
        return 0;
    return err_set(err, errlen, -EUCLEAN,
                   "the database %s is damaged: the file has %llu bytes, but its header says it holds %llu "
                   "(%llu pages of %u bytes); it was truncated. Restore it from a backup, or move it away to "
                   "start with an empty database",
                   path, (unsigned long long)fst.st_size, (unsigned long long)need,
                   (unsigned long long)info.me_last_pgno + 1, st.ms_psize);
}

/* LMDB aborts the process after this: at least the log says why, and what to run. */
static void on_assert(MDB_env *env, const char *msg)
{
    const char *path = "";

    mdb_env_get_path(env, &path);
    log_error("database: LMDB found the database %s damaged (%s); it stops the relay now. Check it with "
              "pfpcache-relay --check-db",
              path, msg);
}

int db_init(struct db **out, const struct db_options *opt, struct inbox *inbox, char *err, size_t errlen)
{
    struct db *db = calloc(1, sizeof(*db));
    struct stat st;
    unsigned flags = MDB_NOSUBDIR | MDB_NOTLS | MDB_NORDAHEAD;
    bool fresh = false;
    int rc, dead;

    *out = NULL;
    if (db == NULL)
        return -ENOMEM;
    db->lock_fd = -1;
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
    if ((rc = lock_file(db, opt, &fresh, err, errlen)) != 0)
        goto fail_errno;
    /* LMDB takes an empty file for a new database: one that lost its contents would start empty, silently. */
    if (!fresh && fstat(db->lock_fd, &st) == 0 && st.st_size == 0) {
        rc = err_set(err, errlen, -EUCLEAN,
                     "the database %s is damaged: the file is empty. Restore it from a backup, or remove it to "
                     "start with an empty database",
                     opt->path);
        goto fail_errno;
    }
    if ((rc = mdb_env_create(&db->env)) != 0 || (rc = mdb_env_set_maxdbs(db->env, 32)) != 0 ||
        (rc = mdb_env_set_mapsize(db->env, (size_t)opt->max_size_mb << 20)) != 0)
        goto fail;
    mdb_env_set_assert(db->env, on_assert);
    /* NOTLS: the loop keeps one read transaction it resets and renews; NORDAHEAD suits random reads. */
    if (opt->read_only)
        flags |= MDB_RDONLY;
    if ((rc = mdb_env_open(db->env, opt->path, flags, 0644)) != 0) {
        if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH) {
            rc = err_set(err, errlen, -EUCLEAN,
                         "the database %s is damaged: its header (the two meta pages at the start of the file) is "
                         "not that of an LMDB database (%s). Restore it from a backup, or move it away to start "
                         "with an empty database",
                         opt->path, mdb_strerror(rc));
            goto fail_errno;
        }
        goto fail;
    }
    if ((rc = check_size(db, opt->path, err, errlen)) != 0)
        goto fail_errno;
    mdb_reader_check(db->env, &dead);
    if ((rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &db->rtxn)) != 0)
        goto fail;
    mdb_txn_reset(db->rtxn);
    *out = db;
    return 0;

fail:
    snprintf(err, errlen, "cannot open the database %s: %s", opt->path, mdb_strerror(rc));
    rc = rc > 0 ? -rc : -EIO;
fail_errno:
    /* A file created here and left empty would read as damaged at the next start. */
    if (fresh && rc != -EBUSY)
        unlink(opt->path);
    db_free(db);
    return rc;
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
    /* Last: the lock outlives every use of the file. */
    if (db->lock_fd >= 0)
        close(db->lock_fd);
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

int db_read_begin_own(struct db *db, MDB_txn **txn)
{
    return db_errno(mdb_txn_begin(db->env, NULL, MDB_RDONLY, txn));
}

void db_read_end_own(MDB_txn *txn)
{
    mdb_txn_abort(txn);
}

void db_stats(const struct db *db, struct db_stats *out)
{
    out->commits = db->commits;
}

/* --- checking --------------------------------------------------------------------------------------------------- */

struct check {
    struct db *db;
    void (*report)(void *ctx, const char *line);
    void *ctx;
    uint64_t problems;
    uint64_t pages;      /* in the file, as the header counts them */
    uint64_t used_pages; /* held by the tables */
    MDB_txn *txn;
    MDB_cursor *cursor;     /* the walk's, closed after a crash too */
    MDB_val prev_k, prev_v; /* the entry before, copied */
    size_t prev_cap;
    uint8_t *prev;
};

/* A crash inside LMDB while it reads a damaged page comes back here instead of ending the process. */
static sigjmp_buf check_jump;
static volatile sig_atomic_t check_armed;
static char check_crash[256];

static void on_check_signal(int sig)
{
    if (check_armed) {
        check_armed = 0;
        siglongjmp(check_jump, sig);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* LMDB calls this on a failed assertion and would abort() after it: a damaged page, to LMDB. */
static void on_check_assert(MDB_env *env, const char *msg)
{
    (void)env;
    snprintf(check_crash, sizeof(check_crash), "%s", msg);
    if (check_armed) {
        check_armed = 0;
        siglongjmp(check_jump, SIGABRT);
    }
}

static void check_say(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check_say(struct check *c, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    c->report(c->ctx, line);
}

static void check_problem(struct check *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check_problem(struct check *c, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    if (c->problems++ >= DB_CHECK_MAX_REPORTED)
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    c->report(c->ctx, line);
}

/* The first bytes of a key in hex, to name an entry. */
static const char *key_hex(const MDB_val *k, char out[33])
{
    size_t n = k->mv_size < 16 ? k->mv_size : 16;

    hex_encode(k->mv_data, n, out);
    out[2 * n] = '\0';
    return out;
}

static void remember_prev(struct check *c, const MDB_val *k, const MDB_val *v)
{
    size_t need = k->mv_size + v->mv_size + 1;

    if (need > c->prev_cap) {
        c->prev_cap = need * 2;
        if ((c->prev = realloc(c->prev, c->prev_cap)) == NULL)
            abort();
    }
    memcpy(c->prev, k->mv_data, k->mv_size);
    memcpy(c->prev + k->mv_size, v->mv_data, v->mv_size);
    c->prev_k = (MDB_val){k->mv_size, c->prev};
    c->prev_v = (MDB_val){v->mv_size, c->prev + k->mv_size};
}

/* Every entry of the table `name`: in order, decoding, as many as the table says. */
static void check_table(struct check *c, MDB_txn *txn, const char *name, const struct db_table_check *tc)
{
    MDB_dbi dbi;
    MDB_stat st;
    MDB_val k, v;
    unsigned flags;
    uint64_t n = 0;
    char why[256], hex[33];
    int rc;

    if ((rc = mdb_dbi_open(txn, name, 0, &dbi)) != 0 || (rc = mdb_dbi_flags(txn, dbi, &flags)) != 0 ||
        (rc = mdb_stat(txn, dbi, &st)) != 0 || (rc = mdb_cursor_open(txn, dbi, &c->cursor)) != 0) {
        check_problem(c, "table %s: cannot be opened: %s", name, mdb_strerror(rc));
        return;
    }
    c->used_pages += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
    for (rc = mdb_cursor_get(c->cursor, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c->cursor, &k, &v, MDB_NEXT)) {
        if (n++ > 0) {
            int kc = mdb_cmp(txn, dbi, &c->prev_k, &k);
            if (kc > 0 || (kc == 0 && (!(flags & MDB_DUPSORT) || mdb_dcmp(txn, dbi, &c->prev_v, &v) >= 0)))
                check_problem(c, "table %s: entry %llu (key %s) is out of order", name, (unsigned long long)n,
                              key_hex(&k, hex));
        }
        if (tc != NULL && tc->entry(&k, &v, why, sizeof(why)) != 0)
            check_problem(c, "table %s: entry %llu (key %s) does not decode: %s", name, (unsigned long long)n,
                          key_hex(&k, hex), why);
        remember_prev(c, &k, &v);
    }
    if (rc != MDB_NOTFOUND)
        check_problem(c, "table %s: cannot be read past entry %llu: %s", name, (unsigned long long)n, mdb_strerror(rc));
    else if (n != st.ms_entries)
        check_problem(c, "table %s: holds %llu entries but counts %llu", name, (unsigned long long)n,
                      (unsigned long long)st.ms_entries);
    mdb_cursor_close(c->cursor);
    c->cursor = NULL;
    check_say(c, "  %s: %llu entries, %llu pages", name, (unsigned long long)n,
              (unsigned long long)(st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages));
}

/* LMDB's free list: each entry a transaction id and the pages it freed, a count then page numbers. */
static void check_free_list(struct check *c, MDB_txn *txn)
{
    MDB_val k, v;
    uint64_t entries = 0, free_pages = 0;
    int rc;

    /* Dbi 0 is the free list; a read-only transaction may walk it. */
    if ((rc = mdb_cursor_open(txn, 0, &c->cursor)) != 0) {
        check_problem(c, "the free list cannot be opened: %s", mdb_strerror(rc));
        return;
    }
    for (rc = mdb_cursor_get(c->cursor, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c->cursor, &k, &v, MDB_NEXT)) {
        size_t count, pg;

        entries++;
        if (v.mv_size < sizeof(size_t) || v.mv_size % sizeof(size_t) != 0 ||
            (memcpy(&count, v.mv_data, sizeof(count)), (count + 1) * sizeof(size_t) != v.mv_size)) {
            check_problem(c, "the free list: entry %llu does not decode", (unsigned long long)entries);
            continue;
        }
        for (size_t i = 1; i <= count; i++) {
            memcpy(&pg, (const uint8_t *)v.mv_data + i * sizeof(size_t), sizeof(pg));
            if (pg < 2 || pg >= c->pages) {
                check_problem(c, "the free list: entry %llu names page %zu, outside the file's %llu",
                              (unsigned long long)entries, pg, (unsigned long long)c->pages);
                break;
            }
        }
        free_pages += count;
    }
    if (rc != MDB_NOTFOUND)
        check_problem(c, "the free list cannot be read past entry %llu: %s", (unsigned long long)entries,
                      mdb_strerror(rc));
    mdb_cursor_close(c->cursor);
    c->cursor = NULL;
    c->used_pages += free_pages;
    check_say(c, "  free list: %llu entries, %llu free pages", (unsigned long long)entries,
              (unsigned long long)free_pages);
}

/* The tables are the entries of the unnamed one; each is walked. */
static void check_tables(struct check *c, MDB_txn *txn, const struct db_table_check *checks, size_t nchecks)
{
    MDB_dbi main;
    MDB_stat st;
    MDB_cursor *names;
    MDB_val k, v;
    char name[256];
    int rc;

    if ((rc = mdb_dbi_open(txn, NULL, 0, &main)) != 0 || (rc = mdb_stat(txn, main, &st)) != 0 ||
        (rc = mdb_cursor_open(txn, main, &names)) != 0) {
        check_problem(c, "the list of tables cannot be read: %s", mdb_strerror(rc));
        return;
    }
    c->used_pages += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
    for (rc = mdb_cursor_get(names, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(names, &k, &v, MDB_NEXT)) {
        const struct db_table_check *tc = NULL;

        if (k.mv_size == 0 || k.mv_size >= sizeof(name) || memchr(k.mv_data, '\0', k.mv_size) != NULL) {
            check_problem(c, "the list of tables holds a name that is not one");
            continue;
        }
        memcpy(name, k.mv_data, k.mv_size);
        name[k.mv_size] = '\0';
        for (size_t i = 0; i < nchecks && tc == NULL; i++) {
            if (strcmp(checks[i].name, name) == 0)
                tc = &checks[i];
        }
        check_table(c, txn, name, tc);
    }
    if (rc != MDB_NOTFOUND)
        check_problem(c, "the list of tables cannot be read: %s", mdb_strerror(rc));
    mdb_cursor_close(names);
}

int db_check(struct db *db, const struct db_table_check *checks, size_t nchecks,
             void (*report)(void *ctx, const char *line), void *ctx)
{
    struct check c = {.db = db, .report = report, .ctx = ctx};
    struct sigaction sa = {.sa_handler = on_check_signal}, old_segv, old_bus;
    MDB_envinfo info;
    MDB_stat st;
    int rc, sig;

    if ((rc = mdb_env_info(db->env, &info)) != 0 || (rc = mdb_env_stat(db->env, &st)) != 0)
        return db_errno(rc);
    c.pages = (uint64_t)info.me_last_pgno + 1;
    check_say(&c, "%llu pages of %u bytes, last written by transaction %llu", (unsigned long long)c.pages, st.ms_psize,
              (unsigned long long)info.me_last_txnid);
    if ((rc = db_read_begin(db, &c.txn)) != 0)
        return rc;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
    mdb_env_set_assert(db->env, on_check_assert);
    check_crash[0] = '\0';
    if ((sig = sigsetjmp(check_jump, 1)) == 0) {
        check_armed = 1;
        check_tables(&c, c.txn, checks, nchecks);
        check_free_list(&c, c.txn);
        check_armed = 0;
    } else {
        check_problem(&c, "LMDB failed on a damaged page (%s%s%s)", strsignal(sig), check_crash[0] ? ": " : "",
                      check_crash);
        /* A read-only cursor holds only its own memory, whatever state the crash left it in. */
        if (c.cursor != NULL)
            mdb_cursor_close(c.cursor);
    }
    mdb_env_set_assert(db->env, on_assert);
    sigaction(SIGSEGV, &old_segv, NULL);
    sigaction(SIGBUS, &old_bus, NULL);
    db_read_end(db, c.txn);
    if (c.used_pages + 2 > c.pages)
        check_problem(&c, "the tables and the free list hold %llu pages, more than the file's %llu",
                      (unsigned long long)c.used_pages + 2, (unsigned long long)c.pages);
    free(c.prev);
    if (c.problems > DB_CHECK_MAX_REPORTED)
        check_say(&c, "... and %llu more problems", (unsigned long long)(c.problems - DB_CHECK_MAX_REPORTED));
    if (c.problems > 0) {
        check_say(&c, "damaged: %llu problem%s", (unsigned long long)c.problems, c.problems == 1 ? "" : "s");
        return -EUCLEAN;
    }
    check_say(&c, "sound");
    return 0;
}
