/* test_thumbnail.c -- image_thumbnail_rgb(): a stored picture made small, as packed sRGB, alpha on white. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "image.h"

/* A `width` x `height` picture of one colour (`bands` values), saved as `format` ("jpeg" or "png"). */
static uint8_t *solid(const char *format, int width, int height, const double *colour, int bands, size_t *len)
{
    VipsImage *black = NULL, *im = NULL, *u8 = NULL;
    double zero[4] = {0, 0, 0, 0};
    void *buf = NULL;

    assert_int_equal(vips_black(&black, width, height, "bands", bands, NULL), 0);
    assert_int_equal(vips_linear(black, &im, zero, (double *)colour, bands, NULL), 0);
    assert_int_equal(vips_cast_uchar(im, &u8, NULL), 0);
    if (bands == 4)
        u8->Type = VIPS_INTERPRETATION_sRGB;
    if (strcmp(format, "jpeg") == 0)
        assert_int_equal(vips_jpegsave_buffer(u8, &buf, len, NULL), 0);
    else
        assert_int_equal(vips_pngsave_buffer(u8, &buf, len, NULL), 0);
    g_object_unref(black);
    g_object_unref(im);
    g_object_unref(u8);
    return buf;
}

static void a_picture_is_made_to_fit_as_rgb(void **state)
{
    const double red[3] = {200, 20, 20};
    size_t len;
    uint8_t *jpeg = solid("jpeg", 200, 100, red, 3, &len), *rgb;
    int w, h;
    (void)state;

    assert_int_equal(image_thumbnail_rgb(jpeg, len, 32, &rgb, &w, &h), 0);
    assert_int_equal(w, 32);
    assert_int_equal(h, 16);
    for (int i = 0; i < w * h; i++) {
        assert_true(abs(rgb[3 * i] - 200) <= 8);
        assert_true(abs(rgb[3 * i + 1] - 20) <= 8);
        assert_true(abs(rgb[3 * i + 2] - 20) <= 8);
    }
    free(rgb);
    g_free(jpeg);
}

static void transparency_is_flattened_on_white(void **state)
{
    const double clear[4] = {0, 0, 0, 0};
    size_t len;
    uint8_t *png = solid("png", 8, 8, clear, 4, &len), *rgb;
    int w, h;
    (void)state;

    assert_int_equal(image_thumbnail_rgb(png, len, 32, &rgb, &w, &h), 0);
    assert_int_equal(w, 8);
    assert_int_equal(h, 8);
    for (int i = 0; i < 3 * w * h; i++)
        assert_int_equal(rgb[i], 255);
    free(rgb);
    g_free(png);
}

static void bytes_that_are_no_picture_are_refused(void **state)
{
    static const uint8_t junk[] = "\xff\xd8\xff not really";
    uint8_t *rgb = (uint8_t *)1;
    int w, h;
    (void)state;

    assert_int_equal(image_thumbnail_rgb(junk, sizeof(junk), 32, &rgb, &w, &h), -22);
    assert_null(rgb);
}

static int setup(void **state)
{
    (void)state;
    return image_init();
}

static int teardown(void **state)
{
    (void)state;
    image_free();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_picture_is_made_to_fit_as_rgb),
        cmocka_unit_test(transparency_is_flattened_on_white),
        cmocka_unit_test(bytes_that_are_no_picture_are_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
