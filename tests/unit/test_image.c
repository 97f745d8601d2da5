/*
 * test_image.c -- formats decided by magic bytes; AVIF and HEIF whatever VIPSHOME says; what the pipeline
 * refuses, before or while decoding, and why; the time and memory budgets; originals kept up to their end;
 * masters (WebP, alpha, upright, frames and delays) and the variants made of them; thumbnails as RGB.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>
#include <zlib.h>

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
    assert_int_equal(out.refusal, IMAGE_REFUSED_PIXELS);
    image_out_free(&out);
}

/* A `width` x `height` RGB ramp saved by `save` ("jpeg", "avif", "heic"), g_free()d by the caller. */
static uint8_t *picture(const char *format, int width, int height, bool progressive, size_t *len)
{
    VipsImage *xyz = NULL, *rgb = NULL, *ramp = NULL;
    void *buf = NULL;
    int r;

    assert_int_equal(vips_xyz(&xyz, width, height, NULL), 0);
    assert_int_equal(vips_bandjoin_const1(xyz, &rgb, 0, NULL), 0);
    assert_int_equal(vips_cast_uchar(rgb, &ramp, NULL), 0);
    if (strcmp(format, "jpeg") == 0)
        r = vips_jpegsave_buffer(ramp, &buf, len, "interlace", progressive, NULL);
    else
        r = vips_heifsave_buffer(
            ramp, &buf, len, "compression",
            strcmp(format, "avif") == 0 ? VIPS_FOREIGN_HEIF_COMPRESSION_AV1 : VIPS_FOREIGN_HEIF_COMPRESSION_HEVC, NULL);
    g_object_unref(ramp);
    g_object_unref(rgb);
    g_object_unref(xyz);
    assert_int_equal(r, 0);
    return buf;
}

/* setup() points VIPSHOME where no libvips modules are, as a relay installed elsewhere might find itself. */
static void avif_and_heif_load_and_save_wherever_libvips_looks_for_modules(void **state)
{
    const char *formats[] = {"avif", "heic"};
    const enum image_type types[] = {IMAGE_AVIF, IMAGE_HEIC};
    (void)state;

    for (int i = 0; i < 2; i++) {
        size_t len;
        uint8_t *src = picture(formats[i], 300, 240, false, &len);
        struct image_opts resize = {true, 200, 85, 50000000, 2000, 0}, keep = {false, 200, 85, 50000000, 2000, 0};
        struct image_out out;

        assert_int_equal(image_process(src, len, &resize, &out), 0);
        assert_int_equal(out.type, IMAGE_WEBP);
        assert_int_equal(out.width, 200);
        assert_int_equal(out.height, 160);
        assert_int_equal(out.frames, 1);
        image_out_free(&out);
        assert_int_equal(image_process(src, len, &keep, &out), 0);
        assert_int_equal(out.type, types[i]);
        assert_int_equal(out.len, len);
        image_out_free(&out);
        g_free(src);
    }
}

/* Builds a PNG of one grey 2x2 picture (6 bytes of rows) whose stream holds `rows` bytes. */
static size_t tiny_png(uint8_t *out, size_t rows)
{
    static const uint8_t head[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D',
                                   'R',  0,   0,   0,   2,    0,    0,    0,    2, 8, 0, 0,  0,   0};
    size_t n = sizeof(head);
    uLongf zlen = 200;
    uint8_t zeros[64] = {0};
    uint32_t crc;

    memcpy(out, head, n);
    crc = (uint32_t)crc32(0, out + 12, 17);
    for (int i = 0; i < 4; i++)
        out[n++] = (uint8_t)(crc >> (24 - 8 * i));
    assert_int_equal(compress2(out + n + 8, &zlen, zeros, (uLong)rows, 9), Z_OK);
    for (int i = 0; i < 4; i++)
        out[n + i] = (uint8_t)(zlen >> (24 - 8 * i));
    memcpy(out + n + 4, "IDAT", 4);
    crc = (uint32_t)crc32(0, out + n + 4, (uInt)(4 + zlen));
    n += 8 + zlen;
    for (int i = 0; i < 4; i++)
        out[n++] = (uint8_t)(crc >> (24 - 8 * i));
    memcpy(out + n, "\0\0\0\0IEND\xae\x42\x60\x82", 12);
    return n + 12;
}

static void each_refusal_is_named_and_counted(void **state)
{
    uint8_t scans[2 + 6 * 8 * 101 + 2], png[512];
    size_t jlen, n = 2, plen;
    uint8_t *jpeg = picture("jpeg", 64, 64, false, &jlen);
    struct image_opts o = {true, 200, 85, 50000000, 2000, 0}, small = {true, 200, 85, 50000000, 2000, 1};
    struct image_stats before, after;
    struct image_out out;
    struct {
        const uint8_t *src;
        size_t len;
        const struct image_opts *o;
        enum image_refusal why;
        const char *name;
    } cases[] = {
        {(const uint8_t *)"<svg/>", 6, &o, IMAGE_REFUSED_FORMAT, "format"},
        {huge_png, sizeof(huge_png), &o, IMAGE_REFUSED_PIXELS, "pixels"},
        {scans, sizeof(scans), &o, IMAGE_REFUSED_SCANS, "scans"},
        {png, 0, &o, IMAGE_REFUSED_TRAILING_DATA, "trailing_data"},
        {jpeg, jlen, &small, IMAGE_REFUSED_MEMORY, "memory"},
        {(const uint8_t *)"\xff\xd8\xff\xe0 not a JPEG", 16, &o, IMAGE_REFUSED_CORRUPT, "corrupt"},
    };
    (void)state;

    /* 101 scans of nothing: refused from the markers, before libjpeg reads a header. */
    memcpy(scans, "\xff\xd8", 2);
    for (int i = 0; i < 101; i++, n += 8)
        memcpy(scans + n, "\xff\xda\x00\x06\x01\x01\x00\x00", 8);
    memcpy(scans + n, "\xff\xd9", 2);
    cases[2].len = n + 2;
    plen = tiny_png(png, 7); /* a byte more than two rows of a filter byte and two samples */
    cases[3].len = plen;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        image_stats(&before);
        assert_int_equal(image_process(cases[i].src, cases[i].len, cases[i].o, &out), -22);
        assert_int_equal(out.refusal, cases[i].why);
        assert_string_equal(image_refusal_name(out.refusal), cases[i].name);
        image_stats(&after);
        for (int r = 0; r < IMAGE_REFUSALS; r++)
            assert_int_equal(after.refused[r] - before.refused[r], r == (int)cases[i].why);
        image_out_free(&out);
    }
    /* The same PNG with its rows exactly is a picture. */
    plen = tiny_png(png, 6);
    assert_int_equal(image_process(png, plen, &o, &out), 0);
    image_out_free(&out);
    g_free(jpeg);
}

static void a_picture_past_its_deadline_is_stopped(void **state)
{
    size_t len;
    uint8_t *src = picture("jpeg", 4000, 3000, false, &len);
    struct image_opts quick = {false, 200, 85, 50000000, 1, 0}, enough = {false, 200, 85, 50000000, 20000, 0};
    struct image_out out;
    (void)state;

    /* Decoding 12 megapixels takes tens of milliseconds; the watchdog stops it within a strip of the first. */
    assert_int_equal(image_process(src, len, &quick, &out), -22);
    assert_int_equal(out.refusal, IMAGE_REFUSED_TIMEOUT);
    assert_non_null(strstr(out.error, "image_timeout_ms"));
    image_out_free(&out);
    assert_int_equal(image_process(src, len, &enough, &out), 0);
    image_out_free(&out);
    g_free(src);
}

struct concurrent {
    const uint8_t *src;
    size_t len;
    struct image_opts o;
    int rc;
};

static void *process_one(void *arg)
{
    struct concurrent *c = arg;
    struct image_out out;

    c->rc = image_process(c->src, c->len, &c->o, &out);
    image_out_free(&out);
    return NULL;
}

static void pictures_wait_for_memory_rather_than_being_refused(void **state)
{
    size_t len;
    /* A progressive JPEG's decoder holds its coefficients: 1500 x 1000 x 3 x 2 bytes, some 9 MB. */
    uint8_t *src = picture("jpeg", 1500, 1000, true, &len);
    struct concurrent c[3];
    pthread_t threads[3];
    (void)state;

    for (int i = 0; i < 3; i++) {
        c[i] = (struct concurrent){src, len, {true, 200, 85, 50000000, 0, 12 << 20}, -1};
        assert_int_equal(pthread_create(&threads[i], NULL, process_one, &c[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(c[i].rc, 0);
    }
    g_free(src);
}

static void originals_are_kept_up_to_their_end(void **state)
{
    size_t len;
    uint8_t *jpeg = picture("jpeg", 64, 64, false, &len), *polyglot = malloc(len + 22);
    struct image_opts keep = {false, 200, 85, 50000000, 2000, 0};
    struct image_out out;
    (void)state;

    memcpy(polyglot, jpeg, len);
    memcpy(polyglot + len, "PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 22);
    assert_int_equal(image_process(polyglot, len + 22, &keep, &out), 0);
    assert_int_equal(out.len, len);
    assert_memory_equal(out.data, jpeg, len);
    image_out_free(&out);
    /* Without its end marker libjpeg would make do, but such a file is not kept. */
    assert_int_equal(image_process(jpeg, len - 2, &keep, &out), -22);
    assert_int_equal(out.refusal, IMAGE_REFUSED_CORRUPT);
    image_out_free(&out);
    free(polyglot);
    g_free(jpeg);
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

/* A gradient, so that lossy encoders have something to lose and PNG has something to keep exactly. */
static uint8_t *gradient(int w, int h)
{
    uint8_t *rgb = malloc((size_t)w * h * 3);

    assert_non_null(rgb);
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            uint8_t *px = rgb + ((size_t)y * w + x) * 3;
            px[0] = (uint8_t)(x * 255 / (w - 1));
            px[1] = (uint8_t)(y * 255 / (h - 1));
            px[2] = 128;
        }
    }
    return rgb;
}

static void rgb_pixels_are_encoded_in_each_format_at_their_size(void **state)
{
    static const enum image_type types[] = {IMAGE_JPEG, IMAGE_WEBP, IMAGE_AVIF, IMAGE_PNG};
    uint8_t *rgb = gradient(48, 32);

    (void)state;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        struct image_out out;
        const char *name;
        VipsImage *im;
        double centre[3];
        const uint8_t *want = rgb + ((size_t)16 * 48 + 24) * 3;

        assert_int_equal(image_encode_rgb(rgb, 48, 32, types[i], 85, &out), 0);
        assert_int_equal(out.type, types[i]);
        assert_int_equal(out.width, 48);
        assert_int_equal(out.height, 32);
        assert_int_equal(image_sniff(out.data, out.len, &name), types[i]);
        im = vips_image_new_from_buffer(out.data, out.len, "", NULL);
        assert_non_null(im);
        assert_int_equal(vips_image_get_width(im), 48);
        assert_int_equal(vips_image_get_height(im), 32);
        assert_int_equal(vips_image_get_bands(im), 3);
        /* libvips 8.14.1's webpsave writes its own EXIF whatever `strip` says; image.c cuts it out. */
        assert_false(vips_image_get_typeof(im, VIPS_META_EXIF_NAME));
        for (int b = 0; b < 3; b++) {
            double *v;
            int n;
            assert_int_equal(vips_getpoint(im, &v, &n, 24, 16, NULL), 0);
            centre[b] = v[b];
            g_free(v);
        }
        for (int b = 0; b < 3; b++) {
            if (types[i] == IMAGE_PNG)
                assert_int_equal((int)centre[b], want[b]);
            else
                assert_true(centre[b] > want[b] - 12 && centre[b] < want[b] + 12);
        }
        g_object_unref(im);
        image_out_free(&out);
    }
    free(rgb);
}

static void the_encoder_quality_derives_from_jpeg_quality(void **state)
{
    uint8_t *rgb = gradient(64, 64);
    struct image_out low, high;

    (void)state;
    assert_int_equal(image_encode_quality(IMAGE_JPEG, 85), 85);
    assert_int_equal(image_encode_quality(IMAGE_WEBP, 85), 89);
    assert_int_equal(image_encode_quality(IMAGE_AVIF, 85), 70);
    assert_int_equal(image_encode_quality(IMAGE_WEBP, 87), 91);
    assert_int_equal(image_encode_quality(IMAGE_AVIF, 1), 1);
    assert_int_equal(image_encode_quality(IMAGE_WEBP, 100), 100);
    assert_int_equal(image_encode_quality(IMAGE_PNG, 85), 100);
    assert_int_equal(image_encode_quality(IMAGE_GIF, 85), 100);
    assert_int_equal(image_encode_rgb(rgb, 64, 64, IMAGE_JPEG, 10, &low), 0);
    assert_int_equal(image_encode_rgb(rgb, 64, 64, IMAGE_JPEG, 95, &high), 0);
    assert_true(low.len < high.len);
    image_out_free(&low);
    image_out_free(&high);
    free(rgb);
}

static void encoding_refuses_other_types_sizes_and_qualities(void **state)
{
    uint8_t rgb[3 * 4] = {0};
    struct image_out out;

    (void)state;
    assert_int_equal(image_encode_rgb(rgb, 2, 2, IMAGE_GIF, 85, &out), -EINVAL);
    assert_null(out.data);
    assert_int_equal(image_encode_rgb(rgb, 2, 2, IMAGE_NONE, 85, &out), -EINVAL);
    assert_int_equal(image_encode_rgb(rgb, 0, 2, IMAGE_PNG, 85, &out), -EINVAL);
    assert_int_equal(image_encode_rgb(rgb, 2, 2, IMAGE_PNG, 0, &out), -EINVAL);
    assert_int_equal(image_encode_rgb(rgb, 2, 2, IMAGE_PNG, 101, &out), -EINVAL);
    assert_null(out.data);
}

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

static void a_thumbnail_fits_as_rgb(void **state)
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

static void a_thumbnail_is_flattened_on_white(void **state)
{
    const double clear[4] = {-1, -1, -1, 0};
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

static void thumbnails_of_bytes_that_are_no_picture_are_refused(void **state)
{
    static const uint8_t junk[] = "\xff\xd8\xff not really";
    uint8_t *rgb = (uint8_t *)1;
    int w, h;
    (void)state;

    assert_int_equal(image_thumbnail_rgb(junk, sizeof(junk), 32, &rgb, &w, &h), -22);
    assert_null(rgb);
}

/* --- masters and variants --------------------------------------------------------------------------------------- */

/*
 * A `width` x `height` RGBA picture as PNG: a ramp whose left half is transparent, so that alpha and flattening
 * show. g_free() it.
 */
static uint8_t *half_clear_png(int width, int height, size_t *len)
{
    VipsImage *xyz = NULL, *rgb = NULL, *x = NULL, *alpha = NULL, *rgba = NULL, *u8 = NULL;
    void *buf = NULL;

    assert_int_equal(vips_xyz(&xyz, width, height, NULL), 0);
    assert_int_equal(vips_bandjoin_const1(xyz, &rgb, 100, NULL), 0);
    assert_int_equal(vips_extract_band(xyz, &x, 0, NULL), 0);
    assert_int_equal(vips_moreeq_const1(x, &alpha, width / 2.0, NULL), 0);
    assert_int_equal(vips_bandjoin2(rgb, alpha, &rgba, NULL), 0);
    assert_int_equal(vips_cast_uchar(rgba, &u8, NULL), 0);
    /* moreeq gives 255 where it holds, so the left half is the clear one. */
    u8->Type = VIPS_INTERPRETATION_sRGB;
    assert_int_equal(vips_pngsave_buffer(u8, &buf, len, NULL), 0);
    g_object_unref(u8);
    g_object_unref(rgba);
    g_object_unref(alpha);
    g_object_unref(x);
    g_object_unref(rgb);
    g_object_unref(xyz);
    return buf;
}

/* An animated GIF of `frames` frames of `width` x `height`, frame i shown for (i + 1) * 20 ms. g_free() it. */
static uint8_t *animated_gif(int width, int height, int frames, size_t *len)
{
    VipsImage *page[16], *strip = NULL, *copy = NULL;
    int delay[16];
    void *buf = NULL;

    assert_true(frames <= 16);
    for (int i = 0; i < frames; i++) {
        const double colour[3] = {i * 15.0, 255 - i * 15.0, 80};
        VipsImage *black = NULL;
        double zero[3] = {0, 0, 0};
        assert_int_equal(vips_black(&black, width, height, "bands", 3, NULL), 0);
        assert_int_equal(vips_linear(black, &page[i], zero, (double *)colour, 3, "uchar", TRUE, NULL), 0);
        g_object_unref(black);
        delay[i] = (i + 1) * 20;
    }
    assert_int_equal(vips_arrayjoin(page, &strip, frames, "across", 1, NULL), 0);
    assert_int_equal(vips_copy(strip, &copy, NULL), 0);
    vips_image_set_int(copy, VIPS_META_PAGE_HEIGHT, height);
    vips_image_set_array_int(copy, "delay", delay, frames);
    vips_image_set_int(copy, "loop", 0);
    assert_int_equal(vips_gifsave_buffer(copy, &buf, len, NULL), 0);
    g_object_unref(copy);
    g_object_unref(strip);
    for (int i = 0; i < frames; i++)
        g_object_unref(page[i]);
    return buf;
}

/* Every frame of `data`, as libvips reads it; unref it. */
static VipsImage *decode_all(const uint8_t *data, size_t len)
{
    const char *name;
    enum image_type t = image_sniff(data, len, &name);
    VipsImage *im = vips_image_new_from_buffer(data, len, t == IMAGE_GIF || t == IMAGE_WEBP ? "n=-1" : "", NULL);

    assert_non_null(im);
    return im;
}

static void a_master_is_a_webp_within_max_size_that_keeps_alpha(void **state)
{
    size_t len;
    uint8_t *png = half_clear_png(600, 300, &len);
    struct image_opts o = {true, 256, 85, 50000000, 2000, 0, 10};
    struct image_out out;
    const char *name;
    VipsImage *im;
    double *v;
    int n;
    (void)state;

    assert_int_equal(image_process(png, len, &o, &out), 0);
    assert_int_equal(out.type, IMAGE_WEBP);
    assert_int_equal(image_sniff(out.data, out.len, &name), IMAGE_WEBP);
    assert_int_equal(out.width, 256);
    assert_int_equal(out.height, 128);
    assert_int_equal(out.frames, 1);
    im = decode_all(out.data, out.len);
    assert_int_equal(vips_image_get_width(im), 256);
    assert_int_equal(vips_image_get_height(im), 128);
    assert_int_equal(vips_image_get_bands(im), 4);
    assert_int_equal(vips_getpoint(im, &v, &n, 10, 64, NULL), 0);
    assert_true(v[3] < 10);
    g_free(v);
    assert_int_equal(vips_getpoint(im, &v, &n, 240, 64, NULL), 0);
    assert_true(v[3] > 245);
    g_free(v);
    g_object_unref(im);
    image_out_free(&out);

    /* Smaller than max_size: the same size, never enlarged. */
    o.max_size = 1024;
    assert_int_equal(image_process(png, len, &o, &out), 0);
    assert_int_equal(out.width, 600);
    assert_int_equal(out.height, 300);
    image_out_free(&out);
    g_free(png);
}

static void a_master_is_turned_upright_by_its_exif_orientation(void **state)
{
    VipsImage *xyz = NULL, *rgb = NULL, *u8 = NULL, *im;
    struct image_opts o = {true, 150, 85, 50000000, 2000, 0, 1};
    struct image_out out;
    void *jpeg = NULL;
    size_t len;
    (void)state;

    assert_int_equal(vips_xyz(&xyz, 300, 200, NULL), 0);
    assert_int_equal(vips_bandjoin_const1(xyz, &rgb, 0, NULL), 0);
    assert_int_equal(vips_cast_uchar(rgb, &u8, NULL), 0);
    /* 6: the camera was turned a quarter clockwise, so the picture is shown 200 wide and 300 high. */
    vips_image_set_int(u8, VIPS_META_ORIENTATION, 6);
    assert_int_equal(vips_jpegsave_buffer(u8, &jpeg, &len, NULL), 0);
    assert_int_equal(image_process(jpeg, len, &o, &out), 0);
    assert_int_equal(out.width, 100);
    assert_int_equal(out.height, 150);
    im = decode_all(out.data, out.len);
    assert_int_equal(vips_image_get_width(im), 100);
    assert_int_equal(vips_image_get_orientation(im), 1);
    g_object_unref(im);
    image_out_free(&out);
    g_free(jpeg);
    g_object_unref(u8);
    g_object_unref(rgb);
    g_object_unref(xyz);
}

static void an_animated_master_keeps_up_to_max_frames_with_their_delays(void **state)
{
    size_t len;
    uint8_t *gif = animated_gif(120, 90, 5, &len);
    struct image_opts o = {true, 60, 85, 50000000, 2000, 0, 3};
    struct image_out out;
    VipsImage *im;
    int *delay, n;
    (void)state;

    assert_int_equal(image_process(gif, len, &o, &out), 0);
    assert_int_equal(out.type, IMAGE_WEBP);
    assert_int_equal(out.frames, 3);
    assert_int_equal(out.width, 60);
    assert_int_equal(out.height, 45);
    im = decode_all(out.data, out.len);
    assert_false(vips_image_get_typeof(im, VIPS_META_EXIF_NAME));
    assert_int_equal(vips_image_get_n_pages(im), 3);
    assert_int_equal(vips_image_get_page_height(im), 45);
    assert_int_equal(vips_image_get_array_int(im, "delay", &delay, &n), 0);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(delay[i], (i + 1) * 20);
    g_object_unref(im);
    image_out_free(&out);

    /* Fewer frames than max_frames: all of them. */
    o.max_frames = 100;
    assert_int_equal(image_process(gif, len, &o, &out), 0);
    assert_int_equal(out.frames, 5);
    image_out_free(&out);
    /* max_frames 0: a still master. */
    o.max_frames = 0;
    assert_int_equal(image_process(gif, len, &o, &out), 0);
    assert_int_equal(out.frames, 1);
    im = decode_all(out.data, out.len);
    assert_int_equal(vips_image_get_n_pages(im), 1);
    g_object_unref(im);
    image_out_free(&out);
    /* Animated masters are smaller than still ones. */
    {
        size_t blen;
        uint8_t *big = animated_gif(600, 300, 2, &blen);
        struct image_opts large = {true, 1024, 85, 50000000, 2000, 0, 10};
        assert_int_equal(image_process(big, blen, &large, &out), 0);
        assert_int_equal(out.frames, 2);
        assert_int_equal(out.width, IMAGE_MASTER_ANIMATED_MAX_SIZE);
        assert_int_equal(out.height, IMAGE_MASTER_ANIMATED_MAX_SIZE / 2);
        image_out_free(&out);
        g_free(big);
    }
    /* Kept as it is, every frame is counted. */
    o.resize = false;
    assert_int_equal(image_process(gif, len, &o, &out), 0);
    assert_int_equal(out.frames, 5);
    assert_int_equal(out.height, 90);
    image_out_free(&out);
    g_free(gif);
}

/* The master of a 600x300 PNG whose left half is clear, at 256 pixels. */
static struct image_out still_master(void)
{
    size_t len;
    uint8_t *png = half_clear_png(600, 300, &len);
    struct image_opts o = {true, 256, 85, 50000000, 2000, 0, 1};
    struct image_out out;

    assert_int_equal(image_process(png, len, &o, &out), 0);
    g_free(png);
    return out;
}

static void variants_decode_as_their_type_at_their_size(void **state)
{
    static const enum image_type types[] = {IMAGE_JPEG, IMAGE_WEBP, IMAGE_AVIF, IMAGE_PNG, IMAGE_GIF};
    struct image_out master = still_master();
    (void)state;

    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        struct image_variant_spec s = {64, false, types[i], true, 85, 2000};
        struct image_out out;
        const char *name;
        VipsImage *im;
        double *v;
        int n;

        assert_int_equal(image_variant(master.data, master.len, &s, &out), 0);
        assert_int_equal(out.type, types[i]);
        assert_int_equal(image_sniff(out.data, out.len, &name), types[i]);
        assert_int_equal(out.width, 64);
        assert_int_equal(out.height, 32);
        assert_int_equal(out.frames, 1);
        im = decode_all(out.data, out.len);
        assert_int_equal(vips_image_get_width(im), 64);
        assert_int_equal(vips_image_get_height(im), 32);
        assert_false(vips_image_get_typeof(im, VIPS_META_EXIF_NAME));
        assert_int_equal(vips_getpoint(im, &v, &n, 4, 16, NULL), 0);
        if (types[i] == IMAGE_JPEG) {
            /* Flattened: the clear half is white. */
            assert_int_equal(vips_image_get_bands(im), 3);
            assert_true(v[0] > 240 && v[1] > 240 && v[2] > 240);
        } else {
            assert_int_equal(vips_image_get_bands(im), 4);
            assert_true(v[3] < 16);
        }
        g_free(v);
        g_object_unref(im);
        image_out_free(&out);
    }
    image_out_free(&master);
}

static void variants_are_never_enlarged_and_may_fit_the_width_only(void **state)
{
    struct image_out master = still_master(), out;
    struct image_variant_spec big = {1024, false, IMAGE_WEBP, false, 85, 2000};
    struct image_variant_spec banner = {100, true, IMAGE_JPEG, false, 85, 2000};
    size_t len;
    uint8_t *tall = half_clear_png(100, 400, &len);
    (void)state;

    assert_int_equal(image_variant(master.data, master.len, &big, &out), 0);
    assert_int_equal(out.width, 256);
    assert_int_equal(out.height, 128);
    image_out_free(&out);
    assert_int_equal(image_variant(master.data, master.len, &banner, &out), 0);
    assert_int_equal(out.width, 100);
    assert_int_equal(out.height, 50);
    image_out_free(&out);
    /* A tall original kept as it is: 50 wide, whatever the height. */
    banner.size = 50;
    assert_int_equal(image_variant(tall, len, &banner, &out), 0);
    assert_int_equal(out.width, 50);
    assert_int_equal(out.height, 200);
    image_out_free(&out);
    g_free(tall);
    image_out_free(&master);
}

static void animated_variants_keep_the_frames_of_the_master(void **state)
{
    size_t len;
    uint8_t *gif = animated_gif(120, 90, 4, &len);
    struct image_opts o = {true, 100, 85, 50000000, 2000, 0, 10};
    struct image_out master, out;
    struct {
        enum image_type type;
        bool animated;
        int frames;
    } cases[] = {{IMAGE_WEBP, true, 4}, {IMAGE_GIF, true, 4},  {IMAGE_WEBP, false, 1},
                 {IMAGE_JPEG, true, 1}, {IMAGE_AVIF, true, 1}, {IMAGE_PNG, true, 1}};
    (void)state;

    assert_int_equal(image_process(gif, len, &o, &master), 0);
    assert_int_equal(master.frames, 4);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct image_variant_spec s = {40, false, cases[i].type, cases[i].animated, 85, 2000};
        VipsImage *im;
        int *delay, n;

        assert_int_equal(image_variant(master.data, master.len, &s, &out), 0);
        assert_int_equal(out.frames, cases[i].frames);
        assert_int_equal(out.width, 40);
        assert_int_equal(out.height, 30);
        im = decode_all(out.data, out.len);
        assert_int_equal(vips_image_get_n_pages(im), cases[i].frames);
        assert_int_equal(vips_image_get_page_height(im), 30);
        if (cases[i].frames > 1) {
            assert_int_equal(vips_image_get_array_int(im, "delay", &delay, &n), 0);
            assert_int_equal(n, 4);
            for (int f = 0; f < 4; f++)
                assert_int_equal(delay[f], (f + 1) * 20);
        }
        g_object_unref(im);
        image_out_free(&out);
    }
    /* The GIF itself, kept as the original, gives its frames too. */
    {
        struct image_variant_spec s = {40, false, IMAGE_GIF, true, 85, 2000};
        assert_int_equal(image_variant(gif, len, &s, &out), 0);
        assert_int_equal(out.frames, 4);
        image_out_free(&out);
    }
    image_out_free(&master);
    g_free(gif);
}

static void variants_refuse_specs_out_of_range_and_masters_that_do_not_decode(void **state)
{
    struct image_out master = still_master(), out;
    struct image_variant_spec bad[] = {
        {0, false, IMAGE_JPEG, false, 85, 0},   {IMAGE_VARIANT_MAX_SIZE + 1, false, IMAGE_JPEG, false, 85, 0},
        {64, false, IMAGE_HEIC, false, 85, 0},  {64, false, IMAGE_NONE, false, 85, 0},
        {64, false, IMAGE_JPEG, false, 0, 0},   {64, false, IMAGE_JPEG, false, 101, 0},
        {64, false, IMAGE_JPEG, false, 85, -1},
    };
    struct image_variant_spec ok = {64, false, IMAGE_JPEG, false, 85, 2000};
    static const uint8_t junk[] = "\xff\xd8\xff\xe0 not a JPEG at all";
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(image_variant(master.data, master.len, &bad[i], &out), -EINVAL);
        assert_null(out.data);
    }
    assert_int_equal(image_variant(junk, sizeof(junk), &ok, &out), -EIO);
    assert_null(out.data);
    assert_true(out.error[0] != '\0');
    assert_int_equal(image_variant((const uint8_t *)"hello", 5, &ok, &out), -EIO);
    /* A big original kept as it is, with no time to decode it. */
    {
        size_t len;
        uint8_t *big = picture("jpeg", 4000, 3000, false, &len);
        struct image_variant_spec quick = {512, false, IMAGE_PNG, false, 85, 1};
        assert_int_equal(image_variant(big, len, &quick, &out), -EIO);
        assert_non_null(strstr(out.error, "not done within 1 ms"));
        quick.timeout_ms = 20000;
        assert_int_equal(image_variant(big, len, &quick, &out), 0);
        image_out_free(&out);
        g_free(big);
    }
    /* Half a master. */
    assert_int_equal(image_variant(master.data, master.len / 2, &ok, &out), -EIO);
    image_out_free(&master);
}

/* A box variant of `master`, as `t`, checked to be `w` x `h` a frame; decoded, unref it. */
static VipsImage *box_variant(const struct image_out *master, struct image_box box, enum image_type t, int w, int h,
                              int frames)
{
    struct image_variant_spec s = {0, false, t, true, 85, 2000, box};
    struct image_out out;
    VipsImage *decoded, *im;

    if (image_variant(master->data, master->len, &s, &out) != 0)
        fail_msg("%s", out.error);
    assert_int_equal(out.type, t);
    assert_int_equal(out.width, w);
    assert_int_equal(out.height, h);
    assert_int_equal(out.frames, frames);
    decoded = decode_all(out.data, out.len);
    /* Decoded now, since the bytes it reads lazily go with `out`. */
    assert_non_null(im = vips_image_copy_memory(decoded));
    g_object_unref(decoded);
    assert_int_equal(vips_image_get_width(im), w);
    assert_int_equal(vips_image_get_page_height(im), h);
    assert_int_equal(vips_image_get_n_pages(im), frames);
    image_out_free(&out);
    return im;
}

/* The pixel at `x`, `y` of `im` is within 24 of `want` (`n` bands of it; a band wanted below 0 may be anything). */
static void assert_pixel(VipsImage *im, int x, int y, const double *want, int n)
{
    double *v;
    int bands;

    assert_int_equal(vips_getpoint(im, &v, &bands, x, y, NULL), 0);
    assert_true(bands >= n);
    for (int i = 0; i < n; i++)
        if (want[i] >= 0 && fabs(v[i] - want[i]) > 24)
            fail_msg("(%d, %d) band %d: %g, not %g", x, y, i, v[i], want[i]);
    g_free(v);
}

/* The master of a 200x200 picture, red on the top half (or left) and blue on the other. */
static struct image_out red_blue_master(bool across)
{
    const double red[3] = {255, 0, 0}, blue[3] = {0, 0, 255};
    VipsImage *black = NULL, *a = NULL, *b = NULL, *both = NULL;
    struct image_opts o = {true, 256, 85, 50000000, 2000, 0, 1};
    struct image_out out;
    double zero[3] = {0, 0, 0};
    void *buf = NULL;
    size_t len;

    assert_int_equal(vips_black(&black, across ? 100 : 200, across ? 200 : 100, "bands", 3, NULL), 0);
    assert_int_equal(vips_linear(black, &a, zero, (double *)red, 3, "uchar", TRUE, NULL), 0);
    assert_int_equal(vips_linear(black, &b, zero, (double *)blue, 3, "uchar", TRUE, NULL), 0);
    assert_int_equal(vips_join(a, b, &both, across ? VIPS_DIRECTION_HORIZONTAL : VIPS_DIRECTION_VERTICAL, NULL), 0);
    both->Type = VIPS_INTERPRETATION_sRGB;
    assert_int_equal(vips_pngsave_buffer(both, &buf, &len, NULL), 0);
    assert_int_equal(image_process(buf, len, &o, &out), 0);
    g_free(buf);
    g_object_unref(both);
    g_object_unref(b);
    g_object_unref(a);
    g_object_unref(black);
    return out;
}

static void box_variants_are_forced_to_their_size_and_may_be_enlarged(void **state)
{
    struct image_out master = still_master();
    VipsImage *im;
    (void)state;

    /* 256x128 made square, and made wider and flatter than the master. */
    im = box_variant(&master, (struct image_box){100, 100, 100, 100, IMAGE_GRAVITY_CENTRE, 100, 100}, IMAGE_WEBP, 100,
                     100, 1);
    g_object_unref(im);
    im = box_variant(&master, (struct image_box){600, 50, 600, 50, IMAGE_GRAVITY_CENTRE, 600, 50}, IMAGE_PNG, 600, 50,
                     1);
    g_object_unref(im);
    image_out_free(&master);
}

static void box_variants_are_cut_at_their_gravity(void **state)
{
    const double red[3] = {255, 0, 0}, blue[3] = {0, 0, 255};
    struct image_out rows = red_blue_master(false), cols = red_blue_master(true);
    VipsImage *im;
    (void)state;

    /* Filled: scaled to 100x100, then cut to 100x40. */
    im = box_variant(&rows, (struct image_box){100, 100, 100, 40, IMAGE_GRAVITY_NORTH, 100, 40}, IMAGE_PNG, 100, 40, 1);
    assert_pixel(im, 50, 0, red, 3);
    assert_pixel(im, 50, 39, red, 3);
    g_object_unref(im);
    im = box_variant(&rows, (struct image_box){100, 100, 100, 40, IMAGE_GRAVITY_SOUTH, 100, 40}, IMAGE_PNG, 100, 40, 1);
    assert_pixel(im, 50, 0, blue, 3);
    assert_pixel(im, 50, 39, blue, 3);
    g_object_unref(im);
    im =
        box_variant(&rows, (struct image_box){100, 100, 100, 40, IMAGE_GRAVITY_CENTRE, 100, 40}, IMAGE_PNG, 100, 40, 1);
    assert_pixel(im, 50, 2, red, 3);
    assert_pixel(im, 50, 37, blue, 3);
    g_object_unref(im);
    im = box_variant(&cols, (struct image_box){100, 100, 40, 100, IMAGE_GRAVITY_WEST, 40, 100}, IMAGE_PNG, 40, 100, 1);
    assert_pixel(im, 0, 50, red, 3);
    assert_pixel(im, 39, 50, red, 3);
    g_object_unref(im);
    im = box_variant(&cols, (struct image_box){100, 100, 40, 100, IMAGE_GRAVITY_EAST, 40, 100}, IMAGE_PNG, 40, 100, 1);
    assert_pixel(im, 0, 50, blue, 3);
    assert_pixel(im, 39, 50, blue, 3);
    g_object_unref(im);
    image_out_free(&cols);
    image_out_free(&rows);
}

static void smart_box_variants_keep_the_interesting_part_of_a_still_picture(void **state)
{
    uint8_t *rgb = malloc(300 * 100 * 3);
    struct image_out master;
    VipsImage *im;
    double *v;
    int n;
    (void)state;

    /* Flat grey, but for a red and green checkerboard on the right, where a centred cut would not reach. */
    assert_non_null(rgb);
    for (int y = 0; y < 100; y++) {
        for (int x = 0; x < 300; x++) {
            uint8_t *px = rgb + ((size_t)y * 300 + x) * 3;
            bool red = (x / 8 + y / 8) % 2 == 0;
            px[0] = x < 220 ? 128 : red ? 255 : 0;
            px[1] = x < 220 ? 128 : red ? 0 : 255;
            px[2] = x < 220 ? 128 : 0;
        }
    }
    assert_int_equal(image_encode_rgb(rgb, 300, 100, IMAGE_PNG, 85, &master), 0);
    free(rgb);
    im = box_variant(&master, (struct image_box){300, 100, 80, 100, IMAGE_GRAVITY_SMART, 80, 100}, IMAGE_PNG, 80, 100,
                     1);
    assert_int_equal(vips_getpoint(im, &v, &n, 60, 50, NULL), 0);
    assert_true(fabs(v[0] - v[1]) > 200);
    g_free(v);
    g_object_unref(im);
    image_out_free(&master);
}

static void box_variants_are_centred_on_a_clear_or_white_canvas(void **state)
{
    const double red[3] = {255, 0, 0}, clear[4] = {-1, -1, -1, 0}, opaque_red[4] = {255, 0, 0, 255};
    const double white[3] = {255, 255, 255};
    size_t len;
    uint8_t *jpeg = solid("jpeg", 100, 100, red, 3, &len);
    struct image_out master = {jpeg, len};
    const struct image_box box = {50, 50, 50, 50, IMAGE_GRAVITY_CENTRE, 80, 60};
    static const enum image_type clear_types[] = {IMAGE_PNG, IMAGE_WEBP};
    VipsImage *im;
    (void)state;

    for (size_t i = 0; i < sizeof(clear_types) / sizeof(clear_types[0]); i++) {
        im = box_variant(&master, box, clear_types[i], 80, 60, 1);
        assert_int_equal(vips_image_get_bands(im), 4);
        assert_pixel(im, 0, 0, clear, 4);
        assert_pixel(im, 79, 59, clear, 4);
        assert_pixel(im, 14, 30, clear, 4);
        assert_pixel(im, 40, 30, opaque_red, 4);
        g_object_unref(im);
    }
    im = box_variant(&master, box, IMAGE_JPEG, 80, 60, 1);
    assert_int_equal(vips_image_get_bands(im), 3);
    assert_pixel(im, 0, 0, white, 3);
    assert_pixel(im, 40, 30, red, 3);
    g_object_unref(im);
    g_free(jpeg);
}

static void animated_box_variants_keep_their_frames_and_delays(void **state)
{
    size_t len;
    uint8_t *gif = animated_gif(120, 90, 4, &len);
    struct image_opts o = {true, 100, 85, 50000000, 2000, 0, 10};
    struct image_out master;
    static const enum image_type types[] = {IMAGE_WEBP, IMAGE_GIF};
    (void)state;

    assert_int_equal(image_process(gif, len, &o, &master), 0);
    assert_int_equal(master.frames, 4);
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        const enum image_gravity gravities[] = {IMAGE_GRAVITY_SMART, IMAGE_GRAVITY_SOUTH};
        for (size_t g = 0; g < 2; g++) {
            VipsImage *im =
                box_variant(&master, (struct image_box){61, 47, 40, 43, gravities[g], 50, 70}, types[i], 50, 70, 4);
            int *delay, n;
            assert_int_equal(vips_image_get_height(im), 4 * 70);
            assert_int_equal(vips_image_get_array_int(im, "delay", &delay, &n), 0);
            assert_int_equal(n, 4);
            for (int f = 0; f < 4; f++)
                assert_int_equal(delay[f], (f + 1) * 20);
            g_object_unref(im);
        }
    }
    image_out_free(&master);
    g_free(gif);
}

static void box_variants_refuse_boxes_out_of_range(void **state)
{
    struct image_out master = still_master(), out;
    const struct image_box bad[] = {
        {0, 10, 10, 10, IMAGE_GRAVITY_CENTRE, 10, 10},
        {10, 10, 10, 10, IMAGE_GRAVITY_CENTRE, 10, IMAGE_VARIANT_MAX_SIZE + 1},
        {IMAGE_VARIANT_MAX_SIZE + 1, 10, 10, 10, IMAGE_GRAVITY_CENTRE, 10, 10},
        {10, 10, 11, 10, IMAGE_GRAVITY_CENTRE, 11, 10}, /* a cut wider than the scaled picture */
        {10, 10, 10, 10, IMAGE_GRAVITY_CENTRE, 9, 10},  /* a canvas narrower than the cut */
        {10, 10, 10, 10, IMAGE_GRAVITY_CENTRE, 10, 9},
        {10, 10, 10, 10, (enum image_gravity)99, 10, 10},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct image_variant_spec s = {0, false, IMAGE_PNG, false, 85, 2000, bad[i]};
        assert_int_equal(image_variant(master.data, master.len, &s, &out), -EINVAL);
        assert_null(out.data);
    }
    image_out_free(&master);
}

/* --- masters in two steps ----------------------------------------------------------------------------------- */

/* The variant of `s` from the master's pixels has the size and type of the one image_variant() makes of `master`. */
static void assert_variant_alike(const struct image_master *m, const struct image_out *master,
                                 const struct image_variant_spec *s)
{
    struct image_out got, want;
    const char *name;

    assert_int_equal(image_variant(master->data, master->len, s, &want), 0);
    if (image_master_variant(m, s, &got) != 0)
        fail_msg("%s", got.error);
    assert_int_equal(got.type, want.type);
    assert_int_equal(got.width, want.width);
    assert_int_equal(got.height, want.height);
    assert_int_equal(got.frames, want.frames);
    assert_int_equal(image_sniff(got.data, got.len, &name), want.type);
    image_out_free(&got);
    image_out_free(&want);
}

static void a_master_in_two_steps_is_the_one_image_process_makes(void **state)
{
    size_t plen, jlen;
    uint8_t *png = half_clear_png(600, 300, &plen), *jpeg = picture("jpeg", 1000, 700, false, &jlen);
    struct {
        const uint8_t *src;
        size_t len;
    } sources[] = {{png, plen}, {jpeg, jlen}};
    struct image_opts o = {true, 256, 85, 50000000, 2000, 0, 1};
    struct image_variant_spec fit = {64, false, IMAGE_JPEG, false, 85, 2000};
    struct image_variant_spec cut = {
        0, false, IMAGE_WEBP, false, 85, 2000, {120, 60, 80, 50, IMAGE_GRAVITY_SMART, 100, 90}};
    (void)state;

    for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++) {
        for (int in_memory = 0; in_memory < 2; in_memory++) {
            struct image_out ref, out;
            struct image_master *m;
            int w, h, frames;

            assert_int_equal(image_process(sources[i].src, sources[i].len, &o, &ref), 0);
            assert_int_equal(image_master_begin(sources[i].src, sources[i].len, &o, in_memory, &m, &out), 0);
            assert_non_null(m);
            image_master_size(m, &w, &h, &frames);
            if (in_memory) {
                assert_variant_alike(m, &ref, &fit);
                assert_variant_alike(m, &ref, &cut);
            } else {
                assert_int_equal(image_master_variant(m, &fit, &out), -ENOTSUP);
                assert_null(out.data);
            }
            assert_int_equal(image_master_finish(m, &o, &out), 0);
            assert_int_equal(out.type, IMAGE_WEBP);
            assert_int_equal(out.len, ref.len);
            assert_memory_equal(out.data, ref.data, ref.len);
            assert_int_equal(out.width, ref.width);
            assert_int_equal(out.height, ref.height);
            assert_int_equal(out.frames, ref.frames);
            assert_int_equal(w, out.width);
            assert_int_equal(h, out.height);
            assert_int_equal(frames, out.frames);
            image_out_free(&out);
            image_out_free(&ref);
        }
    }
    g_free(jpeg);
    g_free(png);
}

static void an_animated_master_in_two_steps_holds_no_pixels(void **state)
{
    size_t len;
    uint8_t *gif = animated_gif(120, 90, 5, &len);
    struct image_opts o = {true, 60, 85, 50000000, 2000, 0, 3};
    struct image_variant_spec s = {40, false, IMAGE_WEBP, true, 85, 2000};
    struct image_out ref, out;
    struct image_master *m;
    int w, h, frames;
    (void)state;

    assert_int_equal(image_process(gif, len, &o, &ref), 0);
    assert_int_equal(image_master_begin(gif, len, &o, true, &m, &out), 0);
    image_master_size(m, &w, &h, &frames);
    assert_int_equal(w, 60);
    assert_int_equal(h, 45);
    assert_int_equal(frames, 3);
    assert_int_equal(image_master_variant(m, &s, &out), -ENOTSUP);
    assert_null(out.data);
    assert_int_equal(image_master_finish(m, &o, &out), 0);
    assert_int_equal(out.frames, 3);
    assert_int_equal(out.len, ref.len);
    assert_memory_equal(out.data, ref.data, ref.len);
    image_out_free(&out);
    image_out_free(&ref);
    g_free(gif);
}

static void a_refused_master_is_not_begun(void **state)
{
    size_t len;
    uint8_t *jpeg = picture("jpeg", 64, 64, false, &len);
    struct image_opts o = {true, 200, 85, 50000000, 2000, 0}, keep = {false, 200, 85, 50000000, 2000, 0};
    struct image_variant_spec bad = {IMAGE_VARIANT_MAX_SIZE + 1, false, IMAGE_JPEG, false, 85, 0};
    struct image_out ref, out;
    /* Anything but NULL, so that begin is seen to clear it. */
    struct image_master *m = (struct image_master *)&m;
    (void)state;

    assert_int_equal(image_process(huge_png, sizeof(huge_png), &o, &ref), -EINVAL);
    assert_int_equal(image_master_begin(huge_png, sizeof(huge_png), &o, true, &m, &out), -EINVAL);
    assert_null(m);
    assert_int_equal(out.refusal, IMAGE_REFUSED_PIXELS);
    assert_string_equal(out.error, ref.error);
    assert_null(out.data);
    /* Originals are kept by image_process() alone. */
    m = (struct image_master *)&m;
    assert_int_equal(image_master_begin(jpeg, len, &keep, true, &m, &out), -EINVAL);
    assert_null(m);
    /* A spec out of range is refused before the pixels are looked for. */
    assert_int_equal(image_master_begin(jpeg, len, &o, true, &m, &out), 0);
    assert_int_equal(image_master_variant(m, &bad, &out), -EINVAL);
    image_master_free(m);
    image_master_free(NULL);
    g_free(jpeg);
}

static void a_master_freed_unfinished_gives_its_memory_back(void **state)
{
    size_t len;
    /* As in pictures_wait_for_memory_rather_than_being_refused(): some 9 MB of coefficients, and room for one. */
    uint8_t *src = picture("jpeg", 1500, 1000, true, &len);
    struct image_opts o = {true, 200, 85, 50000000, 20000, 12 << 20, 1};
    struct image_out out;
    struct image_master *m;
    (void)state;

    /* Each begin would wait for ever for the memory of a master that kept it. */
    for (int in_memory = 0; in_memory < 2; in_memory++) {
        assert_int_equal(image_master_begin(src, len, &o, in_memory, &m, &out), 0);
        image_master_free(m);
    }
    assert_int_equal(image_master_begin(src, len, &o, true, &m, &out), 0);
    assert_int_equal(image_master_finish(m, &o, &out), 0);
    image_out_free(&out);
    assert_int_equal(image_process(src, len, &o, &out), 0);
    image_out_free(&out);

    /* Pixels held for their encoding hold no decoder's memory: another picture decodes meanwhile. */
    {
        struct image_master *held, *next;
        assert_int_equal(image_master_begin(src, len, &o, true, &held, &out), 0);
        assert_int_equal(image_master_begin(src, len, &o, true, &next, &out), 0);
        assert_int_equal(image_master_finish(next, &o, &out), 0);
        image_out_free(&out);
        assert_int_equal(image_master_finish(held, &o, &out), 0);
        image_out_free(&out);
    }
    g_free(src);
}

static void each_step_of_a_master_has_its_own_deadline(void **state)
{
    size_t len;
    uint8_t *src = picture("jpeg", 4000, 3000, false, &len);
    struct image_opts quick = {true, 4096, 85, 50000000, 1, 0, 1}, enough = {true, 4096, 85, 50000000, 20000, 0, 1};
    struct image_out out;
    struct image_master *m = NULL;
    (void)state;

    /* Decoding 12 megapixels into memory takes tens of milliseconds. */
    assert_int_equal(image_master_begin(src, len, &quick, true, &m, &out), -EINVAL);
    assert_null(m);
    assert_int_equal(out.refusal, IMAGE_REFUSED_TIMEOUT);
    assert_non_null(strstr(out.error, "image_timeout_ms (1 ms)"));
    /* Encoding them takes longer still, from the pipeline or from memory, whatever time the first step had. */
    for (int in_memory = 0; in_memory < 2; in_memory++) {
        assert_int_equal(image_master_begin(src, len, &enough, in_memory, &m, &out), 0);
        assert_int_equal(image_master_finish(m, &quick, &out), -EINVAL);
        assert_int_equal(out.refusal, IMAGE_REFUSED_TIMEOUT);
        assert_null(out.data);
    }
    g_free(src);
}

static int setup(void **state)
{
    (void)state;
    if (setenv("VIPSHOME", "/nonexistent/pfpcache-test", 1) != 0)
        return -1;
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
        cmocka_unit_test(avif_and_heif_load_and_save_wherever_libvips_looks_for_modules),
        cmocka_unit_test(each_refusal_is_named_and_counted),
        cmocka_unit_test(a_picture_past_its_deadline_is_stopped),
        cmocka_unit_test(pictures_wait_for_memory_rather_than_being_refused),
        cmocka_unit_test(originals_are_kept_up_to_their_end),
        cmocka_unit_test(rgb_pixels_are_encoded_in_each_format_at_their_size),
        cmocka_unit_test(the_encoder_quality_derives_from_jpeg_quality),
        cmocka_unit_test(encoding_refuses_other_types_sizes_and_qualities),
        cmocka_unit_test(a_thumbnail_fits_as_rgb),
        cmocka_unit_test(a_thumbnail_is_flattened_on_white),
        cmocka_unit_test(thumbnails_of_bytes_that_are_no_picture_are_refused),
        cmocka_unit_test(a_master_is_a_webp_within_max_size_that_keeps_alpha),
        cmocka_unit_test(a_master_is_turned_upright_by_its_exif_orientation),
        cmocka_unit_test(an_animated_master_keeps_up_to_max_frames_with_their_delays),
        cmocka_unit_test(variants_decode_as_their_type_at_their_size),
        cmocka_unit_test(variants_are_never_enlarged_and_may_fit_the_width_only),
        cmocka_unit_test(animated_variants_keep_the_frames_of_the_master),
        cmocka_unit_test(variants_refuse_specs_out_of_range_and_masters_that_do_not_decode),
        cmocka_unit_test(box_variants_are_forced_to_their_size_and_may_be_enlarged),
        cmocka_unit_test(box_variants_are_cut_at_their_gravity),
        cmocka_unit_test(smart_box_variants_keep_the_interesting_part_of_a_still_picture),
        cmocka_unit_test(box_variants_are_centred_on_a_clear_or_white_canvas),
        cmocka_unit_test(animated_box_variants_keep_their_frames_and_delays),
        cmocka_unit_test(box_variants_refuse_boxes_out_of_range),
        cmocka_unit_test(a_master_in_two_steps_is_the_one_image_process_makes),
        cmocka_unit_test(an_animated_master_in_two_steps_holds_no_pixels),
        cmocka_unit_test(a_refused_master_is_not_begun),
        cmocka_unit_test(a_master_freed_unfinished_gives_its_memory_back),
        cmocka_unit_test(each_step_of_a_master_has_its_own_deadline),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
