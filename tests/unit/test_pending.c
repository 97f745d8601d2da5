/*
 * test_pending.c -- the search for a pubkey's picture, on a real loop with a
 * real store, index, scheduler and image threads: one search per pubkey, failures
 * remembered, the refetch when a file goes while its record is written, and
 * searches abandoned at shutdown; data: pictures named by their bytes and
 * bounded by them. Profiles are stored here and pictures are data: URIs, so
 * that nothing needs the network.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blob.h"
#include "blobcache.h"
#include "db.h"
#include "downloads.h"
#include "fetch.h"
#include "fixture.h"
#include "image.h"
#include "pending.h"
#include "pictures.h"
#include "store.h"
#include "workpool.h"

/* A 1x1 PNG. */
#define PNG_URI                                                                                                        \
    "data:image/"                                                                                                      \
    "png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="

/* The same PNG's bytes under another media type. */
#define PNG_AS_JPEG_URI                                                                                                \
    "DATA:image/"                                                                                                      \
    "jpeg;BASE64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg"

/* The most bytes of a data: picture here. */
#define MAX_DATA 4096

static struct fixture fx;
static struct store st;
static struct blobs blobs;
static struct blobcache memory;
static struct pictures index_;
static struct fetcher fetcher;
static struct workpool images;
static struct downloads *downloads;
static struct pending *pending;
static int writes;

/* A wait and what it heard. */
struct heard {
    struct pending_wait w;
    int calls;
    struct pending_result r;
    struct pic pic;
};

static void on_heard(struct pending_wait *w, const struct pending_result *r)
{
    struct heard *h = (struct heard *)w;

    h->calls++;
    h->r = *r;
    if (r->pic != NULL)
        h->pic = *r->pic;
    h->r.pic = r->pic != NULL ? &h->pic : NULL;
    h->r.blob = NULL;
}

static void on_event_written(struct store_event_write *ew)
{
    free(ew->rec);
    free(ew);
    writes--;
}

/* Stores a kind 0 of `pubkey` (all bytes `who`) with `content`; the store checks neither ids nor signatures. */
static void store_profile(uint8_t who, uint8_t id, const char *content)
{
    struct store_event_write *ew = calloc(1, sizeof(*ew));

    assert_non_null(ew);
    memset(ew->id, id, 32);
    ew->rec = fixture_record(id, who, (int64_t)time(NULL) - 100 + id, 0, "[]", content, strlen(content), &ew->rec_len);
    ew->done = on_event_written;
    writes++;
    store_put_event(&st, ew);
    fixture_run_until(&fx, writes == 0);
}

static void key(uint8_t out[32], uint8_t who)
{
    memset(out, who, 32);
}

static int setup(void **state)
{
    char err[256], path[128];
    struct downloads_options dopt = {.max_concurrent = 4};
    struct pending_options popt = {.max_age = 3600, .max_data_bytes = MAX_DATA};
    (void)state;

    fixture_open(&fx, "pending");
    fixture_db_open(&fx, "events.db", 64);
    assert_int_equal(store_init(&st, fx.db), 0);
    snprintf(path, sizeof(path), "%s/media", fx.dir);
    if (blobs_init(&blobs, path, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    blobcache_init(&memory, 1 << 20);
    assert_int_equal(pictures_init(&index_, &fx.loop, &(struct pictures_options){1 << 30, 90, 3600000}, fx.db, &blobs,
                                   &memory, &fx.inbox),
                     0);
    assert_int_equal(db_start(fx.db), 0);
    pictures_start(&index_);
    assert_int_equal(image_init(), 0);
    if (fetcher_init(&fetcher, &fx.loop,
                     &(struct fetch_options){.max_bytes = 10 << 20,
                                             .max_bytes_name = "max_source_bytes",
                                             .connect_timeout_ms = 5000,
                                             .timeout_ms = 15000},
                     err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(workpool_init(&images, 1, &fx.inbox), 0);
    dopt.image = (struct image_opts){true, 64, 80, 1 << 24};
    assert_int_equal(downloads_init(&downloads, &fetcher, &images, &memory, &dopt), 0);
    /* No upstream relays: every profile here is stored locally, so no lookup is ever made. */
    assert_int_equal(pending_init(&pending, &st, &index_, NULL, downloads, &popt), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    /* The relay's shutdown order: searches, downloads, threads, writer and database, then the loop's handles. */
    pending_shutdown(pending);
    downloads_shutdown(downloads);
    workpool_shutdown(&images);
    inbox_drain(&fx.inbox);
    pictures_shutdown(&index_);
    db_shutdown(fx.db);
    inbox_free(&fx.inbox);
    pending_free(pending);
    downloads_free(downloads);
    fetcher_free(&fetcher);
    pictures_free(&index_);
    blobcache_free(&memory);
    blobs_free(&blobs);
    workpool_free(&images);
    fixture_close(&fx);
    return 0;
}

static void start(uint8_t who, bool background, const struct pic *old, struct heard *h)
{
    uint8_t pk[32];

    key(pk, who);
    memset(h, 0, sizeof(*h));
    h->w.cb = on_heard;
    assert_int_equal(pending_start(pending, pk, PICTURES_AVATAR, background, false, old, &h->w), 0);
}

static void waits_for_one_pubkey_share_one_search_and_one_download(void **state)
{
    struct heard a, b;
    struct downloads_stats ds;
    struct pic rec;
    uint8_t pk[32];
    (void)state;

    store_profile(1, 1, "{\"picture\":\"" PNG_URI "\"}");
    start(1, true, NULL, &a);
    start(1, false, NULL, &b); /* joins, and moves the search ahead */
    key(pk, 1);
    assert_true(pending_active(pending, pk));
    assert_int_equal(a.calls + b.calls, 0); /* never from inside pending_start() */
    fixture_run_until(&fx, b.calls == 1);
    assert_int_equal(a.calls, 1);
    assert_false(a.r.abandoned);
    assert_int_equal(a.r.status, 0);
    assert_int_equal(a.pic.h.state, PIC_OK);
    assert_memory_equal(a.pic.h.blob, b.pic.h.blob, 32);
    assert_false(pending_active(pending, pk));
    downloads_stats(downloads, &ds);
    assert_int_equal(ds.started, 1);
    assert_int_equal(ds.processed, 1);
    /* The record is committed before anyone is told. */
    assert_int_equal(pictures_get(&index_, pk, &rec), 0);
    assert_int_equal(rec.h.state, PIC_OK);
    assert_int_equal(blob_exists(&blobs, rec.h.blob), 1);
}

static void a_profile_without_a_picture_is_remembered_with_a_retry_time(void **state)
{
    struct heard h;
    struct pic rec;
    uint8_t pk[32];
    (void)state;

    store_profile(2, 1, "{\"name\":\"nobody\"}");
    start(2, false, NULL, &h);
    fixture_run_until(&fx, h.calls == 1);
    assert_int_equal(h.pic.h.state, PIC_NEGATIVE);
    assert_int_equal(h.pic.h.reason, PENDING_NO_PICTURE);
    key(pk, 2);
    assert_int_equal(pictures_get(&index_, pk, &rec), 0);
    assert_int_equal(rec.h.failures, 1);
    assert_true(rec.h.retry_at > (uint64_t)time(NULL));

    /* A second failure backs off longer. */
    start(2, false, &rec, &h);
    fixture_run_until(&fx, h.calls == 1);
    assert_int_equal(h.pic.h.failures, 2);
    assert_true(h.pic.h.retry_at - h.pic.h.fetched_at > rec.h.retry_at - rec.h.fetched_at);
}

static void data_pictures_are_named_by_their_bytes_however_written(void **state)
{
    struct heard a, b;
    struct downloads_stats ds;
    (void)state;

    store_profile(6, 1, "{\"picture\":\"" PNG_URI "\"}");
    store_profile(7, 2, "{\"picture\":\"" PNG_AS_JPEG_URI "\"}");
    start(6, false, NULL, &a);
    start(7, false, NULL, &b);
    fixture_run_until(&fx, a.calls == 1);
    fixture_run_until(&fx, b.calls == 1);
    assert_int_equal(a.pic.h.state, PIC_OK);
    assert_int_equal(b.pic.h.state, PIC_OK);
    assert_string_equal(a.pic.url, b.pic.url);
    assert_true(strncmp(a.pic.url, "data:sha256,", 12) == 0);
    downloads_stats(downloads, &ds);
    assert_int_equal(ds.started, 1);
    assert_int_equal(ds.processed, 1);
}

static void a_data_picture_over_the_limit_is_refused_as_too_big(void **state)
{
    char content[MAX_DATA * 2], *p;
    struct downloads_stats ds;
    struct heard h;
    (void)state;

    p = content + sprintf(content, "{\"picture\":\"data:image/png;base64,");
    for (int i = 0; i < MAX_DATA / 3 + 1; i++)
        p += sprintf(p, "QUJD");
    strcpy(p, "\"}");
    store_profile(8, 1, content);
    start(8, false, NULL, &h);
    fixture_run_until(&fx, h.calls == 1);
    assert_int_equal(h.pic.h.state, PIC_NEGATIVE);
    assert_int_equal(h.pic.h.reason, PENDING_DATA_TOO_BIG);
    downloads_stats(downloads, &ds);
    assert_int_equal(ds.started, 0);
}

static void on_purged(void *ctx, const struct pictures_purged *r)
{
    assert_int_equal(r->status, 0);
    (*(int *)ctx)++;
}

/*
 * The race: a request read the record (picture OK), then the file was evicted
 * before the confirmed record was written. The write fails with -ENOENT, and
 * the picture is downloaded again and written with its bytes.
 */
static void a_picture_whose_file_goes_while_its_record_is_written_is_downloaded_again(void **state)
{
    struct heard h;
    struct pic rec;
    struct pending_stats ps;
    struct downloads_stats ds;
    uint8_t pk[32];
    int purged = 0;
    (void)state;

    store_profile(3, 1, "{\"picture\":\"" PNG_URI "\"}");
    start(3, false, NULL, &h);
    fixture_run_until(&fx, h.calls == 1);
    key(pk, 3);
    assert_int_equal(pictures_get(&index_, pk, &rec), 0);
    assert_int_equal(rec.h.state, PIC_OK);

    pictures_purge(&index_, PURGE_PICTURES, NULL, on_purged, &purged);
    fixture_run_until(&fx, purged == 1);
    assert_int_equal(blob_exists(&blobs, rec.h.blob), 0);

    /* The same profile and URL as the record read before the purge: confirmed, with no bytes to write. */
    start(3, false, &rec, &h);
    fixture_run_until(&fx, h.calls == 1);
    assert_false(h.r.abandoned);
    assert_int_equal(h.r.status, 0);
    assert_false(h.r.confirmed);
    assert_int_equal(h.pic.h.state, PIC_OK);
    pending_stats(pending, &ps);
    assert_int_equal(ps.refetched, 1);
    downloads_stats(downloads, &ds);
    assert_int_equal(ds.started, 2);
    assert_int_equal(blob_exists(&blobs, h.pic.h.blob), 1);
    assert_int_equal(pictures_get(&index_, pk, &rec), 0);
    assert_int_equal(rec.h.state, PIC_OK);
}

static void an_unchanged_picture_whose_file_is_there_is_only_confirmed(void **state)
{
    struct heard h;
    struct pic rec;
    struct downloads_stats ds;
    uint8_t pk[32];
    (void)state;

    store_profile(4, 1, "{\"picture\":\"" PNG_URI "\"}");
    start(4, false, NULL, &h);
    fixture_run_until(&fx, h.calls == 1);
    key(pk, 4);
    assert_int_equal(pictures_get(&index_, pk, &rec), 0);
    start(4, false, &rec, &h);
    fixture_run_until(&fx, h.calls == 1);
    assert_true(h.r.confirmed);
    assert_int_equal(h.r.status, 0);
    downloads_stats(downloads, &ds);
    assert_int_equal(ds.started, 1);
}

static void searches_under_way_are_abandoned_at_shutdown(void **state)
{
    struct heard h;
    struct pic rec;
    uint8_t pk[32];
    (void)state;

    /* A download under way: the guard refuses the address once libcurl gets to it, which is after shutdown. */
    store_profile(5, 1, "{\"picture\":\"http://127.0.0.1:9/p.png\"}");
    start(5, false, NULL, &h);
    pending_shutdown(pending);
    downloads_shutdown(downloads);
    assert_int_equal(h.calls, 1);
    assert_true(h.r.abandoned);
    key(pk, 5);
    assert_int_equal(pictures_get(&index_, pk, &rec), -ENOENT); /* nothing remembered */
    assert_int_equal(pending_start(pending, pk, PICTURES_AVATAR, false, false, NULL, &h.w), -ECANCELED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        fixture_unit_test(waits_for_one_pubkey_share_one_search_and_one_download),
        fixture_unit_test(a_profile_without_a_picture_is_remembered_with_a_retry_time),
        fixture_unit_test(a_picture_whose_file_goes_while_its_record_is_written_is_downloaded_again),
        fixture_unit_test(an_unchanged_picture_whose_file_is_there_is_only_confirmed),
        fixture_unit_test(data_pictures_are_named_by_their_bytes_however_written),
        fixture_unit_test(a_data_picture_over_the_limit_is_refused_as_too_big),
        fixture_unit_test(searches_under_way_are_abandoned_at_shutdown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
