/* test_db.c -- the database layer: batched writes, a failure costing no one else, waiting writers, shutdown. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <h2o/memory.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "db.h"
#include "fixture.h"

static struct fixture fx;
static MDB_dbi table;
static int pending;

/* A write of one key and value, failing on purpose when `fail` is set. */
struct kv {
    struct db_write w;
    char key[16], value[16];
    int fail;
    bool done;
};

static void open_db(void)
{
    fixture_db_open(&fx, "test.db", 16);
    assert_int_equal(db_open_table(fx.db, "test", 0, &table), 0);
    assert_int_equal(db_start(fx.db), 0);
}

static int setup(void **state)
{
    (void)state;
    pending = 0;
    fixture_open(&fx, "db");
    open_db();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fixture_close(&fx);
    return 0;
}

static int apply_kv(MDB_txn *txn, struct db_write *w)
{
    struct kv *kv = H2O_STRUCT_FROM_MEMBER(struct kv, w, w);
    MDB_val k = {strlen(kv->key), kv->key}, v = {strlen(kv->value), kv->value};

    if (kv->fail != 0)
        return kv->fail;
    return db_errno(mdb_put(txn, table, &k, &v, 0));
}

static void kv_done(struct db_write *w)
{
    H2O_STRUCT_FROM_MEMBER(struct kv, w, w)->done = true;
    pending--;
}

static struct kv *kv_new(const char *key, const char *value, int fail)
{
    struct kv *kv = calloc(1, sizeof(*kv));

    assert_non_null(kv);
    snprintf(kv->key, sizeof(kv->key), "%s", key);
    snprintf(kv->value, sizeof(kv->value), "%s", value);
    kv->fail = fail;
    kv->w.apply = apply_kv;
    kv->w.done = kv_done;
    return kv;
}

/* The value stored under `key`, or "" when there is none. */
static const char *read_value(const char *key)
{
    static char out[32];
    MDB_txn *txn;
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc;

    assert_int_equal(db_read_begin(fx.db, &txn), 0);
    rc = db_errno(mdb_get(txn, table, &k, &v));
    assert_true(rc == 0 || rc == -ENOENT);
    snprintf(out, sizeof(out), "%.*s", rc == 0 ? (int)v.mv_size : 0, rc == 0 ? (const char *)v.mv_data : "");
    db_read_end(fx.db, txn);
    return out;
}

static void writes_apply_in_order_and_report_on_the_loop(void **state)
{
    struct kv *w[3] = {kv_new("a", "1", 0), kv_new("a", "2", 0), kv_new("b", "3", 0)};
    struct db_stats s;
    (void)state;

    pending = 3;
    for (int i = 0; i < 3; i++)
        db_submit(fx.db, &w[i]->w);
    fixture_run_until(&fx, pending == 0);
    for (int i = 0; i < 3; i++) {
        assert_true(w[i]->done);
        assert_int_equal(w[i]->w.status, 0);
        free(w[i]);
    }
    assert_string_equal(read_value("a"), "2");
    assert_string_equal(read_value("b"), "3");
    db_stats(fx.db, &s);
    assert_true(s.commits >= 1 && s.commits <= 3);
}

static void a_failing_write_costs_the_others_of_its_batch_nothing(void **state)
{
    struct kv *w[3] = {kv_new("a", "1", 0), kv_new("b", "2", -EINVAL), kv_new("c", "3", 0)};
    (void)state;

    pending = 3;
    for (int i = 0; i < 3; i++)
        db_submit(fx.db, &w[i]->w);
    fixture_run_until(&fx, pending == 0);
    assert_int_equal(w[0]->w.status, 0);
    assert_int_equal(w[1]->w.status, -EINVAL);
    assert_int_equal(w[2]->w.status, 0);
    assert_string_equal(read_value("a"), "1");
    assert_string_equal(read_value("b"), "");
    assert_string_equal(read_value("c"), "3");
    for (int i = 0; i < 3; i++)
        free(w[i]);
}

static void *submit_and_wait(void *arg)
{
    struct kv *kv = arg;
    return (void *)(intptr_t)db_submit_wait(fx.db, &kv->w);
}

static void another_thread_can_wait_for_its_write(void **state)
{
    struct kv *ok = kv_new("t", "thread", 0), *bad = kv_new("u", "x", -EPERM);
    pthread_t t;
    void *status;
    (void)state;

    assert_int_equal(pthread_create(&t, NULL, submit_and_wait, ok), 0);
    pthread_join(t, &status);
    assert_int_equal((intptr_t)status, 0);
    /* Committed when the wait returns, and `done` never ran. */
    assert_false(ok->done);
    assert_string_equal(read_value("t"), "thread");

    assert_int_equal(pthread_create(&t, NULL, submit_and_wait, bad), 0);
    pthread_join(t, &status);
    assert_int_equal((intptr_t)status, -EPERM);
    free(ok);
    free(bad);
}

static void *submit_two_then_wait(void *arg)
{
    struct kv **w = arg;

    db_submit_nowait(fx.db, &w[0]->w);
    db_submit_nowait(fx.db, &w[1]->w);
    /* Waited for out of order: each wait hears its own write. */
    if (db_wait(fx.db, &w[1]->w) != -EPERM || db_wait(fx.db, &w[0]->w) != 0)
        return (void *)1;
    return NULL;
}

static void a_thread_can_submit_now_and_wait_later(void **state)
{
    struct kv *w[2] = {kv_new("p", "pair", 0), kv_new("r", "refused", -EPERM)};
    pthread_t t;
    void *failed;
    (void)state;

    assert_int_equal(pthread_create(&t, NULL, submit_two_then_wait, w), 0);
    pthread_join(t, &failed);
    assert_null(failed);
    assert_false(w[0]->done);
    assert_string_equal(read_value("p"), "pair");
    assert_string_equal(read_value("r"), "");

    /* After shutdown the write settles at once, and waiting for it does not block. */
    db_shutdown(fx.db);
    db_submit_nowait(fx.db, &w[0]->w);
    assert_int_equal(db_wait(fx.db, &w[0]->w), -ESHUTDOWN);
    free(w[0]);
    free(w[1]);
}

static void unsynced_writes_are_read_back_and_survive_a_clean_close(void **state)
{
    struct kv *w = kv_new("n", "nosync", 0);
    (void)state;

    w->w.nosync = true;
    pending = 1;
    db_submit(fx.db, &w->w);
    fixture_run_until(&fx, pending == 0);
    assert_int_equal(w->w.status, 0);
    free(w);
    assert_string_equal(read_value("n"), "nosync");
    fixture_db_close(&fx);
    open_db();
    assert_string_equal(read_value("n"), "nosync");
}

static void writes_queued_at_shutdown_commit_and_later_ones_fail_at_once(void **state)
{
    struct kv *queued = kv_new("q", "queued", 0), *late = kv_new("l", "late", 0);
    (void)state;

    pending = 1;
    db_submit(fx.db, &queued->w);
    db_shutdown(fx.db);
    db_shutdown(fx.db);
    fixture_run_until(&fx, pending == 0);
    assert_int_equal(queued->w.status, 0);

    pending = 1;
    db_submit(fx.db, &late->w);
    /* Before db_submit() returned. */
    assert_int_equal(pending, 0);
    assert_int_equal(late->w.status, -ESHUTDOWN);
    assert_int_equal(db_submit_wait(fx.db, &late->w), -ESHUTDOWN);
    assert_string_equal(read_value("q"), "queued");
    free(queued);
    free(late);
}

static void read_transactions_do_not_nest(void **state)
{
    MDB_txn *txn, *inner;
    (void)state;

    assert_int_equal(db_read_begin(fx.db, &txn), 0);
    assert_int_equal(db_read_begin(fx.db, &inner), -EBUSY);
    db_read_end(fx.db, txn);
    assert_int_equal(db_read_begin(fx.db, &txn), 0);
    db_read_end(fx.db, txn);
}

static void a_full_map_is_efbig_and_a_full_disk_enospc(void **state)
{
    (void)state;

    assert_int_equal(db_errno(MDB_MAP_FULL), -EFBIG);
    assert_int_equal(db_errno(ENOSPC), -ENOSPC);
    assert_int_equal(db_errno(MDB_NOTFOUND), -ENOENT);
    assert_int_equal(db_errno(0), 0);
}

/* Opens the database at `path` on its own; returns db_init()'s result and leaves the handle in `*out`. */
static int try_open(const char *p, struct db **out, char *err, size_t errlen, bool read_only)
{
    return db_init(out, &(struct db_options){p, 16, read_only}, &fx.inbox, err, errlen);
}

static void a_second_open_of_the_same_file_is_refused_naming_the_holder(void **state)
{
    char err[512], lock[160], pid[32], path[128];
    struct db *second = NULL;
    (void)state;

    /* The database the fixture holds open. */
    snprintf(path, sizeof(path), "%s/test.db", fx.dir);

    snprintf(pid, sizeof(pid), "process %ld;", (long)getpid());
    assert_int_equal(try_open(path, &second, err, sizeof(err), false), -EBUSY);
    assert_null(second);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, pid));
    /* LMDB's own lock file deleted: the database is still held. */
    snprintf(lock, sizeof(lock), "%s-lock", path);
    assert_int_equal(unlink(lock), 0);
    assert_int_equal(try_open(path, &second, err, sizeof(err), false), -EBUSY);
    assert_int_equal(try_open(path, &second, err, sizeof(err), true), -EBUSY);
}

/* A write of `n` keys at once. */
struct bulk {
    struct db_write w;
    MDB_dbi t;
    int n;
};

static int apply_bulk(MDB_txn *txn, struct db_write *w)
{
    struct bulk *b = H2O_STRUCT_FROM_MEMBER(struct bulk, w, w);
    char key[16], value[64];

    for (int i = 0; i < b->n; i++) {
        MDB_val k = {(size_t)snprintf(key, sizeof(key), "key%06d", i), key};
        MDB_val v = {(size_t)snprintf(value, sizeof(value), "value %d, padded to fill more pages", i), value};
        int rc = mdb_put(txn, b->t, &k, &v, 0);
        if (rc != 0)
            return db_errno(rc);
    }
    return 0;
}

/* Writes `n` keys into a fresh database at `p`, closes it and returns the file's size. */
static off_t make_db(const char *p, int n)
{
    char err[256];
    struct db *d;
    struct bulk b = {.w.apply = apply_bulk, .n = n};
    struct stat st;

    assert_int_equal(try_open(p, &d, err, sizeof(err), false), 0);
    assert_int_equal(db_open_table(d, "t", 0, &b.t), 0);
    assert_int_equal(db_start(d), 0);
    assert_int_equal(db_submit_wait(d, &b.w), 0);
    db_shutdown(d);
    db_free(d);
    assert_int_equal(stat(p, &st), 0);
    return st.st_size;
}

/* Overwrites `len` bytes of the file at `off` with `byte`, or truncates it to `off` when `len` is 0. */
static void damage(const char *p, off_t off, size_t len, int byte)
{
    char junk[16384];
    int fd = open(p, O_WRONLY);

    assert_true(fd >= 0);
    assert_true(len <= sizeof(junk));
    memset(junk, byte, len);
    if (len == 0)
        assert_int_equal(ftruncate(fd, off), 0);
    else
        assert_int_equal(pwrite(fd, junk, len, off), (ssize_t)len);
    close(fd);
}

/* Prints the lines db_check() reports, for whoever reads the test's output. */
static void check_line(void *ctx, const char *line)
{
    (void)ctx;
    printf("  | %s\n", line);
}

/* A database of 3,000 keys named `name` in the test's directory, its path in `p`. Returns its size. */
static off_t fresh_db(const char *name, char *p, size_t len)
{
    snprintf(p, len, "%s/%s", fx.dir, name);
    return make_db(p, 3000);
}

static void a_damaged_file_is_refused_before_anything_is_read(void **state)
{
    char p[160], err[512];
    struct db *d = NULL;
    off_t size;
    (void)state;

    size = fresh_db("damaged.db", p, sizeof(p));
    assert_true(size > 16 * 4096);
    assert_int_equal(try_open(p, &d, err, sizeof(err), true), 0);
    assert_int_equal(db_check(d, NULL, 0, check_line, NULL), 0);
    db_free(d);

    damage(p, size / 2, 0, 0);
    assert_int_equal(try_open(p, &d, err, sizeof(err), false), -EUCLEAN);
    assert_non_null(strstr(err, "truncated"));

    damage(p, 0, 0, 0);
    assert_int_equal(try_open(p, &d, err, sizeof(err), false), -EUCLEAN);
    assert_non_null(strstr(err, "the file is empty"));

    assert_int_equal(unlink(p), 0);
    make_db(p, 10);
    damage(p, 0, 8192, 0x5a);
    assert_int_equal(try_open(p, &d, err, sizeof(err), false), -EUCLEAN);
    assert_non_null(strstr(err, "header"));
    assert_null(d);
    assert_int_equal(unlink(p), 0);
}

static void the_check_finds_an_overwritten_page(void **state)
{
    char p[160], err[512];
    struct db *d = NULL;
    off_t size;
    (void)state;

    size = fresh_db("pages.db", p, sizeof(p));
    /* A leaf page in the middle, the header intact: opening works, the walk does not. */
    damage(p, (size / 4096 / 2) * 4096, 4096, 0xff);
    assert_int_equal(try_open(p, &d, err, sizeof(err), true), 0);
    assert_int_equal(db_check(d, NULL, 0, check_line, NULL), -EUCLEAN);
    db_free(d);
    assert_int_equal(unlink(p), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        fixture_unit_test(writes_apply_in_order_and_report_on_the_loop),
        fixture_unit_test(a_failing_write_costs_the_others_of_its_batch_nothing),
        fixture_unit_test(another_thread_can_wait_for_its_write),
        fixture_unit_test(a_thread_can_submit_now_and_wait_later),
        fixture_unit_test(unsynced_writes_are_read_back_and_survive_a_clean_close),
        fixture_unit_test(writes_queued_at_shutdown_commit_and_later_ones_fail_at_once),
        fixture_unit_test(read_transactions_do_not_nest),
        cmocka_unit_test(a_full_map_is_efbig_and_a_full_disk_enospc),
        fixture_unit_test(a_second_open_of_the_same_file_is_refused_naming_the_holder),
        fixture_unit_test(a_damaged_file_is_refused_before_anything_is_read),
        fixture_unit_test(the_check_finds_an_overwritten_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
