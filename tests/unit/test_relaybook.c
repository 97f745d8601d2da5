/*
 * test_relaybook.c -- the discovered relays' records on a real LMDB: back-off after failures and its end after a
 * success, the order of the healthiest first, the bound on records, and records that outlive a restart.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "db.h"
#include "fixture.h"
#include "relaybook.h"

#define A "wss://a.example"
#define B "wss://b.example"
#define C "wss://c.example"

static struct relaybook *open_book(struct fixture *fx, size_t max)
{
    struct relaybook *rb;

    fixture_db_open(fx, "relays.db", 16);
    assert_int_equal(relaybook_init(&rb, fx->db, &(struct relaybook_options){max}), 0);
    assert_int_equal(db_start(fx->db), 0);
    assert_int_equal(relaybook_load(rb), 0);
    return rb;
}

/* The writer commits what is queued, its completions run, and the database closes. */
static void close_book(struct fixture *fx, struct relaybook *rb)
{
    db_shutdown(fx->db);
    inbox_drain(&fx->inbox);
    relaybook_free(rb);
    fixture_db_close(fx);
}

static void failures_back_off_doubling_and_a_success_ends_it(void **state)
{
    struct fixture fx;
    struct relaybook *rb;
    struct relaybook_record r;
    (void)state;

    fixture_open(&fx, "relaybook");
    rb = open_book(&fx, 100);
    assert_false(relaybook_backing_off(rb, A, 1000));
    assert_false(relaybook_get(rb, A, &r));

    relaybook_failure(rb, A, "cannot connect: connection refused", 1000);
    assert_true(relaybook_backing_off(rb, A, 1000));
    assert_true(relaybook_backing_off(rb, A, 1000 + RELAYBOOK_BACKOFF_BASE_S - 1));
    assert_false(relaybook_backing_off(rb, A, 1000 + RELAYBOOK_BACKOFF_BASE_S));
    relaybook_failure(rb, A, "timed out", 2000);
    assert_true(relaybook_get(rb, A, &r));
    assert_int_equal(r.failures, 2);
    assert_int_equal(r.failures_in_row, 2);
    assert_int_equal(r.retry_at, 2000 + 2 * RELAYBOOK_BACKOFF_BASE_S);
    assert_string_equal(r.last_error, "timed out");
    for (int i = 0; i < 30; i++)
        relaybook_failure(rb, A, "timed out", 3000);
    assert_true(relaybook_get(rb, A, &r));
    assert_int_equal(r.retry_at, 3000 + RELAYBOOK_BACKOFF_MAX_S);

    relaybook_success(rb, A, 40, 4000);
    assert_false(relaybook_backing_off(rb, A, 4000));
    assert_true(relaybook_get(rb, A, &r));
    assert_int_equal(r.successes, 1);
    assert_int_equal(r.failures_in_row, 0);
    assert_int_equal(r.eose_ms, 40);
    assert_int_equal(r.last_success, 4000);
    close_book(&fx, rb);
    fixture_close(&fx);
}

static void the_healthiest_come_first_and_unknown_ones_between(void **state)
{
    struct fixture fx;
    struct relaybook *rb;
    const char *urls[] = {A, B, C};
    (void)state;

    fixture_open(&fx, "relaybook");
    rb = open_book(&fx, 100);
    relaybook_failure(rb, A, "closed", 10);
    for (int i = 0; i < 5; i++)
        relaybook_success(rb, C, 20, 10);
    relaybook_rank(rb, urls, 3);
    assert_string_equal(urls[0], C);
    assert_string_equal(urls[1], B);
    assert_string_equal(urls[2], A);
    close_book(&fx, rb);
    fixture_close(&fx);
}

static void records_outlive_a_restart_and_are_bounded(void **state)
{
    struct fixture fx;
    struct relaybook *rb;
    struct relaybook_record r;
    struct relaybook_stats st;
    (void)state;

    fixture_open(&fx, "relaybook");
    rb = open_book(&fx, 2);
    relaybook_failure(rb, A, "refused address: loopback", 100);
    relaybook_success(rb, B, 30, 100);
    relaybook_success(rb, C, 30, 100); /* the book is full: A, touched least recently, goes */
    relaybook_stats(rb, 100, &st);
    assert_int_equal(st.known, 2);
    assert_int_equal(st.backing_off, 0);
    assert_false(relaybook_get(rb, A, &r));
    relaybook_failure(rb, B, "timed out", 100);
    close_book(&fx, rb);

    rb = open_book(&fx, 2);
    assert_false(relaybook_get(rb, A, &r));
    assert_true(relaybook_get(rb, B, &r));
    assert_int_equal(r.successes, 1);
    assert_int_equal(r.failures, 1);
    assert_string_equal(r.last_error, "timed out");
    assert_true(relaybook_backing_off(rb, B, 101));
    assert_true(relaybook_get(rb, C, &r));
    assert_int_equal(r.successes, 1);
    close_book(&fx, rb);
    fixture_close(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(failures_back_off_doubling_and_a_success_ends_it),
        cmocka_unit_test(the_healthiest_come_first_and_unknown_ones_between),
        cmocka_unit_test(records_outlive_a_restart_and_are_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
