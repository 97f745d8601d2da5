/* test_imgscan.c -- picture files walked before decoding: JPEG scans and end, PNG image data, ISO-BMFF sizes, ends. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "imgscan.h"

/* A growable byte string for building files. */
struct bytes {
    uint8_t data[4096];
    size_t len;
};

static void put(struct bytes *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    assert_true(b->len + n <= sizeof(b->data));
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_be32(struct bytes *b, uint32_t v)
{
    const uint8_t be[4] = {v >> 24, v >> 16, v >> 8, v};
    put(b, be, 4);
}

/* A marker segment: 0xff, the marker, a length that counts itself, and `n` bytes of body. */
static void segment(struct bytes *b, uint8_t marker, const char *body, size_t n)
{
    const uint8_t head[4] = {0xff, marker, (uint8_t)((n + 2) >> 8), (uint8_t)(n + 2)};
    put(b, head, 4);
    put(b, body, n);
}

static void jpeg_scans_are_counted_through_entropy_data_and_stray_bytes(void **state)
{
    struct bytes b = {.len = 0};
    struct imgscan_jpeg j;
    (void)state;

    put(&b, "\xff\xd8", 2);
    segment(&b, 0xe0, "JFIF\0", 5);
    /* libjpeg skips stray bytes before a marker (with a warning): they must not hide what follows them. */
    put(&b, "stray", 5);
    segment(&b, 0xc2, "\x08\0\x10\0\x10\x01\x01\x11\0", 9);
    segment(&b, 0xda, "\x01\x01\0\0\0\0", 6);
    put(&b, "\x12\xff\x00\x34\xff\xd3\x56", 7); /* entropy data: a stuffed 0xff, a restart marker */
    segment(&b, 0xda, "\x01\x01\0\x01\x3f\0", 6);
    put(&b, "\x78\x9a", 2);
    put(&b, "\xff\xff", 2); /* fill */
    segment(&b, 0xda, "\x01\x01\0\x01\x3f\0", 6);
    put(&b, "\xff\xd9", 2);
    put(&b, "PK\x03\x04 after the end", 18);
    imgscan_jpeg(b.data, b.len, &j);
    assert_int_equal(j.scans, 3);
    assert_int_equal(j.end, b.len - 18);

    /* Without an end marker, or with a segment running past the bytes, there is no end. */
    imgscan_jpeg(b.data, b.len - 20, &j);
    assert_int_equal(j.scans, 3);
    assert_int_equal(j.end, 0);
    b.len = 2;
    segment(&b, 0xda, "\x01\x01\0\0\0\0", 6);
    b.data[4] = 0x7f;
    imgscan_jpeg(b.data, b.len, &j);
    assert_int_equal(j.scans, 0);
    assert_int_equal(j.end, 0);
    imgscan_jpeg((const uint8_t *)"\x89PNG", 4, &j);
    assert_int_equal(j.scans, 0);
}

static void chunk(struct bytes *b, const char *type, const uint8_t *data, uint32_t n)
{
    put_be32(b, n);
    put(b, type, 4);
    put(b, data, n);
    put_be32(b, (uint32_t)crc32(crc32(0, (const Bytef *)type, 4), data, n));
}

/* A PNG of the given header whose IDAT is `zlen` bytes of zlib stream. */
static void png(struct bytes *b, uint32_t w, uint32_t h, uint8_t depth, uint8_t colour, uint8_t interlace,
                const uint8_t *z, uint32_t zlen)
{
    uint8_t ihdr[13] = {w >> 24, w >> 16, w >> 8, w, h >> 24, h >> 16, h >> 8, h, depth, colour, 0, 0, interlace};

    b->len = 0;
    put(b, "\x89PNG\r\n\x1a\n", 8);
    chunk(b, "IHDR", ihdr, sizeof(ihdr));
    chunk(b, "IDAT", z, zlen);
    chunk(b, "IEND", NULL, 0);
}

static void png_image_data_length_follows_its_header(void **state)
{
    struct bytes b;
    struct imgscan_png p;
    (void)state;

    png(&b, 10, 3, 8, 2, 0, NULL, 0); /* RGB: 3 rows of a filter byte and 30 samples */
    imgscan_png(b.data, b.len, &p);
    assert_int_equal(p.width, 10);
    assert_int_equal(p.data_len, 3 * 31);
    assert_int_equal(p.end, b.len);
    png(&b, 9, 1, 1, 0, 0, NULL, 0); /* 1-bit grey: 9 pixels in 2 bytes */
    imgscan_png(b.data, b.len, &p);
    assert_int_equal(p.data_len, 3);
    png(&b, 5, 5, 16, 6, 1, NULL, 0); /* Adam7 on 5x5 RGBA16: passes of 1x1, 1x1, 2x1, 1x2, 3x1, 2x3 and 5x2 */
    imgscan_png(b.data, b.len, &p);
    assert_int_equal(p.data_len, (1 + 8) + (1 + 8) + (1 + 16) + 2 * (1 + 8) + (1 + 24) + 3 * (1 + 16) + 2 * (1 + 40));
    png(&b, 4, 4, 16, 3, 0, NULL, 0); /* a 16-bit palette does not exist */
    imgscan_png(b.data, b.len, &p);
    assert_int_equal(p.data_len, 0);
    png(&b, 4, 4, 4, 2, 0, NULL, 0); /* nor 4-bit RGB */
    imgscan_png(b.data, b.len, &p);
    assert_int_equal(p.data_len, 0);
    b.len -= 12; /* no IEND */
    imgscan_png(b.data, b.len, &p);
    assert_int_equal(p.end, 0);
}

static void png_data_past_the_last_row_is_found(void **state)
{
    uint8_t rows[4 * 5 + 1] = {0}, z[256];
    uLongf zlen = sizeof(z);
    struct bytes b;
    struct imgscan_png p;
    (void)state;

    /* 4 rows of a 4-pixel grey picture, 20 bytes: exactly, then one row more. */
    assert_int_equal(compress2(z, &zlen, rows, 20, 9), Z_OK);
    png(&b, 4, 4, 8, 0, 0, z, (uint32_t)zlen);
    imgscan_png(b.data, b.len, &p);
    assert_int_equal(p.data_len, 20);
    assert_false(imgscan_png_overlong(b.data, b.len, p.data_len));
    zlen = sizeof(z);
    assert_int_equal(compress2(z, &zlen, rows, 21, 9), Z_OK);
    png(&b, 4, 4, 8, 0, 0, z, (uint32_t)zlen);
    assert_true(imgscan_png_overlong(b.data, b.len, p.data_len));
    /* A broken stream is the decoder's to refuse. */
    memset(z + 2, 0xff, zlen - 2);
    png(&b, 4, 4, 8, 0, 0, z, (uint32_t)zlen);
    assert_false(imgscan_png_overlong(b.data, b.len, p.data_len));
}

/* A box: 32-bit size, type, then `n` bytes. */
static void box(struct bytes *b, const char *type, const void *body, size_t n)
{
    put_be32(b, (uint32_t)(8 + n));
    put(b, type, 4);
    put(b, body, n);
}

static void ispe(struct bytes *b, uint32_t w, uint32_t h)
{
    struct bytes body = {.len = 0};
    put_be32(&body, 0); /* version and flags */
    put_be32(&body, w);
    put_be32(&body, h);
    box(b, "ispe", body.data, body.len);
}

static void bmff_sizes_come_from_the_largest_ispe_and_the_end_from_whole_boxes(void **state)
{
    struct bytes ipco = {.len = 0}, iprp = {.len = 0}, meta = {.len = 0}, file = {.len = 0};
    struct imgscan_bmff m;
    size_t whole;
    (void)state;

    ispe(&ipco, 64, 64);
    ispe(&ipco, 100000, 100000);
    ispe(&ipco, 300, 200);
    box(&iprp, "ipco", ipco.data, ipco.len);
    put_be32(&meta, 0); /* meta is a full box */
    box(&meta, "iprp", iprp.data, iprp.len);
    box(&file, "ftyp", "avif\0\0\0\0avifmif1", 16);
    box(&file, "meta", meta.data, meta.len);
    /* A box with a 64-bit size, then one that runs to the end of the file. */
    put(&file, "\0\0\0\x01mdat\0\0\0\0\0\0\0\x14xxxx", 20);
    whole = file.len;
    put(&file, "PK\x03\x04 not a box", 14);
    imgscan_bmff(file.data, file.len, &m);
    assert_int_equal(m.width, 100000);
    assert_int_equal(m.height, 100000);
    assert_int_equal(m.end, whole);
    file.len = whole;
    put(&file, "\0\0\0\0free", 8);
    imgscan_bmff(file.data, file.len, &m);
    assert_int_equal(m.end, file.len);
    imgscan_bmff((const uint8_t *)"\0\0\0\x02", 4, &m);
    assert_int_equal(m.end, 0);
}

static void gif_and_webp_ends(void **state)
{
    struct bytes b = {.len = 0};
    (void)state;

    put(&b, "GIF89a\x01\0\x01\0\x80\0\0", 13); /* a 2-entry global colour table follows */
    put(&b, "\0\0\0\xff\xff\xff", 6);
    put(&b, "\x21\xf9\x04\0\0\0\0\0", 8);      /* graphic control extension */
    put(&b, "\x2c\0\0\0\0\x01\0\x01\0\0", 10); /* image descriptor, no local table */
    put(&b, "\x02\x02\x44\x01\0", 5);          /* LZW code size, one sub-block, terminator */
    put(&b, "\x3b", 1);                        /* trailer */
    put(&b, "PK", 2);
    assert_int_equal(imgscan_gif_end(b.data, b.len), b.len - 2);
    assert_int_equal(imgscan_gif_end(b.data, b.len - 3), 0);

    b.len = 0;
    put(&b, "RIFF\x0c\0\0\0WEBPVP8 ", 16);
    put(&b, "PK\x03\x04", 4);
    assert_int_equal(imgscan_webp_end(b.data, b.len), 20);
    assert_int_equal(imgscan_webp_end(b.data, 19), 0);
    b.data[4] = 0x04;
    assert_int_equal(imgscan_webp_end(b.data, b.len), 12);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(jpeg_scans_are_counted_through_entropy_data_and_stray_bytes),
        cmocka_unit_test(png_image_data_length_follows_its_header),
        cmocka_unit_test(png_data_past_the_last_row_is_found),
        cmocka_unit_test(bmff_sizes_come_from_the_largest_ispe_and_the_end_from_whole_boxes),
        cmocka_unit_test(gif_and_webp_ends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
