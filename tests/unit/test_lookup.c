/*
 * test_lookup.c -- lookup batching, coalescing, grace and timeout on a real loop, store, verify pool and ingest
 * pipeline. The upstream relays are a seam at upstream.h: this file defines the upstream functions lookup.c
 * calls, records the REQs it sends and injects what relays answer, so lookup.c runs unchanged.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <time.h>
#include <unistd.h>

#include <h2o/memory.h>

#include "hex.h"
#include "lookup.h"
#include "testnostr.h"

#define RELAYS   2
#define MAX_SENT 64

/* --- the seam: two relays that record what they are sent ----------------------------------------------------- */

struct upstream_relay {
    size_t index;
    bool connected;
    json_t *sent[MAX_SENT]; /* messages lookup sent, parsed */
    size_t nsent;
    unsigned dropped; /* upstream_dropped() calls */
};

struct upstream {
    struct upstream_relay relays[RELAYS];
    const struct upstream_handler *h;
    void *data;
};

static struct upstream up;

void upstream_add_handler(struct upstream *u, const struct upstream_handler *h, void *data)
{
    u->h = h;
    u->data = data;
}

size_t upstream_count(const struct upstream *u)
{
    (void)u;
    return RELAYS;
}

struct upstream_relay *upstream_relay(struct upstream *u, size_t i)
{
    return &u->relays[i];
}

size_t upstream_relay_index(const struct upstream_relay *r)
{
    return r->index;
}

const char *upstream_relay_url(const struct upstream_relay *r)
{
    (void)r;
    return "ws://test";
}

int upstream_send(struct upstream_relay *r, const char *msg, size_t len)
{
    if (!r->connected)
        return -ENOTCONN;
    assert_true(r->nsent < MAX_SENT);
    assert_non_null(r->sent[r->nsent++] = json_loadb(msg, len, 0, NULL));
    return 0;
}

void upstream_dropped(struct upstream_relay *r, const char *why)
{
    (void)why;
    r->dropped++;
}

bool upstream_connecting(const struct upstream *u)
{
    (void)u;
    return false;
}

/* No relay is discovered here: the outbox stage is off (no relay book), so lookup.c never asks for one. */
struct upstream_relay *upstream_discover(struct upstream *u, const char *url, char *err, size_t errlen)
{
    (void)u, (void)url;
    snprintf(err, errlen, "not in this test");
    return NULL;
}

void upstream_relay_hold(struct upstream_relay *r)
{
    (void)r;
}

void upstream_relay_release(struct upstream_relay *r)
{
    (void)r;
}

bool upstream_relay_discovered(const struct upstream_relay *r)
{
    (void)r;
    return false;
}

enum upstream_state upstream_relay_state(const struct upstream_relay *r)
{
    return r->connected ? UPSTREAM_CONNECTED : UPSTREAM_DISCONNECTED;
}

const char *upstream_relay_error(const struct upstream_relay *r)
{
    (void)r;
    return "";
}

/* The REQs a relay was sent, in order (CLOSEs skipped). */
static json_t *nth_req(const struct upstream_relay *r, size_t n)
{
    for (size_t i = 0; i < r->nsent; i++) {
        if (strcmp(json_string_value(json_array_get(r->sent[i], 0)), "REQ") == 0 && n-- == 0)
            return r->sent[i];
    }
    return NULL;
}

static size_t nreqs(const struct upstream_relay *r)
{
    size_t n = 0;
    while (nth_req(r, n) != NULL)
        n++;
    return n;
}

static const char *req_subid(const json_t *req)
{
    return json_string_value(json_array_get(req, 1));
}

static size_t req_authors(const json_t *req)
{
    return json_array_size(json_object_get(json_array_get(req, 2), "authors"));
}

static void inject(struct upstream_relay *r, json_t *msg)
{
    up.h->on_message(up.data, r, msg);
    json_decref(msg);
}

static void send_event(struct upstream_relay *r, const char *subid, json_t *ev)
{
    inject(r, json_pack("[s, s, O]", "EVENT", subid, ev));
}

static void send_eose(struct upstream_relay *r, const char *subid)
{
    inject(r, json_pack("[s, s]", "EOSE", subid));
}

/* --- the rest is real ---------------------------------------------------------------------------------------- */

static struct fixture fx;
static struct test_pipeline pipeline;
static struct lookup *lk;
static unsigned stored; /* store listener calls */

/*
 * The timeout is far beyond every wait of the tests, so a slow disk under the
 * store cannot end a lookup early; the tests of the timeout and of answering
 * without the grace set their own.
 */
static const struct lookup_options OPTIONS = {
    .timeout_ms = 60000, .grace_ms = 150, .batch_ms = 20, .max_concurrent = 8};

/* A waiter and what it heard. */
struct wait {
    struct lookup_waiter w;
    bool called;
    bool found;
    int64_t created_at;
    uint64_t at; /* uv_now() of the answer */
};

static void on_stored(void *data, const struct event_view *ev, uint64_t commit)
{
    (void)commit;
    (void)data;
    (void)ev;
    stored++;
}

static void on_answer(struct lookup_waiter *w, const struct event_view *ev)
{
    struct wait *x = H2O_STRUCT_FROM_MEMBER(struct wait, w, w);

    assert_false(x->called);
    x->called = true;
    x->found = ev != NULL;
    x->created_at = ev != NULL ? ev->created_at : 0;
    x->at = uv_now(&fx.loop);
}

static void ask(struct wait *x, const uint8_t pubkey[32], uint32_t kind)
{
    memset(x, 0, sizeof(*x));
    x->w.cb = on_answer;
    lookup_get(lk, pubkey, kind, &x->w);
}

static int setup_with(const struct lookup_options *opt)
{
    fixture_open(&fx, "lookup");
    test_pipeline_open(&pipeline, &fx, on_stored);
    memset(&up, 0, sizeof(up));
    for (size_t i = 0; i < RELAYS; i++) {
        up.relays[i].index = i;
        up.relays[i].connected = true;
    }
    assert_int_equal(lookup_init(&lk, &fx.loop, opt, &up, pipeline.ig, &pipeline.st), 0);
    stored = 0;
    return 0;
}

static int setup(void **state)
{
    (void)state;
    return setup_with(&OPTIONS);
}

static int setup_one_at_a_time(void **state)
{
    struct lookup_options opt = OPTIONS;
    (void)state;
    opt.max_concurrent = 1;
    return setup_with(&opt);
}

static int setup_short_timeout(void **state)
{
    struct lookup_options opt = OPTIONS;
    (void)state;
    opt.timeout_ms = 300;
    return setup_with(&opt);
}

/* A grace longer than any wait here: an answer that came at all came without it. */
static int setup_long_grace(void **state)
{
    struct lookup_options opt = OPTIONS;
    (void)state;
    opt.grace_ms = 60000;
    return setup_with(&opt);
}

static int teardown(void **state)
{
    (void)state;
    lookup_shutdown(lk);
    test_pipeline_shutdown(&pipeline, &fx);
    lookup_free(lk);
    test_pipeline_free(&pipeline);
    fixture_close(&fx);
    for (size_t i = 0; i < RELAYS; i++) {
        for (size_t j = 0; j < up.relays[i].nsent; j++)
            json_decref(up.relays[i].sent[j]);
    }
    return 0;
}

/* Runs the loop until relay `relay` has been sent `n` REQs. */
static void wait_reqs(size_t relay, size_t n)
{
    fixture_run_until(&fx, nreqs(&up.relays[relay]) >= n);
}

/* --- tests --------------------------------------------------------------------------------------------------- */

static void lookups_of_one_pubkey_and_kind_make_one_entry(void **state)
{
    struct test_key a;
    struct wait w[4];
    struct lookup_stats s;
    json_t *req0, *req3;
    (void)state;

    test_key(&a, 1);
    for (int i = 0; i < 3; i++)
        ask(&w[i], a.pubkey, 0);
    ask(&w[3], a.pubkey, 3);
    wait_reqs(0, 2);
    /* One REQ per kind, each naming the author once. */
    req0 = nth_req(&up.relays[0], 0);
    req3 = nth_req(&up.relays[0], 1);
    assert_int_equal(req_authors(req0), 1);
    assert_int_equal(req_authors(req3), 1);
    lookup_stats(lk, &s);
    assert_int_equal(s.requested, 4);
    assert_int_equal(s.coalesced, 2);
    assert_int_equal(s.queries, 2);
    for (size_t r = 0; r < RELAYS; r++) {
        send_eose(&up.relays[r], req_subid(req0));
        send_eose(&up.relays[r], req_subid(req3));
    }
    for (int i = 0; i < 4; i++) {
        fixture_run_until(&fx, w[i].called);
        assert_false(w[i].found);
    }
}

static void a_batch_holds_at_most_500_authors_per_req(void **state)
{
    enum { N = 1200 };
    struct wait *w = calloc(N, sizeof(*w));
    uint8_t pubkey[32];
    size_t total = 0;
    (void)state;

    assert_non_null(w);
    for (size_t i = 0; i < N; i++) {
        memset(pubkey, 0, sizeof(pubkey));
        memcpy(pubkey, &i, sizeof(i));
        ask(&w[i], pubkey, 0);
    }
    wait_reqs(0, 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *req = nth_req(&up.relays[0], i);
        size_t n = req_authors(req);
        assert_true(n <= 500);
        assert_int_equal(json_integer_value(json_object_get(json_array_get(req, 2), "limit")), n);
        total += n;
    }
    assert_int_equal(total, N);
    assert_int_equal(nreqs(&up.relays[0]), 3);
    /* The waiters are answered at shutdown; none may outlive this array. */
    lookup_shutdown(lk);
    for (size_t i = 0; i < N; i++)
        assert_true(w[i].called);
    free(w);
}

static void lookups_in_one_batch_window_share_a_req_and_later_ones_do_not(void **state)
{
    struct test_key a, b, c;
    struct wait wa, wb, wc;
    uint64_t asked;
    (void)state;

    test_key(&a, 1);
    test_key(&b, 2);
    test_key(&c, 3);
    uv_update_time(&fx.loop);
    asked = uv_now(&fx.loop);
    ask(&wa, a.pubkey, 0);
    ask(&wb, b.pubkey, 0);
    wait_reqs(0, 1);
    assert_true(uv_now(&fx.loop) - asked >= OPTIONS.batch_ms);
    assert_int_equal(req_authors(nth_req(&up.relays[0], 0)), 2);
    ask(&wc, c.pubkey, 0);
    wait_reqs(0, 2);
    assert_int_equal(req_authors(nth_req(&up.relays[0], 1)), 1);
    /* The waiters live on this stack: they are answered before it goes. */
    lookup_shutdown(lk);
}

/* Work that holds the one verify thread for 400 ms, so that an event submitted after it stays in the pipeline. */
static void hold_run(struct work *w)
{
    (void)w;
    usleep(400 * 1000);
}

static void hold_done(struct work *w)
{
    (void)w;
}

/*
 * The first relay sends a version and EOSE, the second a newer one: the answer is the newer. With `held`,
 * the newer waits in the pipeline until after the grace has ended.
 */
static void the_newer_version_wins(bool held)
{
    struct test_key a;
    struct wait w;
    struct work hold = {.run = hold_run, .done = hold_done};
    json_t *v1, *v2;
    const char *sub;

    test_key(&a, 1);
    v1 = test_event(&a, 0, 1000, "{\"name\":\"v1\"}");
    v2 = test_event(&a, 0, 2000, "{\"name\":\"v2\"}");
    ask(&w, a.pubkey, 0);
    wait_reqs(1, 1);
    sub = req_subid(nth_req(&up.relays[0], 0));
    send_event(&up.relays[0], sub, v1);
    send_eose(&up.relays[0], sub);
    fixture_run_until(&fx, stored >= 1);
    /* The second relay has not finished: the answer waits for its newer version. */
    assert_false(w.called);
    if (held)
        workpool_submit(&pipeline.pool, &hold);
    send_event(&up.relays[1], sub, v2);
    fixture_run_until(&fx, w.called);
    assert_true(w.found);
    assert_int_equal(w.created_at, 2000);
    json_decref(v1);
    json_decref(v2);
}

static void a_found_event_waits_out_the_grace_for_a_newer_version(void **state)
{
    (void)state;
    the_newer_version_wins(false);
}

/*
 * The grace ends while a newer version is still in the pipeline: the answer waits for it, and the loop goes
 * on meanwhile. (A timer due at once, again and again, held libuv 1.44 in its timer phase, and the
 * pipeline's completion was never read.) The alarm turns such a hang into a failure.
 */
static void an_event_in_the_pipeline_when_the_grace_ends_is_waited_for_without_spinning(void **state)
{
    (void)state;
    alarm(10);
    the_newer_version_wins(true);
    alarm(0);
}

static void grace_ends_the_wait_for_a_relay_that_stays_silent(void **state)
{
    struct test_key a;
    struct wait w;
    json_t *v1;
    const char *sub;
    uint64_t found_at;
    (void)state;

    test_key(&a, 1);
    v1 = test_event(&a, 0, 1000, "{\"name\":\"v1\"}");
    ask(&w, a.pubkey, 0);
    wait_reqs(0, 1);
    sub = req_subid(nth_req(&up.relays[0], 0));
    send_event(&up.relays[0], sub, v1);
    send_eose(&up.relays[0], sub);
    fixture_run_until(&fx, stored >= 1);
    found_at = uv_now(&fx.loop);
    fixture_run_until(&fx, w.called);
    assert_true(w.found);
    assert_int_equal(w.created_at, 1000);
    /* Grace measured from when the event was stored; the timeout is a minute away. */
    assert_true(w.at - found_at + 20 >= OPTIONS.grace_ms);
    json_decref(v1);
}

static void every_relay_finished_answers_without_the_grace(void **state)
{
    struct test_key a;
    struct wait w;
    json_t *v1;
    const char *sub;
    (void)state;

    test_key(&a, 1);
    v1 = test_event(&a, 0, 1000, "{\"name\":\"v1\"}");
    ask(&w, a.pubkey, 0);
    wait_reqs(1, 1);
    sub = req_subid(nth_req(&up.relays[0], 0));
    send_eose(&up.relays[1], sub);
    send_event(&up.relays[0], sub, v1);
    send_eose(&up.relays[0], sub);
    fixture_run_until(&fx, stored >= 1);
    fixture_run_until(&fx, w.called);
    assert_true(w.found);
    json_decref(v1);
}

static void silent_relays_time_out_and_the_miss_is_remembered_for_a_while(void **state)
{
    struct test_key a;
    struct wait w, again;
    struct lookup_stats s;
    uint64_t asked;
    (void)state;

    test_key(&a, 1);
    uv_update_time(&fx.loop);
    asked = uv_now(&fx.loop);
    ask(&w, a.pubkey, 0);
    fixture_run_until(&fx, w.called);
    assert_false(w.found);
    assert_true(w.at - asked >= 300);
    lookup_stats(lk, &s);
    assert_int_equal(s.timed_out, 1);
    /* No relay said "none", but the next ask does not wait for the same silence again (for TIMEOUT_TTL_MS). */
    ask(&again, a.pubkey, 0);
    fixture_run_until(&fx, again.called);
    assert_false(again.found);
    lookup_stats(lk, &s);
    assert_int_equal(s.negative_hits, 1);
    assert_int_equal(nreqs(&up.relays[0]), 1);
    lookup_shutdown(lk);
}

static void a_miss_every_relay_confirms_is_remembered(void **state)
{
    struct test_key a;
    struct wait w, again;
    struct lookup_stats s;
    (void)state;

    test_key(&a, 1);
    ask(&w, a.pubkey, 0);
    wait_reqs(1, 1);
    for (size_t r = 0; r < RELAYS; r++)
        send_eose(&up.relays[r], req_subid(nth_req(&up.relays[r], 0)));
    fixture_run_until(&fx, w.called);
    assert_false(w.found);
    ask(&again, a.pubkey, 0);
    fixture_run_until(&fx, again.called);
    assert_false(again.found);
    lookup_stats(lk, &s);
    assert_int_equal(s.negative_hits, 1);
    assert_int_equal(nreqs(&up.relays[0]), 1);
}

static void forged_and_unasked_for_events_count_against_the_relay(void **state)
{
    struct test_key a, other;
    struct wait w;
    json_t *forged, *stranger, *wrong_kind;
    const char *sub;
    (void)state;

    test_key(&a, 1);
    test_key(&other, 2);
    forged = test_event(&a, 0, 1000, "{\"name\":\"forged\"}");
    test_tamper(forged, "sig");
    stranger = test_event(&other, 0, 1000, "{}");
    wrong_kind = test_event(&a, 1, 1000, "note");
    ask(&w, a.pubkey, 0);
    wait_reqs(1, 1);
    sub = req_subid(nth_req(&up.relays[0], 0));
    send_event(&up.relays[0], sub, stranger);
    send_event(&up.relays[0], sub, wrong_kind);
    assert_int_equal(up.relays[0].dropped, 2);
    send_event(&up.relays[0], sub, forged);
    send_eose(&up.relays[0], sub);
    send_eose(&up.relays[1], sub);
    /* The forged copy is checked on the pool before the query may end. */
    fixture_run_until(&fx, w.called);
    assert_false(w.found);
    assert_int_equal(up.relays[0].dropped, 3);
    assert_int_equal(up.relays[1].dropped, 0);
    assert_int_equal(stored, 0);
    json_decref(forged);
    json_decref(stranger);
    json_decref(wrong_kind);
}

static void a_cancelled_waiter_is_not_called(void **state)
{
    struct test_key a;
    struct wait gone, stays;
    (void)state;

    test_key(&a, 1);
    ask(&gone, a.pubkey, 0);
    ask(&stays, a.pubkey, 0);
    lookup_cancel(lk, &gone.w);
    wait_reqs(1, 1);
    for (size_t r = 0; r < RELAYS; r++)
        send_eose(&up.relays[r], req_subid(nth_req(&up.relays[r], 0)));
    fixture_run_until(&fx, stays.called);
    assert_false(gone.called);
}

static void queries_past_max_concurrent_wait_their_turn(void **state)
{
    struct test_key a;
    struct wait w0, w3;
    (void)state;

    test_key(&a, 1);
    ask(&w0, a.pubkey, 0);
    ask(&w3, a.pubkey, 3);
    wait_reqs(0, 1);
    assert_int_equal(nreqs(&up.relays[0]), 1);
    for (size_t r = 0; r < RELAYS; r++)
        send_eose(&up.relays[r], req_subid(nth_req(&up.relays[r], 0)));
    wait_reqs(0, 2);
    assert_true(w0.called);
    assert_false(w3.called);
    lookup_shutdown(lk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        fixture_unit_test(lookups_of_one_pubkey_and_kind_make_one_entry),
        fixture_unit_test(a_batch_holds_at_most_500_authors_per_req),
        fixture_unit_test(lookups_in_one_batch_window_share_a_req_and_later_ones_do_not),
        fixture_unit_test(a_found_event_waits_out_the_grace_for_a_newer_version),
        fixture_unit_test(grace_ends_the_wait_for_a_relay_that_stays_silent),
        cmocka_unit_test_setup_teardown(every_relay_finished_answers_without_the_grace, setup_long_grace, teardown),
        fixture_unit_test(an_event_in_the_pipeline_when_the_grace_ends_is_waited_for_without_spinning),
        cmocka_unit_test_setup_teardown(silent_relays_time_out_and_the_miss_is_remembered_for_a_while,
                                        setup_short_timeout, teardown),
        fixture_unit_test(a_miss_every_relay_confirms_is_remembered),
        fixture_unit_test(forged_and_unasked_for_events_count_against_the_relay),
        fixture_unit_test(a_cancelled_waiter_is_not_called),
        cmocka_unit_test_setup_teardown(queries_past_max_concurrent_wait_their_turn, setup_one_at_a_time, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
