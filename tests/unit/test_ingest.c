/* test_ingest.c -- the ingest pipeline on a real loop, store and verify pool, with events signed here. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <time.h>

#include <h2o/memory.h>

#include "hex.h"
#include "ingest.h"
#include "testnostr.h"

static struct fixture fx;
static struct test_pipeline pipeline;
static unsigned heard; /* store listener calls */

/* One submitted event and what it came to. */
struct outcome {
    struct ingest_job job;
    bool done;
    int status;
    char json[1024];
};

static void on_stored(void *data, const struct event_view *ev, uint64_t commit)
{
    (void)commit;
    (void)data;
    (void)ev;
    heard++;
}

static int setup(void **state)
{
    (void)state;
    fixture_open(&fx, "ingest");
    test_pipeline_open(&pipeline, &fx, on_stored);
    heard = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    test_pipeline_shutdown(&pipeline, &fx);
    test_pipeline_free(&pipeline);
    fixture_close(&fx);
    return 0;
}

static void on_done(struct ingest_job *job, int status, const struct event_view *ev)
{
    struct outcome *o = H2O_STRUCT_FROM_MEMBER(struct outcome, job, job);

    assert_true(ev->json_len < sizeof(o->json));
    memcpy(o->json, ev->json, ev->json_len);
    o->json[ev->json_len] = '\0';
    o->status = status;
    o->done = true;
}

/* Takes `obj` through both stages; returns what ingest_submit() returned. */
static int submit(json_t *obj, struct outcome *o)
{
    struct event ev;
    char reason[200];
    int rc;

    memset(o, 0, sizeof(*o));
    o->job.done = on_done;
    if ((rc = ingest_check(pipeline.ig, obj, &ev, reason, sizeof(reason))) != 0)
        fail_msg("ingest_check: %d %s", rc, reason);
    rc = ingest_submit(pipeline.ig, &ev, &o->job);
    event_free(&ev);
    return rc;
}

static bool is_stored(json_t *obj)
{
    struct event_view v;
    uint8_t id[32];
    MDB_txn *txn;
    bool found;

    hex_decode(json_string_value(json_object_get(obj, "id")), 64, id, 32);
    assert_int_equal(store_read_begin(&pipeline.st, &txn), 0);
    found = store_get_event(&pipeline.st, txn, id, &v) == 0;
    store_read_end(&pipeline.st, txn);
    return found;
}

static void a_valid_event_is_verified_stored_and_heard(void **state)
{
    struct test_key k;
    struct outcome o;
    struct ingest_stats s;
    json_t *obj;
    (void)state;

    test_key(&k, 1);
    obj = test_event(&k, 1, (int64_t)time(NULL), "hello");
    assert_int_equal(submit(obj, &o), 0);
    fixture_run_until(&fx, o.done);
    assert_int_equal(o.status, INGEST_STORED);
    assert_non_null(strstr(o.json, "\"content\":\"hello\""));
    assert_int_equal(heard, 1);
    assert_true(is_stored(obj));
    ingest_stats(pipeline.ig, &s);
    assert_int_equal(s.verified, 1);
    assert_int_equal(s.bad_signatures, 0);
    json_decref(obj);
}

static void a_stored_event_is_a_duplicate_without_a_signature_check(void **state)
{
    struct test_key k;
    struct outcome o;
    struct ingest_stats s;
    json_t *obj;
    (void)state;

    test_key(&k, 2);
    obj = test_event(&k, 1, (int64_t)time(NULL), "twice");
    assert_int_equal(submit(obj, &o), 0);
    fixture_run_until(&fx, o.done);
    assert_int_equal(submit(obj, &o), INGEST_DUPLICATE);
    assert_false(o.done);
    ingest_stats(pipeline.ig, &s);
    assert_int_equal(s.verified, 1);
    assert_int_equal(s.known, 1);
    assert_int_equal(heard, 1);
    json_decref(obj);
}

static void two_copies_in_flight_are_stored_once(void **state)
{
    struct test_key k;
    struct outcome a, b;
    json_t *obj;
    (void)state;

    test_key(&k, 3);
    obj = test_event(&k, 1, (int64_t)time(NULL), "race");
    assert_int_equal(submit(obj, &a), 0);
    assert_int_equal(submit(obj, &b), 0);
    fixture_run_until(&fx, a.done);
    fixture_run_until(&fx, b.done);
    assert_int_equal(a.status, INGEST_STORED);
    assert_int_equal(b.status, INGEST_DUPLICATE);
    assert_int_equal(heard, 1);
    json_decref(obj);
}

static void a_forged_signature_is_rejected_and_not_stored(void **state)
{
    struct test_key k;
    struct outcome o;
    struct ingest_stats s;
    json_t *obj;
    (void)state;

    test_key(&k, 4);
    obj = test_event(&k, 1, (int64_t)time(NULL), "forged");
    test_tamper(obj, "sig");
    assert_int_equal(submit(obj, &o), 0);
    fixture_run_until(&fx, o.done);
    assert_int_equal(o.status, -EKEYREJECTED);
    assert_false(is_stored(obj));
    assert_int_equal(heard, 0);
    ingest_stats(pipeline.ig, &s);
    assert_int_equal(s.bad_signatures, 1);
    json_decref(obj);
}

static void an_id_that_is_not_the_hash_is_refused_naming_the_id(void **state)
{
    struct test_key k;
    struct event ev;
    uint8_t id[32];
    char reason[200];
    json_t *obj;
    (void)state;

    test_key(&k, 5);
    obj = test_event(&k, 1, (int64_t)time(NULL), "original");
    json_object_set_new(obj, "content", json_string("altered"));
    assert_int_equal(ingest_check(pipeline.ig, obj, &ev, reason, sizeof(reason)), -EBADMSG);
    hex_decode(json_string_value(json_object_get(obj, "id")), 64, id, 32);
    assert_memory_equal(ev.id, id, 32);
    assert_string_equal(reason, "the id is not the hash of the event");
    json_decref(obj);
}

static void a_date_too_far_ahead_is_refused(void **state)
{
    struct test_key k;
    struct event ev;
    char reason[200];
    json_t *near, *far;
    (void)state;

    test_key(&k, 6);
    near = test_event(&k, 1, (int64_t)time(NULL) + 500, "soon");
    far = test_event(&k, 1, (int64_t)time(NULL) + 700, "later");
    assert_int_equal(ingest_check(pipeline.ig, near, &ev, reason, sizeof(reason)), 0);
    event_free(&ev);
    assert_int_equal(ingest_check(pipeline.ig, far, &ev, reason, sizeof(reason)), -ERANGE);
    assert_string_equal(reason, "created_at is more than 600 seconds in the future");
    json_decref(near);
    json_decref(far);
}

static void a_malformed_event_is_refused_with_a_reason(void **state)
{
    struct test_key k;
    struct event ev;
    char reason[200] = "";
    json_t *obj;
    (void)state;

    test_key(&k, 7);
    obj = test_event(&k, 1, (int64_t)time(NULL), "no signature");
    json_object_del(obj, "sig");
    assert_int_equal(ingest_check(pipeline.ig, obj, &ev, reason, sizeof(reason)), -EINVAL);
    assert_true(strlen(reason) > 0);
    json_decref(obj);
}

static void an_ephemeral_event_is_verified_and_handed_back_unstored(void **state)
{
    struct test_key k;
    struct outcome o;
    json_t *obj;
    (void)state;

    test_key(&k, 8);
    obj = test_event(&k, 20001, (int64_t)time(NULL), "passing");
    assert_int_equal(submit(obj, &o), 0);
    fixture_run_until(&fx, o.done);
    assert_int_equal(o.status, INGEST_EPHEMERAL);
    assert_non_null(strstr(o.json, "\"content\":\"passing\""));
    assert_false(is_stored(obj));
    assert_int_equal(heard, 0);
    json_decref(obj);
}

static void an_older_replaceable_version_is_superseded(void **state)
{
    struct test_key k;
    struct outcome o;
    json_t *newer, *older;
    (void)state;

    test_key(&k, 9);
    newer = test_event(&k, 0, 2000, "{\"name\":\"new\"}");
    older = test_event(&k, 0, 1000, "{\"name\":\"old\"}");
    assert_int_equal(submit(newer, &o), 0);
    fixture_run_until(&fx, o.done);
    assert_int_equal(o.status, INGEST_STORED);
    assert_int_equal(submit(older, &o), 0);
    fixture_run_until(&fx, o.done);
    assert_int_equal(o.status, INGEST_SUPERSEDED);
    assert_false(is_stored(older));
    json_decref(newer);
    json_decref(older);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        fixture_unit_test(a_valid_event_is_verified_stored_and_heard),
        fixture_unit_test(a_stored_event_is_a_duplicate_without_a_signature_check),
        fixture_unit_test(two_copies_in_flight_are_stored_once),
        fixture_unit_test(a_forged_signature_is_rejected_and_not_stored),
        fixture_unit_test(an_id_that_is_not_the_hash_is_refused_naming_the_id),
        fixture_unit_test(a_date_too_far_ahead_is_refused),
        fixture_unit_test(a_malformed_event_is_refused_with_a_reason),
        fixture_unit_test(an_ephemeral_event_is_verified_and_handed_back_unstored),
        fixture_unit_test(an_older_replaceable_version_is_superseded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
