/* test_image.c -- formats decided by magic bytes, and what the pipeline refuses before decoding. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "image.h"

static enum image_type sniff(const char *bytes, size_t n, const char **name)
{
    return image_sniff((const uint8_t *)bytes, n, name);
}

static void accepted_formats_are_recognised_by_their_magic(void **state)
{
    const char *name;
    (void)state;

    assert_int_equal(sniff("\xff\xd8\xff\xe0", 4, &name), IMAGE_JPEG);
    assert_string_equal(name, "jpeg");
    assert_int_equal(sniff("\x89PNG\r\n\x1a\n....", 12, &name), IMAGE_PNG);
    assert_int_equal(sniff("GIF89a......", 12, &name), IMAGE_GIF);
    assert_int_equal(sniff("GIF87a......", 12, &name), IMAGE_GIF);
    assert_int_equal(sniff("RIFF\x10\0\0\0WEBPVP8 ", 16, &name), IMAGE_WEBP);
    assert_int_equal(sniff("\0\0\0\x1c"
                           "ftypavif\0\0\0\0avifmif1",
                           28, &name),
                     IMAGE_AVIF);
    assert_int_equal(sniff("\0\0\0\x18"
                           "ftypheic\0\0\0\0mif1heic",
                           24, &name),
                     IMAGE_HEIC);
    /* An AVIF whose major brand is the generic one is told apart by its compatible brands. */
    assert_int_equal(sniff("\0\0\0\x1c"
                           "ftypmif1\0\0\0\0mif1avif",
                           28, &name),
                     IMAGE_AVIF);
}

static void other_formats_are_refused_and_named(void **state)
{
    struct {
        const char *bytes;
        size_t n;
        const char *name;
    } cases[] = {
        {"<svg xmlns=\"http://www.w3.org/2000/svg\"/>", 41, "svg"},
        {"\xef\xbb\xbf  <?xml version=\"1.0\"?><svg/>", 30, "svg"},
        {"<!DOCTYPE html><html>", 21, "html"},
        {"%PDF-1.7", 8, "pdf"},
        {"II*\0\x08\0\0\0", 8, "tiff"},
        {"MM\0*\0\0\0\x08", 8, "tiff"},
        {"BM\x36\0\0\0", 6, "bmp"},
        {"MATLAB 5.0", 10, "matlab"},
        {"8BPS\0\x01", 6, "psd"},
        {"\0\0\0\x18"
         "ftypmp42\0\0\0\0isom",
         20, "unknown"},
        {"\xff\xd8", 2, "unknown"},
        {"", 0, "unknown"},
        {"random bytes", 12, "unknown"},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *name = NULL;
        assert_int_equal(sniff(cases[i].bytes, cases[i].n, &name), IMAGE_NONE);
        assert_string_equal(name, cases[i].name);
    }
}

static void mime_types_follow_the_format(void **state)
{
    (void)state;
    assert_string_equal(image_mime(IMAGE_JPEG), "image/jpeg");
    assert_string_equal(image_mime(IMAGE_AVIF), "image/avif");
    assert_string_equal(image_mime(IMAGE_NONE), "application/octet-stream");
}

/* A PNG claiming 50,000 x 50,000 pixels (made by tests/tools/make_fixtures): valid chunks, almost no data. */
static const uint8_t huge_png[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
    0xc3, 0x50, 0x00, 0x00, 0xc3, 0x50, 0x08, 0x02, 0x00, 0x00, 0x00, 0xc4, 0xcd, 0xaa, 0x9d, 0x00, 0x00, 0x00,
    0x0f, 0x49, 0x44, 0x41, 0x54, 0x78, 0x01, 0x01, 0x04, 0x00, 0xfb, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04,
    0x00, 0x01, 0x65, 0x49, 0xc3, 0x60, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

static void too_many_pixels_are_refused_before_decoding(void **state)
{
    struct image_opts o = {true, 200, 85, 50000000};
    struct image_out out;
    (void)state;

    assert_int_equal(image_process(huge_png, sizeof(huge_png), &o, &out), -22);
    assert_non_null(strstr(out.error, "too many pixels (50000x50000, 1 frame(s)"));
    image_out_free(&out);
}

static void unsupported_bytes_are_refused_with_their_name(void **state)
{
    struct image_opts o = {true, 200, 85, 50000000};
    struct image_out out;
    const char svg[] = "<svg xmlns=\"http://www.w3.org/2000/svg\"><rect/></svg>";
    (void)state;

    assert_int_equal(image_process((const uint8_t *)svg, sizeof(svg) - 1, &o, &out), -22);
    assert_string_equal(out.error, "unsupported format (svg)");
    image_out_free(&out);
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
        cmocka_unit_test(accepted_formats_are_recognised_by_their_magic),
        cmocka_unit_test(other_formats_are_refused_and_named),
        cmocka_unit_test(mime_types_follow_the_format),
        cmocka_unit_test(too_many_pixels_are_refused_before_decoding),
        cmocka_unit_test(unsupported_bytes_are_refused_with_their_name),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
