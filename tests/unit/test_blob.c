/* test_blob.c -- picture files: read back whole, and a damaged one (size or SHA-256) never read as good. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob.h"

static char dir[64];
static struct blobs blobs;
static uint8_t data[5000], hash[32];
static char path[4096];

static int setup(void **state)
{
    char err[256];
    (void)state;

    strcpy(dir, "/tmp/pfp-test-blob-XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(blobs_init(&blobs, dir, err, sizeof(err)), 0);
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7);
    blob_hash(data, sizeof(data), hash);
    assert_int_equal(blob_write(&blobs, hash, data, sizeof(data)), 0);
    blob_path(&blobs, hash, path, sizeof(path));
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;

    blobs_free(&blobs);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* Rewrites the file with `len` bytes of `data`, the byte at `flip` inverted (SIZE_MAX: none). */
static void rewrite(size_t len, size_t flip)
{
    uint8_t copy[sizeof(data)];
    FILE *f = fopen(path, "wb");

    memcpy(copy, data, sizeof(copy));
    if (flip != SIZE_MAX)
        copy[flip] ^= 0xff;
    assert_non_null(f);
    assert_int_equal(fwrite(copy, 1, len, f), len);
    fclose(f);
}

static void a_whole_file_reads_back(void **state)
{
    uint8_t *got;
    size_t len;
    (void)state;

    assert_int_equal(blob_read(&blobs, hash, sizeof(data), &got, &len), 0);
    assert_int_equal(len, sizeof(data));
    assert_memory_equal(got, data, len);
    free(got);
}

static void a_damaged_file_is_ebadmsg(void **state)
{
    uint8_t *got = NULL;
    size_t len;
    (void)state;

    rewrite(sizeof(data), 2500);
    assert_int_equal(blob_read(&blobs, hash, sizeof(data), &got, &len), -EBADMSG);
    rewrite(sizeof(data) / 2, SIZE_MAX);
    assert_int_equal(blob_read(&blobs, hash, sizeof(data), &got, &len), -EBADMSG);
    rewrite(0, SIZE_MAX);
    assert_int_equal(blob_read(&blobs, hash, sizeof(data), &got, &len), -EBADMSG);
    assert_null(got);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(blob_read(&blobs, hash, sizeof(data), &got, &len), -ENOENT);
}

static void writing_again_replaces_a_file_of_the_wrong_size(void **state)
{
    uint8_t *got;
    size_t len;
    (void)state;

    rewrite(sizeof(data) / 2, SIZE_MAX);
    assert_int_equal(blob_write(&blobs, hash, data, sizeof(data)), 0);
    assert_int_equal(blob_read(&blobs, hash, sizeof(data), &got, &len), 0);
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(a_whole_file_reads_back, setup, teardown),
        cmocka_unit_test_setup_teardown(a_damaged_file_is_ebadmsg, setup, teardown),
        cmocka_unit_test_setup_teardown(writing_again_replaces_a_file_of_the_wrong_size, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
