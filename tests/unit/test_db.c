/* test_db.c -- the database layer: batched writes, a failure costing no one else, waiting writers, shutdown. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <h2o/memory.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static void a_full_map_is_enospc(void **state)
{
    (void)state;

    assert_int_equal(db_errno(MDB_MAP_FULL), -ENOSPC);
    assert_int_equal(db_errno(MDB_NOTFOUND), -ENOENT);
    assert_int_equal(db_errno(0), 0);
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
        cmocka_unit_test(a_full_map_is_enospc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
