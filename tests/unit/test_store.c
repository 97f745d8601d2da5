/* test_store.c -- the LMDB store: NIP-01 replacement rules, listeners, queries, persistence and a full map. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "filter.h"
#include "hex.h"
#include "fixture.h"
#include "store.h"

static struct fixture fx;
static struct store st;
static int pending;

/* One queued write and what the test learns about it. */
struct put {
    struct store_event_write ew;
    bool done;
    int heard; /* listener calls for this write */
};

#define MAX_LIVE 64
static struct put *live[MAX_LIVE];
static size_t nlive;

/*
 * Test JSON names ids and keys as "$xx": 64 hex characters of the byte xx
 * repeated, which is how the synthetic events below are keyed.
 */
static void expand(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    uint8_t b;

    while (*in != '\0') {
        if (in[0] == '$' && hex_decode(in + 1, 2, &b, 1) == 0) {
            assert_true(n + 64 < cap);
            for (int i = 0; i < 32; i++)
                memcpy(out + n + 2 * i, in + 1, 2);
            n += 64;
            in += 3;
        } else {
            assert_true(n + 1 < cap);
            out[n++] = *in++;
        }
    }
    out[n] = '\0';
}

/* The database `file` and its event tables, the writer not started yet. */
static void open_unstarted(const char *file, uint64_t max_mb)
{
    fixture_db_open(&fx, file, max_mb);
    assert_int_equal(store_init(&st, fx.db), 0);
}

static void open_store(const char *file, uint64_t max_mb)
{
    open_unstarted(file, max_mb);
    assert_int_equal(db_start(fx.db), 0);
}

static int setup(void **state)
{
    (void)state;
    pending = 0;
    nlive = 0;
    fixture_open(&fx, "store");
    open_store("events.db", 64);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fixture_close(&fx);
    return 0;
}

static void on_put_done(struct store_event_write *ew)
{
    struct put *p = (struct put *)ew;
    p->done = true;
    pending--;
}

/* Builds a synthetic event (the store checks neither ids nor signatures) and queues it. */
static struct put *queue_put_content(uint8_t id, uint8_t pubkey, int64_t created_at, uint32_t kind, const char *tags,
                                     const char *content, size_t content_len)
{
    struct put *p = calloc(1, sizeof(*p));
    char text[4096];

    assert_non_null(p);
    expand(tags, text, sizeof(text));
    memset(p->ew.id, id, 32);
    p->ew.rec = fixture_record(id, pubkey, created_at, kind, text, content, content_len, &p->ew.rec_len);
    p->ew.done = on_put_done;

    assert_true(nlive < MAX_LIVE);
    live[nlive++] = p;
    pending++;
    store_put_event(&st, &p->ew);
    return p;
}

static struct put *queue_put(uint8_t id, uint8_t pubkey, int64_t created_at, uint32_t kind, const char *tags)
{
    return queue_put_content(id, pubkey, created_at, kind, tags, "note", 4);
}

static void free_put(struct put *p)
{
    for (size_t i = 0; i < nlive; i++) {
        if (live[i] == p) {
            live[i] = live[--nlive];
            break;
        }
    }
    free(p->ew.rec);
    free(p);
}

/* Stores one event and returns the store's verdict; the write itself must succeed. */
static enum store_result put(uint8_t id, uint8_t pubkey, int64_t created_at, uint32_t kind, const char *tags)
{
    struct put *p = queue_put(id, pubkey, created_at, kind, tags);
    enum store_result r;

    fixture_run_until(&fx, pending == 0);
    assert_true(p->done);
    assert_int_equal(p->ew.w.status, 0);
    r = p->ew.result;
    free_put(p);
    return r;
}

/* Waits for the `n` writes queued in `p`: each must commit, with the store's verdict `expect[i]`. Frees them. */
static void expect_results(struct put **p, size_t n, const enum store_result *expect)
{
    fixture_run_until(&fx, pending == 0);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(p[i]->ew.w.status, 0);
        assert_int_equal(p[i]->ew.result, expect[i]);
        free_put(p[i]);
    }
}

static bool stored(uint8_t id)
{
    uint8_t key[32];
    struct event_view v;
    MDB_txn *txn;
    int rc;

    memset(key, id, 32);
    assert_int_equal(store_read_begin(&st, &txn), 0);
    rc = store_get_event(&st, txn, key, &v);
    if (rc == 0)
        assert_memory_equal(v.id, key, 32);
    store_read_end(&st, txn);
    if (rc != 0 && rc != -ENOENT)
        fail_msg("store_get_event: %d", rc);
    return rc == 0;
}

/* The id byte of the newest event of `pubkey` and `kind`, or -1. */
static int latest(uint8_t pubkey, uint32_t kind)
{
    uint8_t pk[32];
    struct event_view v;
    MDB_txn *txn;
    int rc, id = -1;

    memset(pk, pubkey, 32);
    assert_int_equal(store_read_begin(&st, &txn), 0);
    rc = store_get_latest(&st, txn, pk, kind, &v);
    if (rc == 0) {
        assert_memory_equal(v.pubkey, pk, 32);
        assert_int_equal(v.kind, kind);
        id = v.id[0];
    }
    store_read_end(&st, txn);
    if (rc != 0 && rc != -ENOENT)
        fail_msg("store_get_latest: %d", rc);
    return id;
}

/* Runs the JSON array of filters through store_query and writes the hits' id bytes, in order, as "04 05 02". */
static void query(const char *filters, size_t budget, char *got, size_t cap)
{
    char text[4096], reason[256];
    struct filter fs[8];
    struct store_hit *hits;
    size_t nf, nhits, n = 0;
    uint64_t snapshot;
    json_error_t jerr;
    json_t *arr;

    expand(filters, text, sizeof(text));
    if ((arr = json_loads(text, 0, &jerr)) == NULL)
        fail_msg("test filters %s: %s", text, jerr.text);
    nf = json_array_size(arr);
    assert_true(nf <= 8);
    for (size_t i = 0; i < nf; i++) {
        if (filter_parse(json_array_get(arr, i), 100, &fs[i], reason, sizeof(reason)) != 0)
            fail_msg("filter %zu of %s: %s", i, filters, reason);
    }
    json_decref(arr);

    assert_int_equal(store_query(&st, fs, nf, budget, &hits, &nhits, &snapshot), 0);
    got[0] = '\0';
    for (size_t i = 0; i < nhits; i++) {
        n += (size_t)snprintf(got + n, cap - n, "%s%02x", i ? " " : "", hits[i].id[0]);
        assert_true(n < cap);
        if (i > 0)
            assert_true(hits[i - 1].created_at >= hits[i].created_at);
    }
    free(hits);
    for (size_t i = 0; i < nf; i++)
        filter_free(&fs[i]);
}

static void expect_hits(const char *filters, const char *expect)
{
    char got[512];

    query(filters, 100000, got, sizeof(got));
    if (strcmp(got, expect) != 0)
        fail_msg("%s gave [%s], expected [%s]", filters, got, expect);
}

static uint64_t last_commit; /* what the last listener call was told */

static void on_stored(void *data, const struct event_view *ev, uint64_t commit)
{
    int *calls = data;

    last_commit = commit;
    (*calls)++;
    /* Listeners hear of a write before its own done callback, so its put is still pending here. */
    for (size_t i = 0; i < nlive; i++) {
        if (!live[i]->done && memcmp(live[i]->ew.id, ev->id, 32) == 0) {
            live[i]->heard++;
            return;
        }
    }
    fail_msg("listener called for %02x, which has no pending write", ev->id[0]);
}

static void stored_event_reads_back_as_client_json(void **state)
{
    const char content[] = "hi \"there\"\n\x01/\xc3\xa9";
    struct put *p;
    struct event_view v;
    MDB_txn *txn;
    json_t *obj;
    json_error_t jerr;
    uint8_t key[32];
    char hex[65];
    (void)state;

    p = queue_put_content(0x42, 0xa1, 1700000000, 1, "[[\"p\",\"$c1\"],[\"t\",\"x\"]]", content, sizeof(content) - 1);
    expect_results(&p, 1, (const enum store_result[]){STORE_STORED});

    memset(key, 0x42, 32);
    assert_int_equal(store_read_begin(&st, &txn), 0);
    assert_int_equal(store_get_event(&st, txn, key, &v), 0);
    assert_int_equal(v.created_at, 1700000000);
    assert_int_equal(v.kind, 1);
    obj = json_loadb(v.json, v.json_len, 0, &jerr);
    store_read_end(&st, txn);
    if (obj == NULL)
        fail_msg("stored JSON does not parse: %s", jerr.text);

    assert_string_equal(json_string_value(json_object_get(obj, "content")), content);
    hex_encode(key, 32, hex);
    hex[64] = '\0';
    assert_string_equal(json_string_value(json_object_get(obj, "id")), hex);
    memset(key, 0xa1, 32);
    hex_encode(key, 32, hex);
    assert_string_equal(json_string_value(json_object_get(obj, "pubkey")), hex);
    assert_int_equal(json_integer_value(json_object_get(obj, "created_at")), 1700000000);
    assert_int_equal(json_integer_value(json_object_get(obj, "kind")), 1);
    assert_int_equal(json_array_size(json_object_get(obj, "tags")), 2);
    assert_int_equal(json_string_length(json_object_get(obj, "sig")), 128);
    json_decref(obj);

    assert_false(stored(0x43));
}

static void same_id_twice_is_a_duplicate(void **state)
{
    struct put *p[2];
    (void)state;

    assert_int_equal(put(0x01, 0xa1, 100, 1, "[]"), STORE_STORED);
    assert_int_equal(put(0x01, 0xa1, 100, 1, "[]"), STORE_DUPLICATE);

    /* Also when both copies wait in the writer's queue at once. */
    p[0] = queue_put(0x02, 0xa1, 100, 1, "[]");
    p[1] = queue_put(0x02, 0xa1, 100, 1, "[]");
    expect_results(p, 2, (const enum store_result[]){STORE_STORED, STORE_DUPLICATE});
    /* Equal created_at: the lowest id first. */
    expect_hits("[{}]", "01 02");
}

static void newer_replaceable_event_replaces_older(void **state)
{
    (void)state;

    assert_int_equal(put(0x10, 0xa1, 100, 0, "[[\"p\",\"$c1\"]]"), STORE_STORED);
    assert_int_equal(latest(0xa1, 0), 0x10);
    assert_int_equal(put(0x20, 0xa1, 200, 0, "[[\"p\",\"$c2\"]]"), STORE_STORED);
    assert_false(stored(0x10));
    assert_true(stored(0x20));
    assert_int_equal(latest(0xa1, 0), 0x20);

    /* The replaced version leaves no index entry behind that a query could still find. */
    expect_hits("[{\"#p\":[\"$c1\"]}]", "");
    expect_hits("[{\"authors\":[\"$a1\"]}]", "20");
    expect_hits("[{\"kinds\":[0]}]", "20");
    expect_hits("[{}]", "20");
}

static void older_replaceable_event_is_superseded_and_not_stored(void **state)
{
    (void)state;

    assert_int_equal(put(0x20, 0xa1, 200, 0, "[]"), STORE_STORED);
    assert_int_equal(put(0x15, 0xa1, 150, 0, "[]"), STORE_SUPERSEDED);
    assert_false(stored(0x15));
    assert_true(stored(0x20));
    assert_int_equal(latest(0xa1, 0), 0x20);
    expect_hits("[{\"kinds\":[0]}]", "20");
}

static void equal_created_at_keeps_the_lower_id(void **state)
{
    (void)state;

    /* Higher id first: the lower one arriving later wins. */
    assert_int_equal(put(0x40, 0xa1, 500, 0, "[]"), STORE_STORED);
    assert_int_equal(put(0x30, 0xa1, 500, 0, "[]"), STORE_STORED);
    assert_false(stored(0x40));
    assert_int_equal(latest(0xa1, 0), 0x30);

    /* Lower id first: the higher one arriving later is superseded. */
    assert_int_equal(put(0x31, 0xb2, 500, 0, "[]"), STORE_STORED);
    assert_int_equal(put(0x41, 0xb2, 500, 0, "[]"), STORE_SUPERSEDED);
    assert_false(stored(0x41));
    assert_int_equal(latest(0xb2, 0), 0x31);
}

static void replacement_is_per_author_and_kind(void **state)
{
    (void)state;

    assert_int_equal(put(0x10, 0xa1, 100, 0, "[]"), STORE_STORED);
    assert_int_equal(put(0x11, 0xb2, 50, 0, "[]"), STORE_STORED);
    assert_int_equal(put(0x12, 0xa1, 50, 3, "[]"), STORE_STORED);
    assert_int_equal(put(0x13, 0xa1, 50, 10002, "[]"), STORE_STORED);
    assert_int_equal(put(0x14, 0xa1, 60, 10002, "[]"), STORE_STORED);
    assert_true(stored(0x10));
    assert_true(stored(0x11));
    assert_true(stored(0x12));
    assert_false(stored(0x13));
    assert_int_equal(latest(0xa1, 0), 0x10);
    assert_int_equal(latest(0xb2, 0), 0x11);
    assert_int_equal(latest(0xa1, 3), 0x12);
    assert_int_equal(latest(0xa1, 10002), 0x14);
    assert_int_equal(latest(0xb2, 3), -1);
}

static void addressable_events_are_replaced_per_d_tag(void **state)
{
    (void)state;

    assert_int_equal(put(0x50, 0xa1, 100, 30000, "[[\"d\",\"x\"]]"), STORE_STORED);
    assert_int_equal(put(0x51, 0xa1, 100, 30000, "[[\"d\",\"y\"]]"), STORE_STORED);
    assert_true(stored(0x50));
    assert_true(stored(0x51));

    assert_int_equal(put(0x52, 0xa1, 200, 30000, "[[\"d\",\"x\"]]"), STORE_STORED);
    assert_false(stored(0x50));
    assert_true(stored(0x51));
    assert_true(stored(0x52));
    assert_int_equal(put(0x53, 0xa1, 150, 30000, "[[\"d\",\"x\"]]"), STORE_SUPERSEDED);
    assert_false(stored(0x53));

    /* A missing "d" tag and an empty one name the same address. */
    assert_int_equal(put(0x54, 0xa1, 100, 30000, "[]"), STORE_STORED);
    assert_int_equal(put(0x55, 0xa1, 250, 30000, "[[\"d\",\"\"]]"), STORE_STORED);
    assert_false(stored(0x54));

    /* Another kind or another author is another address. */
    assert_int_equal(put(0x56, 0xa1, 50, 30001, "[[\"d\",\"x\"]]"), STORE_STORED);
    assert_int_equal(put(0x57, 0xb2, 50, 30000, "[[\"d\",\"x\"]]"), STORE_STORED);
    expect_hits("[{\"kinds\":[30000],\"#d\":[\"x\"]}]", "52 57");
    expect_hits("[{\"authors\":[\"$a1\"],\"kinds\":[30000]}]", "55 52 51");
}

static void regular_events_are_all_kept(void **state)
{
    (void)state;

    assert_int_equal(put(0x61, 0xa1, 200, 1, "[]"), STORE_STORED);
    assert_int_equal(put(0x60, 0xa1, 100, 1, "[]"), STORE_STORED);
    assert_int_equal(put(0x62, 0xa1, 150, 1, "[]"), STORE_STORED);
    assert_true(stored(0x60));
    assert_true(stored(0x61));
    assert_true(stored(0x62));
    expect_hits("[{\"authors\":[\"$a1\"],\"kinds\":[1]}]", "61 62 60");
}

static void writes_queued_together_apply_in_order(void **state)
{
    struct put *p[5];
    const enum store_result expect[5] = {STORE_STORED, STORE_STORED, STORE_SUPERSEDED, STORE_DUPLICATE, STORE_STORED};
    (void)state;

    p[0] = queue_put(0x70, 0xa1, 100, 0, "[]");
    p[1] = queue_put(0x71, 0xa1, 200, 0, "[]");
    p[2] = queue_put(0x72, 0xa1, 150, 0, "[]");
    p[3] = queue_put(0x71, 0xa1, 200, 0, "[]");
    p[4] = queue_put(0x73, 0xa1, 150, 1, "[]");
    expect_results(p, 5, expect);
    assert_false(stored(0x70));
    assert_int_equal(latest(0xa1, 0), 0x71);
    expect_hits("[{}]", "71 73");
}

static void listeners_hear_each_newly_stored_event_once(void **state)
{
    struct put *p[6];
    int calls_a = 0, calls_b = 0;
    const int heard[6] = {1, 1, 0, 0, 1, 0};
    (void)state;

    store_add_listener(&st, on_stored, &calls_a);
    store_add_listener(&st, on_stored, &calls_b);
    p[0] = queue_put(0x01, 0xa1, 100, 1, "[]");
    p[1] = queue_put(0x02, 0xa1, 200, 0, "[]");
    p[2] = queue_put(0x01, 0xa1, 100, 1, "[]");
    p[3] = queue_put(0x03, 0xa1, 150, 0, "[]");
    p[4] = queue_put(0x04, 0xa1, 100, 30000, "[[\"d\",\"x\"]]");
    p[5] = queue_put(0x05, 0xa1, 50, 30000, "[[\"d\",\"x\"]]");
    fixture_run_until(&fx, pending == 0);
    /* Two listeners, so each stored write is heard twice: once by each. */
    for (int i = 0; i < 6; i++) {
        assert_int_equal(p[i]->heard, 2 * heard[i]);
        free_put(p[i]);
    }
    assert_int_equal(calls_a, 3);
    assert_int_equal(calls_b, 3);
}

/* A subscription's query and the listener's later word of the same event must agree on which saw it first. */
static void a_query_snapshot_orders_commits_heard_by_listeners(void **state)
{
    struct store_hit *hits;
    size_t nhits;
    uint64_t seen, first;
    int calls = 0;
    (void)state;

    store_add_listener(&st, on_stored, &calls);
    assert_int_equal(put(0x01, 0xa1, 100, 1, "[]"), STORE_STORED);
    first = last_commit;
    assert_int_equal(store_query(&st, NULL, 0, 100, &hits, &nhits, &seen), 0);
    free(hits);
    assert_true(first != 0 && first <= seen);
    assert_int_equal(put(0x02, 0xa1, 200, 1, "[]"), STORE_STORED);
    assert_true(last_commit > seen);
    assert_int_equal(calls, 2);
}

static void listener_added_before_start_is_called(void **state)
{
    int calls = 0;
    (void)state;

    fixture_db_close(&fx);
    open_unstarted("events.db", 64);
    store_add_listener(&st, on_stored, &calls);
    assert_int_equal(db_start(fx.db), 0);
    assert_int_equal(put(0x01, 0xa1, 100, 1, "[]"), STORE_STORED);
    assert_int_equal(put(0x01, 0xa1, 100, 1, "[]"), STORE_DUPLICATE);
    assert_int_equal(calls, 1);
}

/* Six events by two authors, kinds 1 and 7, some tagged, each at its own created_at. */
static void put_query_fixture(void)
{
    struct put *p[6];

    p[0] = queue_put(0x01, 0xa1, 100, 1, "[[\"p\",\"$c1\"]]");
    p[1] = queue_put(0x02, 0xa1, 200, 1, "[[\"p\",\"$c2\"]]");
    p[2] = queue_put(0x03, 0xb2, 150, 1, "[[\"p\",\"$c1\"],[\"t\",\"cats\"]]");
    p[3] = queue_put(0x04, 0xb2, 300, 7, "[[\"e\",\"$01\"]]");
    p[4] = queue_put(0x05, 0xa1, 250, 7, "[]");
    p[5] = queue_put(0x06, 0xb2, 180, 1, "[]");
    expect_results(p, 6,
                   (const enum store_result[]){STORE_STORED, STORE_STORED, STORE_STORED, STORE_STORED, STORE_STORED,
                                               STORE_STORED});
}

static void query_by_authors_kinds_and_ids(void **state)
{
    (void)state;

    put_query_fixture();
    expect_hits("[{}]", "04 05 02 06 03 01");
    expect_hits("[{\"authors\":[\"$a1\"],\"kinds\":[1]}]", "02 01");
    expect_hits("[{\"authors\":[\"$a1\",\"$b2\"],\"kinds\":[1]}]", "02 06 03 01");
    expect_hits("[{\"authors\":[\"$b2\"]}]", "04 06 03");
    expect_hits("[{\"authors\":[\"$b2\"],\"kinds\":[7,1]}]", "04 06 03");
    expect_hits("[{\"authors\":[\"$c1\"]}]", "");
    expect_hits("[{\"kinds\":[1]}]", "02 06 03 01");
    expect_hits("[{\"kinds\":[7,1]}]", "04 05 02 06 03 01");
    expect_hits("[{\"kinds\":[2]}]", "");
    expect_hits("[{\"ids\":[\"$01\",\"$04\",\"$09\"]}]", "04 01");
    expect_hits("[{\"ids\":[\"$01\",\"$04\"],\"kinds\":[7]}]", "04");
}

static void query_by_tags(void **state)
{
    (void)state;

    put_query_fixture();
    expect_hits("[{\"#p\":[\"$c1\"]}]", "03 01");
    expect_hits("[{\"#p\":[\"$c2\",\"$c3\"]}]", "02");
    expect_hits("[{\"#p\":[\"$c1\"],\"#t\":[\"cats\"]}]", "03");
    expect_hits("[{\"#p\":[\"$c1\"],\"kinds\":[1],\"authors\":[\"$a1\"]}]", "01");
    expect_hits("[{\"#e\":[\"$01\"]}]", "04");
    expect_hits("[{\"#t\":[\"dogs\"]}]", "");
}

static void query_time_bounds_are_inclusive(void **state)
{
    (void)state;

    put_query_fixture();
    expect_hits("[{\"since\":150,\"until\":250}]", "05 02 06 03");
    expect_hits("[{\"since\":200,\"until\":200}]", "02");
    expect_hits("[{\"since\":180,\"until\":180}]", "06");
    expect_hits("[{\"since\":201,\"until\":249}]", "");
    expect_hits("[{\"since\":181,\"until\":199}]", "");
    expect_hits("[{\"kinds\":[1],\"since\":150,\"until\":200}]", "02 06 03");
    expect_hits("[{\"authors\":[\"$a1\"],\"until\":200}]", "02 01");
    expect_hits("[{\"#p\":[\"$c1\"],\"since\":150}]", "03");
    expect_hits("[{\"ids\":[\"$01\",\"$02\"],\"since\":101}]", "02");
    expect_hits("[{\"since\":300}]", "04");
    expect_hits("[{\"until\":100}]", "01");
}

static void query_limit_keeps_the_newest(void **state)
{
    (void)state;

    put_query_fixture();
    expect_hits("[{\"limit\":2}]", "04 05");
    expect_hits("[{\"kinds\":[1],\"limit\":3}]", "02 06 03");
    expect_hits("[{\"authors\":[\"$a1\",\"$b2\"],\"kinds\":[1],\"limit\":1}]", "02");
    expect_hits("[{\"#p\":[\"$c1\",\"$c2\"],\"limit\":2}]", "02 03");
    expect_hits("[{\"ids\":[\"$01\",\"$02\",\"$03\"],\"limit\":2}]", "02 03");
    /* Each filter contributes up to its own limit. */
    expect_hits("[{\"kinds\":[1],\"limit\":1},{\"kinds\":[7],\"limit\":1}]", "04 02");
}

static void query_filters_are_ored_without_duplicates(void **state)
{
    (void)state;

    put_query_fixture();
    expect_hits("[{\"kinds\":[7]},{\"authors\":[\"$a1\"]}]", "04 05 02 01");
    expect_hits("[{\"ids\":[\"$03\"]},{\"#p\":[\"$c1\"]}]", "03 01");
    expect_hits("[{},{}]", "04 05 02 06 03 01");
    expect_hits("[{\"kinds\":[2]},{\"#t\":[\"cats\"]}]", "03");
}

/* The first id byte of each hit, in order, into `got`; then frees the hits. */
static void hit_bytes(struct store_hit *hits, size_t nhits, char *got, size_t cap)
{
    size_t n = 0;

    got[0] = '\0';
    for (size_t i = 0; i < nhits; i++) {
        n += (size_t)snprintf(got + n, cap - n, "%s%02x", i ? " " : "", hits[i].id[0]);
        assert_true(n < cap);
    }
    free(hits);
}

/* Runs the filters through store_records and writes the records' id bytes, oldest first; returns its status. */
static int records(const char *filters, size_t max, size_t budget, char *got, size_t cap)
{
    char text[4096], reason[256];
    struct filter fs[8];
    struct store_hit *hits = NULL;
    size_t nf, nhits = 0;
    json_error_t jerr;
    json_t *arr;
    int rc;

    expand(filters, text, sizeof(text));
    if ((arr = json_loads(text, 0, &jerr)) == NULL)
        fail_msg("test filters %s: %s", text, jerr.text);
    nf = json_array_size(arr);
    for (size_t i = 0; i < nf; i++) {
        if (filter_parse(json_array_get(arr, i), 2, &fs[i], reason, sizeof(reason)) != 0)
            fail_msg("filter %zu of %s: %s", i, filters, reason);
    }
    json_decref(arr);
    rc = store_records(&st, fs, nf, max, budget, &hits, &nhits);
    hit_bytes(hits, rc == 0 ? nhits : 0, got, cap);
    for (size_t i = 0; i < nf; i++)
        filter_free(&fs[i]);
    return rc;
}

static void records_for_a_reconciliation_are_whole_oldest_first_and_bounded(void **state)
{
    char got[512];
    (void)state;

    put_query_fixture();
    /* Limits (here a max_limit of 2) do not apply: a set is reconciled whole. */
    assert_int_equal(records("[{}]", 100, 100000, got, sizeof(got)), 0);
    assert_string_equal(got, "01 03 06 02 05 04");
    assert_int_equal(records("[{\"kinds\":[1],\"limit\":1}]", 100, 100000, got, sizeof(got)), 0);
    assert_string_equal(got, "01 03 06 02");
    assert_int_equal(records("[{\"kinds\":[7]},{\"authors\":[\"$a1\"]}]", 100, 100000, got, sizeof(got)), 0);
    assert_string_equal(got, "01 02 05 04");
    assert_int_equal(records("[{\"#p\":[\"$c1\"]},{\"ids\":[\"$03\"]}]", 100, 100000, got, sizeof(got)), 0);
    assert_string_equal(got, "01 03");
    /* Exactly `max` is fine; one more is refused, even when two filters find them. */
    assert_int_equal(records("[{}]", 6, 100000, got, sizeof(got)), 0);
    assert_int_equal(records("[{}]", 5, 100000, got, sizeof(got)), -EMSGSIZE);
    assert_int_equal(records("[{\"kinds\":[1]},{\"kinds\":[7]}]", 5, 100000, got, sizeof(got)), -EMSGSIZE);
    assert_int_equal(records("[{\"kinds\":[1]},{\"authors\":[\"$b2\"]}]", 5, 100000, got, sizeof(got)), 0);
    assert_string_equal(got, "01 03 06 02 04");
    /* A filter the indexes serve badly: past the scan budget, the set would be partial, so it is refused. */
    assert_int_equal(records("[{\"#t\":[\"cats\"],\"kinds\":[1]}]", 100, 100000, got, sizeof(got)), 0);
    assert_string_equal(got, "03");
    assert_int_equal(records("[{\"kinds\":[1],\"#t\":[\"cats\"]}]", 100, 2, got, sizeof(got)), -E2BIG);
}

/* One window of store_window over `filter`, its records' id bytes oldest first in `got`; returns its status. */
static int window(const char *filter, size_t max, size_t budget, char *got, size_t cap, int64_t *since)
{
    char text[1024], reason[256];
    struct filter f;
    struct store_hit *hits = NULL;
    size_t nhits = 0;
    json_error_t jerr;
    json_t *obj;
    int rc;

    expand(filter, text, sizeof(text));
    if ((obj = json_loads(text, 0, &jerr)) == NULL)
        fail_msg("test filter %s: %s", text, jerr.text);
    if (filter_parse(obj, 2, &f, reason, sizeof(reason)) != 0)
        fail_msg("filter %s: %s", filter, reason);
    json_decref(obj);
    rc = store_window(&st, &f, max, budget, &hits, &nhits, since);
    hit_bytes(hits, rc == 0 ? nhits : 0, got, cap);
    filter_free(&f);
    return rc;
}

static void windows_walk_a_large_set_newest_first_and_keep_each_second_whole(void **state)
{
    char got[512];
    int64_t since = -1;
    (void)state;

    put_query_fixture();
    assert_int_equal(put(0x07, 0xa1, 200, 1, "[]"), STORE_STORED);
    /* Everything fits: the window reaches the filter's own since. */
    assert_int_equal(window("{\"since\":120}", 100, 100000, got, sizeof(got), &since), 0);
    assert_string_equal(got, "03 06 02 07 05 04");
    assert_int_equal(since, 120);
    /* Three at most: the second 200 would be cut short by the limit, so it moves whole to the next window. */
    assert_int_equal(window("{}", 3, 100000, got, sizeof(got), &since), 0);
    assert_string_equal(got, "05 04");
    assert_int_equal(since, 201);
    assert_int_equal(window("{\"until\":200}", 3, 100000, got, sizeof(got), &since), 0);
    assert_string_equal(got, "06 02 07");
    assert_int_equal(since, 151);
    assert_int_equal(window("{\"until\":150}", 3, 100000, got, sizeof(got), &since), 0);
    assert_string_equal(got, "01 03");
    assert_int_equal(since, 0);
    /* A second holding more than a window cannot be split; nor can a read past its budget be trusted. */
    assert_int_equal(window("{\"until\":200}", 1, 100000, got, sizeof(got), &since), -EMSGSIZE);
    assert_int_equal(window("{\"kinds\":[1],\"#t\":[\"cats\"]}", 3, 2, got, sizeof(got), &since), -E2BIG);
    assert_int_equal(window("{\"kinds\":[9]}", 3, 100000, got, sizeof(got), &since), 0);
    assert_string_equal(got, "");
}

static void empty_lists_and_zero_limits_yield_nothing(void **state)
{
    char got[512];
    struct store_hit *hits = NULL;
    size_t nhits = 1;
    uint64_t snapshot;
    (void)state;

    put_query_fixture();
    expect_hits("[{\"kinds\":[]}]", "");
    expect_hits("[{\"authors\":[]}]", "");
    expect_hits("[{\"ids\":[]}]", "");
    expect_hits("[{\"#p\":[]}]", "");
    expect_hits("[{\"authors\":[\"$a1\"],\"kinds\":[]}]", "");
    expect_hits("[{\"limit\":0}]", "");
    expect_hits("[{\"kinds\":[1],\"limit\":0}]", "");
    expect_hits("[{\"ids\":[\"$01\"],\"limit\":0}]", "");
    expect_hits("[{\"since\":300,\"until\":100}]", "");
    /* An empty filter is not a wildcard for the others. */
    expect_hits("[{\"kinds\":[]},{\"ids\":[\"$01\"]}]", "01");

    assert_int_equal(store_query(&st, NULL, 0, 100000, &hits, &nhits, &snapshot), 0);
    assert_int_equal(nhits, 0);
    free(hits);

    /* No scan budget, no hits: a query cannot stall the loop however wide. */
    query("[{\"kinds\":[1]}]", 0, got, sizeof(got));
    assert_string_equal(got, "");
    query("[{\"kinds\":[1]}]", 2, got, sizeof(got));
    assert_string_equal(got, "02 06");
}

static void ids_and_multiple_filters_order_ties_by_lowest_id(void **state)
{
    (void)state;

    /* NIP-01: newest first and, at equal created_at, the lowest id first. */
    assert_int_equal(put(0x0c, 0xa1, 500, 1, "[]"), STORE_STORED);
    assert_int_equal(put(0x0a, 0xb2, 500, 1, "[]"), STORE_STORED);
    assert_int_equal(put(0x0b, 0xa1, 500, 7, "[]"), STORE_STORED);
    assert_int_equal(put(0x0d, 0xa1, 400, 1, "[]"), STORE_STORED);
    expect_hits("[{\"ids\":[\"$0d\",\"$0c\",\"$0b\",\"$0a\"]}]", "0a 0b 0c 0d");
    expect_hits("[{\"ids\":[\"$0d\",\"$0c\",\"$0b\",\"$0a\"],\"limit\":1}]", "0a");
    expect_hits("[{\"kinds\":[7]},{\"authors\":[\"$b2\"]},{\"ids\":[\"$0c\",\"$0d\"]}]", "0a 0b 0c 0d");
}

static void ties_come_lowest_id_first_on_every_index(void **state)
{
    (void)state;

    assert_int_equal(put(0x0c, 0xa1, 500, 1, "[[\"p\",\"$c1\"]]"), STORE_STORED);
    assert_int_equal(put(0x0a, 0xa1, 500, 1, "[[\"p\",\"$c1\"]]"), STORE_STORED);
    assert_int_equal(put(0x0b, 0xa1, 500, 1, "[[\"p\",\"$c1\"]]"), STORE_STORED);
    expect_hits("[{\"authors\":[\"$a1\"],\"limit\":1}]", "0a");
    expect_hits("[{\"authors\":[\"$a1\"],\"kinds\":[1]}]", "0a 0b 0c");
    expect_hits("[{\"kinds\":[1],\"limit\":2}]", "0a 0b");
    expect_hits("[{\"#p\":[\"$c1\"]}]", "0a 0b 0c");
    expect_hits("[{\"limit\":1}]", "0a");
}

static void one_filter_returns_each_event_once(void **state)
{
    (void)state;

    /* Indexed under two of the filter's values, or named twice by it, an event still comes once. */
    assert_int_equal(put(0x01, 0xa1, 100, 1, "[[\"p\",\"$c1\"],[\"p\",\"$c2\"]]"), STORE_STORED);
    assert_int_equal(put(0x02, 0xa1, 90, 1, "[[\"p\",\"$c1\"]]"), STORE_STORED);
    expect_hits("[{\"#p\":[\"$c1\",\"$c2\"]}]", "01 02");
    expect_hits("[{\"#p\":[\"$c1\",\"$c2\"],\"limit\":2}]", "01 02");
    expect_hits("[{\"kinds\":[1,1],\"limit\":2}]", "01 02");
    expect_hits("[{\"authors\":[\"$a1\",\"$a1\"]}]", "01 02");
    expect_hits("[{\"ids\":[\"$01\",\"$01\"]}]", "01");
}

/* Tags of one "d" tag whose value is `n` times `c`. */
static void long_d(char *out, size_t cap, char c, size_t n)
{
    assert_true(n + 16 < cap);
    strcpy(out, "[[\"d\",\"");
    memset(out + strlen(out), c, n);
    strcpy(out + 7 + n, "\"]]");
}

static void long_d_tags_name_distinct_addresses(void **state)
{
    char x[400], y[400], filter[420];
    (void)state;

    long_d(x, sizeof(x), 'x', 299);
    long_d(y, sizeof(y), 'y', 299);
    assert_int_equal(put(0x70, 0xa1, 100, 30000, x), STORE_STORED);
    assert_int_equal(put(0x71, 0xa1, 200, 30000, y), STORE_STORED);
    assert_int_equal(put(0x72, 0xa1, 150, 30000, "[[\"d\",\"\"]]"), STORE_STORED);
    assert_true(stored(0x70));
    assert_true(stored(0x71));
    assert_int_equal(put(0x73, 0xa1, 300, 30000, x), STORE_STORED);
    assert_false(stored(0x70));
    assert_true(stored(0x71));

    /* A value too long for the tag index is still found, by a scan. */
    snprintf(filter, sizeof(filter), "[{\"#d\":[\"%.*s\"]}]", 299, y + 7);
    expect_hits(filter, "71");
}

static void an_event_at_until_with_the_highest_id_is_found(void **state)
{
    (void)state;

    assert_int_equal(put(0xff, 0xa1, 700, 1, "[]"), STORE_STORED);
    expect_hits("[{\"authors\":[\"$a1\"],\"until\":700}]", "ff");
    expect_hits("[{\"until\":700}]", "ff");
    expect_hits("[{\"since\":700}]", "ff");
    expect_hits("[{\"until\":699}]", "");
}

static void latest_copy_outlives_its_read_transaction(void **state)
{
    struct event_view v;
    uint8_t pk[32], other[32];
    void *copy;
    MDB_txn *txn;
    (void)state;

    assert_int_equal(put(0x01, 0xa1, 100, 0, "[]"), STORE_STORED);
    assert_int_equal(put(0x02, 0xa1, 200, 0, "[]"), STORE_STORED);
    memset(pk, 0xa1, 32);
    assert_int_equal(store_get_latest_copy(&st, pk, 0, &v, &copy), 0);
    assert_non_null(copy);
    /* Another read transaction may start while the copy is in use. */
    assert_int_equal(store_read_begin(&st, &txn), 0);
    store_read_end(&st, txn);
    assert_int_equal(v.id[0], 0x02);
    assert_int_equal(v.created_at, 200);
    assert_memory_equal(v.pubkey, pk, 32);
    free(copy);

    memset(other, 0xb2, 32);
    assert_int_equal(store_get_latest_copy(&st, other, 0, &v, &copy), -ENOENT);
    assert_null(copy);
    assert_int_equal(store_read_begin(&st, &txn), 0);
    assert_int_equal(store_get_latest_copy(&st, pk, 0, &v, &copy), -EBUSY);
    assert_null(copy);
    store_read_end(&st, txn);
}

static void data_survives_close_and_reopen(void **state)
{
    (void)state;

    put_query_fixture();
    assert_int_equal(put(0x20, 0xa1, 210, 0, "[]"), STORE_STORED);
    fixture_db_close(&fx);
    open_store("events.db", 64);

    assert_true(stored(0x01));
    assert_true(stored(0x20));
    assert_int_equal(latest(0xa1, 0), 0x20);
    expect_hits("[{\"#p\":[\"$c1\"]}]", "03 01");
    expect_hits("[{}]", "04 05 20 02 06 03 01");
    /* The replacement rules see what the earlier session stored. */
    assert_int_equal(put(0x21, 0xa1, 150, 0, "[]"), STORE_SUPERSEDED);
    assert_int_equal(put(0x01, 0xa1, 100, 1, "[]"), STORE_DUPLICATE);
}

static void writes_queued_at_close_are_committed_and_reported(void **state)
{
    struct put *p[3];
    (void)state;

    p[0] = queue_put(0x01, 0xa1, 100, 1, "[]");
    p[1] = queue_put(0x02, 0xa1, 200, 1, "[]");
    p[2] = queue_put(0x01, 0xa1, 100, 1, "[]");
    fixture_db_close(&fx);
    expect_results(p, 3, (const enum store_result[]){STORE_STORED, STORE_STORED, STORE_DUPLICATE});

    open_store("events.db", 64);
    assert_true(stored(0x01));
    assert_true(stored(0x02));
}

static void full_map_fails_the_write_that_does_not_fit_and_keeps_the_rest(void **state)
{
    static char big[100 * 1024];
    char expect[8];
    struct put *p;
    int nstored = 0, status = 0;
    (void)state;

    /* Below the configuration's minimum, but db_init itself accepts it, and it fills quickly. */
    fixture_db_close(&fx);
    open_store("tiny.db", 1);
    memset(big, 'a', sizeof(big));

    while (nstored < 64) {
        p = queue_put_content((uint8_t)(0x80 + nstored), 0xa1, 100 + nstored, 1, "[]", big, sizeof(big));
        fixture_run_until(&fx, pending == 0);
        status = p->ew.w.status;
        if (status == 0)
            assert_int_equal(p->ew.result, STORE_STORED);
        free_put(p);
        if (status != 0)
            break;
        nstored++;
    }
    assert_int_equal(status, -EFBIG);
    assert_true(nstored > 0);

    for (int i = 0; i < nstored; i++)
        assert_true(stored((uint8_t)(0x80 + i)));
    assert_false(stored((uint8_t)(0x80 + nstored)));
    assert_int_equal(latest(0xa1, 1), 0x80 + nstored - 1);
    snprintf(expect, sizeof(expect), "%02x", 0x80 + nstored - 1);
    expect_hits("[{\"kinds\":[1],\"limit\":1}]", expect);

    /* A small event still fits in what the large one could not use. */
    assert_int_equal(put(0x01, 0xb2, 50, 1, "[]"), STORE_STORED);
    assert_true(stored(0x01));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        fixture_unit_test(stored_event_reads_back_as_client_json),
        fixture_unit_test(same_id_twice_is_a_duplicate),
        fixture_unit_test(newer_replaceable_event_replaces_older),
        fixture_unit_test(older_replaceable_event_is_superseded_and_not_stored),
        fixture_unit_test(equal_created_at_keeps_the_lower_id),
        fixture_unit_test(replacement_is_per_author_and_kind),
        fixture_unit_test(addressable_events_are_replaced_per_d_tag),
        fixture_unit_test(regular_events_are_all_kept),
        fixture_unit_test(writes_queued_together_apply_in_order),
        fixture_unit_test(listeners_hear_each_newly_stored_event_once),
        fixture_unit_test(a_query_snapshot_orders_commits_heard_by_listeners),
        fixture_unit_test(listener_added_before_start_is_called),
        fixture_unit_test(query_by_authors_kinds_and_ids),
        fixture_unit_test(query_by_tags),
        fixture_unit_test(query_time_bounds_are_inclusive),
        fixture_unit_test(query_limit_keeps_the_newest),
        fixture_unit_test(query_filters_are_ored_without_duplicates),
        fixture_unit_test(records_for_a_reconciliation_are_whole_oldest_first_and_bounded),
        fixture_unit_test(windows_walk_a_large_set_newest_first_and_keep_each_second_whole),
        fixture_unit_test(empty_lists_and_zero_limits_yield_nothing),
        fixture_unit_test(ids_and_multiple_filters_order_ties_by_lowest_id),
        fixture_unit_test(ties_come_lowest_id_first_on_every_index),
        fixture_unit_test(one_filter_returns_each_event_once),
        fixture_unit_test(long_d_tags_name_distinct_addresses),
        fixture_unit_test(an_event_at_until_with_the_highest_id_is_found),
        fixture_unit_test(latest_copy_outlives_its_read_transaction),
        fixture_unit_test(data_survives_close_and_reopen),
        fixture_unit_test(writes_queued_at_close_are_committed_and_reported),
        fixture_unit_test(full_map_fails_the_write_that_does_not_fit_and_keeps_the_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
