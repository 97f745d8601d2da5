/*
 * test_downloads.c -- the download scheduler on a real loop and one image
 * thread: pictures someone waits for are resized before those fetched ahead,
 * however long the latter have waited, and one becomes urgent when someone
 * starts waiting for it. The pictures are bytes at hand, so nothing needs the network.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "base64.h"
#include "blobcache.h"
#include "downloads.h"
#include "fetch.h"
#include "image.h"
#include "inbox.h"
#include "workpool.h"

/* A 1x1 PNG. */
#define PNG_BASE64 "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="

static uv_loop_t loop;
static struct inbox inbox;
static struct blobcache memory;
static struct fetcher fetcher;
static struct workpool images;
static struct downloads *downloads;
static uint8_t png[128];
static size_t png_len;

/* The image thread's first job waits for the test to open the gate, so that the others queue behind it. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open, gate_reached;
static struct work gate;

static void gate_run(struct work *w)
{
    (void)w;
    pthread_mutex_lock(&gate_lock);
    gate_reached = true;
    pthread_cond_broadcast(&gate_cond);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
}

/* The image thread is held at the gate: what is submitted now queues behind it. */
static void close_gate(void)
{
    gate.run = gate_run;
    workpool_submit(&images, &gate);
    pthread_mutex_lock(&gate_lock);
    while (!gate_reached)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
}

/* A wait and when it heard, in the order of all of them. */
struct heard {
    struct download_wait w;
    char name;
    enum download_error error;
};

static char order[8];
static int nheard;

static void on_heard(struct download_wait *w, const struct download_result *r)
{
    struct heard *h = (struct heard *)w;

    h->error = r->error;
    order[nheard++] = h->name;
}

/* Waits for the picture named `picture`, as `label`. */
static void get(struct heard *h, char label, char picture, bool interactive, const struct download_early *early)
{
    char url[32];

    memset(h, 0, sizeof(*h));
    h->name = label;
    h->w.cb = on_heard;
    h->w.early = early;
    snprintf(url, sizeof(url), "data:sha256,%c", picture);
    downloads_get_data(downloads, url, strlen(url), png, png_len, interactive, &h->w);
}

/* Lets the image thread go, and runs the loop until `n` waits have heard. */
static void open_gate_until_heard(int n)
{
    pthread_mutex_lock(&gate_lock);
    gate_open = true;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
    for (int i = 0; i < 100000 && nheard < n; i++)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(nheard, n);
}

static int setup(void **state)
{
    char err[256];
    struct downloads_options o = {.max_concurrent = 8, .max_per_host = 4, .image = {true, 64, 80, 1 << 24}};
    (void)state;

    assert_int_equal(base64_decode(PNG_BASE64, strlen(PNG_BASE64), png, &png_len), 0);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(inbox_init(&inbox, &loop), 0);
    blobcache_init(&memory, 1 << 20);
    assert_int_equal(image_init(), 0);
    if (fetcher_init(&fetcher, &loop,
                     &(struct fetch_options){.max_bytes = 1 << 20,
                                             .max_bytes_name = "max_source_bytes",
                                             .connect_timeout_ms = 5000,
                                             .timeout_ms = 15000},
                     err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(workpool_init(&images, 1, &inbox), 0);
    assert_int_equal(downloads_init(&downloads, &fetcher, &images, &memory, &o), 0);
    nheard = 0;
    gate_open = gate_reached = false;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    downloads_shutdown(downloads);
    workpool_shutdown(&images);
    inbox_drain(&inbox);
    inbox_free(&inbox);
    downloads_free(downloads);
    fetcher_free(&fetcher);
    blobcache_free(&memory);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    workpool_free(&images);
    return 0;
}

static void pictures_someone_waits_for_are_resized_before_those_fetched_ahead(void **state)
{
    struct heard a, b, c, b2;
    (void)state;

    close_gate();

    /* Fetched ahead: a, then b; then c, which someone waits for; then someone waits for b too. */
    get(&a, 'a', 'a', false, NULL);
    get(&b, 'b', 'b', false, NULL);
    get(&c, 'c', 'c', true, NULL);
    get(&b2, 'B', 'b', true, NULL);
    assert_int_equal(nheard, 0);

    open_gate_until_heard(4);
    /* c first, then b with both its waits, and a, which came first, last. */
    assert_memory_equal(order, "cbBa", 4);
    assert_int_equal(a.error, DOWNLOAD_OK);
    assert_int_equal(c.error, DOWNLOAD_OK);
}

/* The early variant: a JPEG of the master's own size, recorded with the size shape() was given. */
static int shaped_w, shaped_h, early_w;

static bool shape_jpeg(const struct download_wait *w, int width, int height, struct image_variant_spec *out)
{
    (void)w;
    shaped_w = width;
    shaped_h = height;
    *out = (struct image_variant_spec){.size = 64, .type = IMAGE_JPEG, .quality = 80};
    return true;
}

static bool shape_none(const struct download_wait *w, int width, int height, struct image_variant_spec *out)
{
    (void)w;
    (void)width;
    (void)height;
    (void)out;
    return false;
}

static void on_early(struct download_wait *w, const struct download_variant *v, int width, int height)
{
    struct heard *h = (struct heard *)w;

    assert_non_null(v->blob);
    assert_int_equal(v->spec->type, IMAGE_JPEG);
    assert_int_equal(width, shaped_w);
    assert_int_equal(height, shaped_h);
    early_w = v->width;
    order[nheard++] = (char)(h->name - 'a' + 'A');
}

static void an_early_variant_comes_before_its_master_and_the_master_after_interactive_work_queued_first(void **state)
{
    static const struct download_early early = {shape_jpeg, on_early}, declined = {shape_none, on_early};
    struct heard e, c, x;
    (void)state;

    close_gate();

    get(&e, 'e', 'e', true, &early);
    get(&c, 'c', 'c', true, NULL);
    get(&x, 'x', 'x', false, &declined);
    assert_int_equal(nheard, 0);

    open_gate_until_heard(4);
    /* e's variant; then c, which someone waits for too and was queued before e's master; then e's master and x,
     * fetched ahead, which declined an early variant (in either order: x may start before e's variant is back). */
    assert_memory_equal(order, "Ec", 2);
    assert_true(memcmp(order + 2, "ex", 2) == 0 || memcmp(order + 2, "xe", 2) == 0);
    assert_int_equal(shaped_w, 1);
    assert_int_equal(shaped_h, 1);
    assert_int_equal(early_w, 1);
    assert_int_equal(e.error, DOWNLOAD_OK);
    assert_int_equal(x.error, DOWNLOAD_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(pictures_someone_waits_for_are_resized_before_those_fetched_ahead, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            an_early_variant_comes_before_its_master_and_the_master_after_interactive_work_queued_first, setup,
            teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
