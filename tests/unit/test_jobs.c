/* test_jobs.c -- job ids as clients see them, and jobs_get telling "no such job" from a database failure. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>

#include "fixture.h"
#include "jobs.h"

static void ids_are_sixteen_hex_digits(void **state)
{
    uint64_t id = 0;
    (void)state;

    assert_int_equal(jobs_parse_id("0123456789abcdef", 16, &id), 0);
    assert_int_equal(id, 0x0123456789abcdefULL);
    assert_int_equal(jobs_parse_id("0123456789abcde", 15, &id), -EINVAL);
    assert_int_equal(jobs_parse_id("0123456789abcdeg", 16, &id), -EINVAL);
}

static void an_unknown_job_is_enoent_and_an_unreadable_database_is_not(void **state)
{
    struct fixture fx;
    struct jobs js;
    json_t *job = (json_t *)&job;
    MDB_txn *txn;
    uint64_t counts[JOB_FAILED + 1];
    (void)state;

    fixture_open(&fx, "jobs");
    fixture_db_open(&fx, "jobs.db", 16);
    assert_int_equal(jobs_init(&js, &fx.loop, fx.db, NULL, NULL), 0);
    assert_int_equal(db_start(fx.db), 0);
    assert_int_equal(jobs_start(&js), 0);

    assert_int_equal(jobs_get(&js, 42, &job), -ENOENT);
    assert_null(job);
    /* The loop's one read transaction is in use: the database cannot be read now, which is no 404. */
    assert_int_equal(db_read_begin(fx.db, &txn), 0);
    assert_int_equal(jobs_get(&js, 42, &job), -EBUSY);
    db_read_end(fx.db, txn);
    jobs_count(&js, counts);
    for (int s = 0; s <= JOB_FAILED; s++)
        assert_int_equal(counts[s], 0);

    jobs_shutdown(&js);
    db_shutdown(fx.db);
    inbox_free(&fx.inbox);
    jobs_free(&js);
    fixture_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ids_are_sixteen_hex_digits),
        cmocka_unit_test(an_unknown_job_is_enoent_and_an_unreadable_database_is_not),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
