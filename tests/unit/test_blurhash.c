/* test_blurhash.c -- BlurHash against the npm encoder's hashes of the same pixels, and what it refuses. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "blurhash.h"
#include "fixture.h"

#define VECTORS "tests/vectors/blurhash.json"

static json_t *vectors;

static int load(void **state)
{
    (void)state;
    vectors = fixture_vectors(VECTORS, 0);
    return 0;
}

static int unload(void **state)
{
    (void)state;
    json_decref(vectors);
    return 0;
}

/* The RGBA pixels of a vector, and the same as RGB: a fourth band must change nothing. */
static uint8_t *pixels_of(json_t *v, size_t *len)
{
    const char *b64 = json_string_value(json_object_get(v, "rgba"));
    uint8_t *p = malloc(base64_decoded_len(b64, strlen(b64)));

    assert_non_null(p);
    assert_int_equal(base64_decode(b64, strlen(b64), p, len), 0);
    return p;
}

static void every_vector_gives_the_npm_encoders_hash(void **state)
{
    size_t i;
    json_t *v;

    (void)state;
    assert_true(json_array_size(vectors) >= 10);
    json_array_foreach(vectors, i, v)
    {
        int w = (int)json_integer_value(json_object_get(v, "width"));
        int h = (int)json_integer_value(json_object_get(v, "height"));
        int cx = (int)json_integer_value(json_object_get(v, "cx"));
        int cy = (int)json_integer_value(json_object_get(v, "cy"));
        const char *want = json_string_value(json_object_get(v, "hash"));
        char got[BLURHASH_MAX];
        size_t len;
        uint8_t *rgba = pixels_of(v, &len), *rgb = malloc((size_t)w * h * 3 + 1);

        assert_int_equal(len, (size_t)w * h * 4);
        assert_int_equal(blurhash_encode(rgba, w, h, (size_t)w * 4, 4, cx, cy, got, sizeof(got)), 0);
        if (strcmp(got, want) != 0)
            fail_msg("%s: %s, the npm encoder %s", json_string_value(json_object_get(v, "name")), got, want);
        assert_int_equal(strlen(got), 4 + 2 * cx * cy);
        for (size_t k = 0; k < (size_t)w * h; k++)
            memcpy(rgb + 3 * k, rgba + 4 * k, 3);
        assert_int_equal(blurhash_encode(rgb, w, h, (size_t)w * 3, 3, cx, cy, got, sizeof(got)), 0);
        assert_string_equal(got, want);
        free(rgba);
        free(rgb);
    }
}

static void rows_with_padding_are_read_by_their_stride(void **state)
{
    json_t *v = json_array_get(vectors, 6);
    int w = (int)json_integer_value(json_object_get(v, "width"));
    int h = (int)json_integer_value(json_object_get(v, "height"));
    size_t len, stride = (size_t)w * 4 + 12;
    uint8_t *rgba = pixels_of(v, &len), *padded = calloc(stride, (size_t)h);
    char got[BLURHASH_MAX];

    (void)state;
    assert_non_null(padded);
    for (int y = 0; y < h; y++)
        memcpy(padded + (size_t)y * stride, rgba + (size_t)y * w * 4, (size_t)w * 4);
    assert_int_equal(blurhash_encode(padded, w, h, stride, 4, 4, 3, got, sizeof(got)), 0);
    assert_string_equal(got, json_string_value(json_object_get(v, "hash")));
    free(rgba);
    free(padded);
}

static void out_of_range_arguments_are_refused(void **state)
{
    uint8_t px[4 * 4 * 3] = {0};
    char out[BLURHASH_MAX];

    (void)state;
    assert_int_equal(blurhash_encode(px, 4, 4, 12, 3, 0, 3, out, sizeof(out)), -EINVAL);
    assert_int_equal(blurhash_encode(px, 4, 4, 12, 3, 10, 3, out, sizeof(out)), -EINVAL);
    assert_int_equal(blurhash_encode(px, 0, 4, 12, 3, 4, 3, out, sizeof(out)), -EINVAL);
    assert_int_equal(blurhash_encode(px, 4, 4, 11, 3, 4, 3, out, sizeof(out)), -EINVAL);
    assert_int_equal(blurhash_encode(px, 4, 4, 12, 2, 4, 3, out, sizeof(out)), -EINVAL);
    /* 4 x 3 components take 28 characters and the NUL. */
    assert_int_equal(blurhash_encode(px, 4, 4, 12, 3, 4, 3, out, 28), -EINVAL);
    assert_int_equal(blurhash_encode(px, 4, 4, 12, 3, 4, 3, out, 29), 0);
    assert_int_equal(strlen(out), 28);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_vector_gives_the_npm_encoders_hash),
        cmocka_unit_test(rows_with_padding_are_read_by_their_stride),
        cmocka_unit_test(out_of_range_arguments_are_refused),
    };
    return cmocka_run_group_tests(tests, load, unload);
}
