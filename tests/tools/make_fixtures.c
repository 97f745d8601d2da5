/* make_fixtures.c -- writes the images the end-to-end tests serve (N distinct noisy ones, and hostile ones), and
 * reports what libvips sees in one. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>
#include <zlib.h>

/* Above this many pixels --inspect reads only the header: decoding a decompression bomb such as huge.png
 * would make libvips spill gigabytes to a temporary file before failing. */
#define HEADER_ONLY_PIXELS 100e6

/* Images built by the helpers below belong to `scope` and are freed when it is. Every function returns 0 or -1
 * with a message in the libvips error buffer. */

static VipsImage **local(VipsObject *scope, int n)
{
    return (VipsImage **)vips_object_local_array(scope, n);
}

static int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    int rc = 0;

    if (!f) {
        vips_error_system(errno, "make_fixtures", "cannot create %s", path);
        return -1;
    }
    if (fwrite(data, 1, len, f) != len)
        rc = -1;
    if (fclose(f) != 0)
        rc = -1;
    if (rc)
        vips_error_system(errno, "make_fixtures", "cannot write %s", path);
    return rc;
}

/* A smooth sRGB ramp: red follows x, green follows y, blue falls along the diagonal, so every region of the
 * image differs from the others and a resize that crops or flips would show. */
static int gradient(VipsObject *scope, int width, int height, VipsImage **out)
{
    VipsImage **t = local(scope, 7);
    const double a[3] = {255.0 / (width - 1), 255.0 / (height - 1), -255.0 / (width + height - 2)};
    const double b[3] = {0, 0, 255};

    if (vips_xyz(&t[0], width, height, NULL) || vips_extract_band(t[0], &t[1], 0, NULL) ||
        vips_extract_band(t[0], &t[2], 1, NULL) || vips_add(t[1], t[2], &t[3], NULL))
        return -1;
    if (vips_bandjoin((VipsImage *[]){t[1], t[2], t[3]}, &t[4], 3, NULL) || vips_linear(t[4], &t[5], a, b, 3, NULL) ||
        vips_cast_uchar(t[5], &t[6], NULL))
        return -1;
    return vips_copy(t[6], out, "interpretation", VIPS_INTERPRETATION_sRGB, NULL);
}

/* One colour everywhere; `colour` has `bands` (at most 4) entries from 0 to 255. */
static int solid(VipsObject *scope, int width, int height, int bands, const double *colour, VipsInterpretation interp,
                 VipsImage **out)
{
    VipsImage **t = local(scope, 3);
    const double ones[4] = {1, 1, 1, 1};

    if (vips_black(&t[0], width, height, "bands", bands, NULL) || vips_linear(t[0], &t[1], ones, colour, bands, NULL) ||
        vips_cast_uchar(t[1], &t[2], NULL))
        return -1;
    return vips_copy(t[2], out, "interpretation", interp, NULL);
}

/* One band: 0 in the left half, 255 in the right half. */
static int right_half(VipsObject *scope, int width, int height, VipsImage **out)
{
    VipsImage **t = local(scope, 2);

    if (vips_xyz(&t[0], width, height, NULL) || vips_extract_band(t[0], &t[1], 0, NULL))
        return -1;
    return vips_moreeq_const1(t[1], out, width / 2, NULL);
}

static int make_big(VipsObject *scope, const char *path)
{
    VipsImage **t = local(scope, 1);

    return gradient(scope, 3000, 2000, &t[0]) || vips_jpegsave(t[0], path, "Q", 90, NULL);
}

static int make_small(VipsObject *scope, const char *path)
{
    VipsImage **t = local(scope, 1);

    return gradient(scope, 64, 64, &t[0]) || vips_jpegsave(t[0], path, "Q", 90, NULL);
}

/* Transparent black on the left, opaque blue on the right: flattening onto the wrong background, or dropping
 * alpha, changes the left half. */
static int make_alpha(VipsObject *scope, const char *path)
{
    VipsImage **t = local(scope, 4);

    if (right_half(scope, 400, 400, &t[0]) || vips_black(&t[1], 400, 400, NULL) ||
        vips_bandjoin((VipsImage *[]){t[1], t[1], t[0], t[0]}, &t[2], 4, NULL) ||
        vips_copy(t[2], &t[3], "interpretation", VIPS_INTERPRETATION_sRGB, NULL))
        return -1;
    return vips_pngsave(t[3], path, NULL);
}

/* libvips inverts CMYK on the way out and back in, as Adobe-style JPEGs require, so the ink values are given
 * as they are meant (no ink = 0) and the file reads back as C=0 M=255 Y=255 K=0, which is red. */
static int make_cmyk(VipsObject *scope, const char *path)
{
    VipsImage **t = local(scope, 1);
    const double red[4] = {0, 255, 255, 0};

    return solid(scope, 300, 300, 4, red, VIPS_INTERPRETATION_CMYK, &t[0]) || vips_jpegsave(t[0], path, NULL);
}

/* Landscape pixels with EXIF orientation 6 ("rotate 90 clockwise to view"), so an upright copy is 200x400 with
 * black on top. jpegsave writes the "orientation" metadata into the EXIF block it builds. */
static int make_rotated(VipsObject *scope, const char *path)
{
    VipsImage **t = local(scope, 3);

    if (right_half(scope, 400, 200, &t[0]) || vips_bandjoin((VipsImage *[]){t[0], t[0], t[0]}, &t[1], 3, NULL) ||
        vips_copy(t[1], &t[2], "interpretation", VIPS_INTERPRETATION_sRGB, NULL))
        return -1;
    vips_image_set_int(t[2], VIPS_META_ORIENTATION, 6);
    return vips_jpegsave(t[2], path, "Q", 90, NULL);
}

/* Three 120x120 frames (red, green, blue) stacked vertically, which is how libvips represents pages. */
static int make_anim(VipsObject *scope, const char *path)
{
    VipsImage **t = local(scope, 5);
    const double colours[3][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}};
    int delays[3] = {100, 100, 100};

    for (int i = 0; i < 3; i++)
        if (solid(scope, 120, 120, 3, colours[i], VIPS_INTERPRETATION_sRGB, &t[i]))
            return -1;
    if (vips_arrayjoin(t, &t[3], 3, "across", 1, NULL) || vips_copy(t[3], &t[4], NULL))
        return -1;
    vips_image_set_int(t[4], VIPS_META_PAGE_HEIGHT, 120);
    vips_image_set_int(t[4], VIPS_META_N_PAGES, 3);
    vips_image_set_array_int(t[4], "delay", delays, 3);
    vips_image_set_int(t[4], "loop", 0);
    return vips_gifsave(t[4], path, NULL);
}

static int make_webp(VipsObject *scope, const char *path)
{
    VipsImage **t = local(scope, 1);

    return gradient(scope, 300, 300, &t[0]) || vips_webpsave(t[0], path, NULL);
}

static int make_avif(VipsObject *scope, const char *path)
{
    VipsImage **t = local(scope, 1);

    return gradient(scope, 256, 256, &t[0]) ||
           vips_heifsave(t[0], path, "compression", VIPS_FOREIGN_HEIF_COMPRESSION_AV1, NULL);
}

static int make_svg(VipsObject *scope, const char *path)
{
    static const char svg[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                              "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"100\" height=\"100\" "
                              "viewBox=\"0 0 100 100\">\n"
                              "  <rect width=\"100\" height=\"100\" fill=\"#ffcc00\"/>\n"
                              "  <circle cx=\"50\" cy=\"50\" r=\"30\" fill=\"#3366ff\"/>\n"
                              "</svg>\n";

    (void)scope;
    return write_file(path, svg, sizeof(svg) - 1);
}

static void append_u32(GByteArray *b, uint32_t v)
{
    const uint8_t be[4] = {v >> 24, v >> 16, v >> 8, v};

    g_byte_array_append(b, be, 4);
}

static void append_u16le(GByteArray *b, unsigned v)
{
    const uint8_t le[2] = {v & 0xff, (v >> 8) & 0xff};

    g_byte_array_append(b, le, 2);
}

static void append_u32le(GByteArray *b, uint32_t v)
{
    append_u16le(b, v & 0xffff);
    append_u16le(b, v >> 16);
}

/* Appends a PNG chunk; its CRC (ISO 3309, zlib's crc32) covers the type and the data. */
static void append_chunk(GByteArray *b, const char *type, const uint8_t *data, uint32_t len)
{
    append_u32(b, len);
    g_byte_array_append(b, (const uint8_t *)type, 4);
    if (len)
        g_byte_array_append(b, data, len);
    append_u32(b, (uint32_t)crc32(crc32(0, (const Bytef *)type, 4), data, len));
}

static const uint8_t PNG_SIGNATURE[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

/* A PNG of `width` x `height` pixels of colour type `colour` (0 grey, 2 RGB) and 8-bit samples, whose zlib stream
 * (`zlen` bytes at `z`) is cut into IDAT chunks of at most 1 MiB. */
static int write_png(const char *path, uint32_t width, uint32_t height, int colour, const uint8_t *z, size_t zlen)
{
    GByteArray *b = g_byte_array_new();
    uint8_t ihdr[13] = {0};
    int rc;

    for (int i = 0; i < 4; i++) {
        ihdr[i] = (uint8_t)(width >> (24 - 8 * i));
        ihdr[4 + i] = (uint8_t)(height >> (24 - 8 * i));
    }
    ihdr[8] = 8; /* bit depth; compression, filter method and interlace stay 0 */
    ihdr[9] = (uint8_t)colour;
    g_byte_array_append(b, PNG_SIGNATURE, sizeof(PNG_SIGNATURE));
    append_chunk(b, "IHDR", ihdr, sizeof(ihdr));
    for (size_t off = 0; off < zlen; off += 1 << 20)
        append_chunk(b, "IDAT", z + off, (uint32_t)MIN(zlen - off, (size_t)1 << 20));
    append_chunk(b, "IEND", NULL, 0);
    rc = write_file(path, b->data, b->len);
    g_byte_array_unref(b);
    return rc;
}

/* A decompression bomb: a valid header claiming 50000x50000 RGB (7.5 GB decoded) over a few bytes of image
 * data: one stored deflate block. */
static int make_huge(VipsObject *scope, const char *path)
{
    static const uint8_t idat[] = {
        0x78, 0x01,             /* zlib header: deflate, 32 KiB window, no dictionary; 0x7801 % 31 == 0 */
        0x01,                   /* final block, stored */
        0x04, 0x00, 0xfb, 0xff, /* LEN = 4 and its one's complement, little-endian */
        0x00, 0x00, 0x00, 0x00, /* filter byte and the first three samples of row 0 */
        0x00, 0x04, 0x00, 0x01, /* Adler-32 of four zero bytes: b = 4, a = 1 */
    };

    (void)scope;
    return write_png(path, 50000, 50000, 2, idat, sizeof(idat));
}

/* A JPEG cut off in the middle of its entropy-coded data, as an interrupted download leaves it. */
static int make_truncated(VipsObject *scope, const char *path)
{
    VipsImage **t = local(scope, 1);
    void *buf = NULL;
    size_t len = 0;
    int rc;

    if (gradient(scope, 600, 400, &t[0]) || vips_jpegsave_buffer(t[0], &buf, &len, "Q", 90, NULL))
        return -1;
    rc = write_file(path, buf, len * 6 / 10);
    g_free(buf);
    return rc;
}

/* Bytes that are no image at all, the same on every run (xorshift32 with a fixed seed). */
static int make_random(VipsObject *scope, const char *path)
{
    uint8_t bytes[20000];
    uint32_t x = 0x2545f491u;

    (void)scope;
    for (size_t i = 0; i < sizeof(bytes); i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bytes[i] = x >> 24;
    }
    return write_file(path, bytes, sizeof(bytes));
}

/* --- hostile pictures: cheap to send, costly to decode --------------------------------------------------------- */

/*
 * libjpeg's table of the states of JPEG's arithmetic coder (ITU T.81 table D.2), each packed as
 * Qe << 16 | next state after the more probable symbol << 8 | switch of that symbol << 7 | next state after
 * the less probable one. Read from the library, so that the coder below and libjpeg's decoder agree.
 */
extern const long jpeg_aritab[];

/*
 * The encoding side of JPEG's QM coder (T.81 annex D), with C and A laid out as in its figures. The last byte
 * out is held back, with the 0xff bytes that follow it, until no carry can reach it.
 */
struct qm {
    GByteArray *out;
    long c, a;
    int ct;
    int held;   /* the byte held back; -1 before the first */
    size_t ffs; /* 0xff bytes after it, held back too */
};

/* An 0xff inside entropy-coded data is followed by a stuffed 0, so that it does not read as a marker. */
static void qm_put(struct qm *q, int byte)
{
    const uint8_t b[2] = {(uint8_t)byte, 0};

    g_byte_array_append(q->out, b, byte == 0xff ? 2 : 1);
}

static void qm_start(struct qm *q, GByteArray *out)
{
    *q = (struct qm){.out = out, .c = 0, .a = 0x10000, .ct = 11, .held = -1};
}

/* Moves the top byte of C out (figure D.7). */
static void qm_byte_out(struct qm *q)
{
    long t = q->c >> 19;

    if (t > 0xff) {
        /* A carry: it raises the held byte, and the 0xff bytes after it roll over to 0. */
        if (q->held >= 0)
            qm_put(q, q->held + 1);
        for (; q->ffs > 0; q->ffs--)
            qm_put(q, 0);
        q->held = (int)(t & 0xff);
    } else if (t == 0xff) {
        q->ffs++;
    } else {
        if (q->held >= 0)
            qm_put(q, q->held);
        for (; q->ffs > 0; q->ffs--)
            qm_put(q, 0xff);
        q->held = (int)t;
    }
    q->c &= 0x7ffff;
}

static void qm_renormalize(struct qm *q)
{
    do {
        q->a <<= 1;
        q->c <<= 1;
        if (--q->ct == 0) {
            qm_byte_out(q);
            q->ct = 8;
        }
    } while (q->a < 0x8000);
}

/* Codes `bit` in the context whose state and more probable symbol are `*st` (sections D.1.4 and D.1.5). */
static void qm_code(struct qm *q, uint8_t *st, int bit)
{
    long e = jpeg_aritab[*st & 0x7f], qe = e >> 16;

    q->a -= qe;
    if (bit != *st >> 7) {
        /* The less probable symbol takes the upper interval, unless that is the smaller one. */
        if (q->a >= qe) {
            q->c += q->a;
            q->a = qe;
        }
        *st = (uint8_t)((*st & 0x80) ^ (e & 0xff));
    } else {
        if (q->a >= 0x8000)
            return;
        if (q->a < qe) {
            q->c += q->a;
            q->a = qe;
        }
        *st = (uint8_t)((*st & 0x80) ^ ((e >> 8) & 0xff));
    }
    qm_renormalize(q);
}

/* Codes `bit` `n` times. Runs of the more probable symbol that leave A above half its range move no byte and no
 * state, so they are taken in one subtraction: a scan of 781,456 blocks costs a few thousand steps. */
static void qm_run(struct qm *q, uint8_t *st, int bit, long n)
{
    while (n > 0) {
        long qe = jpeg_aritab[*st & 0x7f] >> 16, quiet = bit == *st >> 7 ? (q->a - 0x8000) / qe : 0;

        if (quiet > 0) {
            quiet = MIN(quiet, n);
            q->a -= quiet * qe;
            n -= quiet;
        } else {
            qm_code(q, st, bit);
            n--;
        }
    }
}

/* Ends a scan's data (section D.1.8): the value in the interval with the most trailing zero bits, then C out. */
static void qm_flush(struct qm *q)
{
    long t = (q->c + q->a - 1) & ~0xffffL;

    q->c = t < q->c ? t + 0x8000 : t;
    q->c <<= q->ct;
    qm_byte_out(q);
    q->c <<= 8;
    qm_byte_out(q);
    if (q->held >= 0)
        qm_put(q, q->held);
    for (; q->ffs > 0; q->ffs--)
        qm_put(q, 0xff);
}

static void append_marker(GByteArray *b, int marker, const uint8_t *body, size_t len)
{
    const uint8_t head[4] = {0xff, (uint8_t)marker, (uint8_t)((len + 2) >> 8), (uint8_t)(len + 2)};

    g_byte_array_append(b, head, 4);
    g_byte_array_append(b, body, (guint)len);
}

/* One scan of one coefficient band, every block of it coded as "end of block" (or every DC difference as zero):
 * a decision per block, which is what makes arithmetic-coded scans cost the decoder. */
static void append_scan(GByteArray *b, int ncomp, int comp, int ss, int ah, int al, long decisions)
{
    uint8_t sos[10], st = 0; /* every context starts in state 0, more probable symbol 0 */
    size_t n = 0;
    struct qm q;

    sos[n++] = (uint8_t)ncomp;
    for (int i = 0; i < ncomp; i++) {
        sos[n++] = (uint8_t)(comp + i + 1);
        sos[n++] = 0; /* conditioning tables 0 for DC and AC */
    }
    sos[n++] = (uint8_t)ss;
    sos[n++] = (uint8_t)ss; /* one coefficient per scan */
    sos[n++] = (uint8_t)(ah << 4 | al);
    append_marker(b, 0xda, sos, n);
    qm_start(&q, b);
    qm_run(&q, &st, ss == 0 ? 0 : 1, decisions);
    qm_flush(&q);
}

#define SCANS_SIDE    7071 /* 49,999,041 pixels: within max_source_pixels' default of 50,000,000 */
#define SCANS_TOP_BIT 10   /* each AC coefficient sent from bit 10 down to bit 0: eleven scans */

/*
 * A 7071x7071 progressive, arithmetic-coded JPEG of 2,080 scans (one DC scan, then each of the 63 AC coefficients
 * of each of the 3 components in eleven successive-approximation scans), some 40 KB: libjpeg keeps a coefficient
 * buffer of the whole picture and decodes a decision for each of its 781,456 blocks in every scan.
 */
static int make_scans(VipsObject *scope, const char *path)
{
    const long blocks = (long)((SCANS_SIDE + 7) / 8) * ((SCANS_SIDE + 7) / 8);
    uint8_t dqt[65], sof[15] = {8, SCANS_SIDE >> 8, SCANS_SIDE & 0xff, SCANS_SIDE >> 8, SCANS_SIDE & 0xff, 3};
    GByteArray *b = g_byte_array_new();
    int rc;

    (void)scope;
    dqt[0] = 0; /* 8-bit table 0 */
    memset(dqt + 1, 1, 64);
    for (int c = 0; c < 3; c++) {
        sof[6 + 3 * c] = (uint8_t)(c + 1);
        sof[7 + 3 * c] = 0x11; /* no subsampling */
        sof[8 + 3 * c] = 0;
    }
    g_byte_array_append(b, (const uint8_t *)"\xff\xd8", 2);
    append_marker(b, 0xdb, dqt, sizeof(dqt));
    append_marker(b, 0xca, sof, sizeof(sof)); /* SOF10: progressive, arithmetic coding */
    append_scan(b, 3, 0, 0, 0, 0, 3 * blocks);
    for (int c = 0; c < 3; c++)
        for (int k = 1; k < 64; k++)
            for (int al = SCANS_TOP_BIT; al >= 0; al--)
                append_scan(b, 1, c, k, al == SCANS_TOP_BIT ? 0 : al + 1, al, blocks);
    g_byte_array_append(b, (const uint8_t *)"\xff\xd9", 2);
    rc = write_file(path, b->data, b->len);
    g_byte_array_unref(b);
    return rc;
}

/* Appends `len` bytes as raw deflate data that ends on a byte and refers to nothing before it (a full flush), so
 * that such pieces chain in any order and any number of times. */
static int append_deflated(GByteArray *out, const uint8_t *in, size_t len)
{
    z_stream z = {0};
    uint8_t buf[1 << 16];
    int r;

    if (deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)len;
    do {
        z.next_out = buf;
        z.avail_out = sizeof(buf);
        r = deflate(&z, Z_FULL_FLUSH);
        g_byte_array_append(out, buf, sizeof(buf) - z.avail_out);
    } while (r == Z_OK && z.avail_out == 0);
    deflateEnd(&z);
    return r == Z_OK ? 0 : -1;
}

/*
 * A `side` x `side` PNG, grey or RGB (`colour` 0 or 2), every row with filter `filter`, whose zlib stream goes on
 * after the last row with `extra_mib` MiB of zeros (about 1 KB of deflate data each) and then ends properly,
 * Adler-32 included. Rows without a filter hold a pattern; filtered rows hold zeros, which the filter turns
 * into a picture the decoder must compute byte by byte.
 */
static int write_png_rows(const char *path, uint32_t side, int colour, uint8_t filter, uint32_t extra_mib)
{
    const size_t channels = colour == 2 ? 3 : 1, row = 1 + side * channels, mib = 1 << 20;
    uint8_t *rows = calloc(side, row), *zeros = calloc(1, mib);
    GByteArray *z = g_byte_array_new(), *piece = g_byte_array_new();
    uLong adler = adler32(0, NULL, 0), adler_mib = adler32(adler32(0, NULL, 0), zeros, (uInt)mib);
    int rc = -1;

    if (rows == NULL || zeros == NULL)
        goto out;
    for (uint32_t y = 0; y < side; y++) {
        rows[y * row] = filter;
        for (size_t x = 0; filter == 0 && x < side * channels; x++)
            rows[y * row + 1 + x] = (uint8_t)(x ^ y);
    }
    g_byte_array_append(z, (const uint8_t *)"\x78\xda", 2); /* zlib header: 32 KiB window; 0x78da % 31 == 0 */
    if (append_deflated(z, rows, side * row) || append_deflated(piece, zeros, mib))
        goto out;
    adler = adler32_z(adler, rows, side * row);
    for (uint32_t i = 0; i < extra_mib; i++) {
        g_byte_array_append(z, piece->data, piece->len);
        adler = adler32_combine(adler, adler_mib, (z_off_t)mib);
    }
    g_byte_array_append(z, (const uint8_t *)"\x01\x00\x00\xff\xff", 5); /* an empty final stored block */
    append_u32(z, (uint32_t)adler);
    rc = write_png(path, side, side, colour, z->data, z->len);
out:
    free(rows);
    free(zeros);
    g_byte_array_unref(z);
    g_byte_array_unref(piece);
    return rc;
}

/* 256x256 pixels, then 2 GiB of zeros in 2 MB of compressed data that a decoder may inflate after the last row. */
static int make_trailing(VipsObject *scope, const char *path)
{
    (void)scope;
    return write_png_rows(path, 256, 0, 0, 2048);
}

/* 7000x7000 RGB pixels, every row Paeth-filtered, in 150 KB: legitimate, but a decoder's work all along its rows. */
static int make_slow(VipsObject *scope, const char *path)
{
    (void)scope;
    return write_png_rows(path, 7000, 2, 4, 0);
}

/* A 64x64 AVIF whose `ispe` boxes (the size in its header: box size, "ispe", version and flags, width, height)
 * claim 100000x100000. */
static int make_ispe_bomb(VipsObject *scope, const char *path)
{
    VipsImage **t = local(scope, 1);
    void *buf = NULL;
    size_t len = 0;
    uint8_t *p, *end;
    int rc, patched = 0;

    if (gradient(scope, 64, 64, &t[0]) ||
        vips_heifsave_buffer(t[0], &buf, &len, "compression", VIPS_FOREIGN_HEIF_COMPRESSION_AV1, NULL))
        return -1;
    end = (uint8_t *)buf + len;
    for (p = buf; (p = memmem(p, (size_t)(end - p), "ispe", 4)) != NULL && end - p >= 16; p += 4, patched++)
        for (int i = 0; i < 4; i++)
            p[8 + i] = p[12 + i] = (uint8_t)(100000u >> (24 - 8 * i));
    rc = patched > 0 ? write_file(path, buf, len) : -1;
    if (patched == 0)
        vips_error("make_fixtures", "no ispe box in the AVIF libheif wrote");
    g_free(buf);
    return rc;
}

static int make_heic(VipsObject *scope, const char *path)
{
    VipsImage **t = local(scope, 1);

    return gradient(scope, 256, 256, &t[0]) ||
           vips_heifsave(t[0], path, "compression", VIPS_FOREIGN_HEIF_COMPRESSION_HEVC, NULL);
}

/* A 3000x2000 progressive JPEG as libjpeg writes them (10 scans): what the scan limit must let through. */
static int make_progressive(VipsObject *scope, const char *path)
{
    VipsImage **t = local(scope, 1);

    return gradient(scope, 3000, 2000, &t[0]) || vips_jpegsave(t[0], path, "Q", 85, "interlace", TRUE, NULL);
}

/* A JPEG followed by a ZIP archive of one stored file, page.html: a valid picture and a valid archive at once
 * (the archive's offsets count from the start of the file, as zip tools expect of such polyglots). */
static int make_polyglot(VipsObject *scope, const char *path)
{
    static const char name[] = "page.html", page[] = "<html><script>alert(document.domain)</script></html>\n";
    const uint32_t crc = (uint32_t)crc32(0, (const Bytef *)page, sizeof(page) - 1);
    VipsImage **t = local(scope, 1);
    GByteArray *b = g_byte_array_new();
    void *jpeg = NULL;
    size_t jlen = 0;
    uint32_t local_at = 0, central_at = 0;
    int rc;

    if (gradient(scope, 64, 64, &t[0]) || vips_jpegsave_buffer(t[0], &jpeg, &jlen, "Q", 90, NULL)) {
        g_byte_array_unref(b);
        return -1;
    }
    g_byte_array_append(b, jpeg, (guint)jlen);
    g_free(jpeg);
    for (int pass = 0; pass < 2; pass++) {
        /* The local header (pass 0), then the central directory's entry (pass 1). */
        if (pass == 0) {
            local_at = b->len;
            append_u32le(b, 0x04034b50);
        } else {
            central_at = b->len;
            append_u32le(b, 0x02014b50);
            append_u16le(b, 20); /* made by */
        }
        append_u16le(b, 20);   /* version needed */
        append_u16le(b, 0);    /* flags */
        append_u16le(b, 0);    /* stored */
        append_u16le(b, 0);    /* time */
        append_u16le(b, 0x21); /* 1980-01-01 */
        append_u32le(b, crc);
        append_u32le(b, sizeof(page) - 1);
        append_u32le(b, sizeof(page) - 1);
        append_u16le(b, sizeof(name) - 1);
        append_u16le(b, 0); /* extra field */
        if (pass == 1) {
            append_u16le(b, 0); /* comment */
            append_u16le(b, 0); /* disk */
            append_u16le(b, 0); /* internal attributes */
            append_u32le(b, 0); /* external attributes */
            append_u32le(b, local_at);
        }
        g_byte_array_append(b, (const uint8_t *)name, sizeof(name) - 1);
        if (pass == 0)
            g_byte_array_append(b, (const uint8_t *)page, sizeof(page) - 1);
    }
    append_u32le(b, 0x06054b50); /* end of central directory */
    append_u16le(b, 0);
    append_u16le(b, 0);
    append_u16le(b, 1);
    append_u16le(b, 1);
    append_u32le(b, b->len - 12 - central_at);
    append_u32le(b, central_at);
    append_u16le(b, 0);
    rc = write_file(path, b->data, b->len);
    g_byte_array_unref(b);
    return rc;
}

struct fixture {
    const char *name;
    int (*make)(VipsObject *scope, const char *path);
};

static const struct fixture fixtures[] = {
    {"big.jpg", make_big},     {"small.jpg", make_small},         {"alpha.png", make_alpha},
    {"cmyk.jpg", make_cmyk},   {"rotated.jpg", make_rotated},     {"anim.gif", make_anim},
    {"image.webp", make_webp}, {"image.avif", make_avif},         {"vector.svg", make_svg},
    {"huge.png", make_huge},   {"truncated.jpg", make_truncated}, {"random.bin", make_random},
};

/* Written by --hostile: pictures whose decoding would cost seconds of CPU or hundreds of MB, a polyglot, and the
 * legitimate pictures closest to them, which must still pass. */
static const struct fixture hostile[] = {
    {"scans.jpg", make_scans},     {"trailing.png", make_trailing},       {"slow.png", make_slow},
    {"bomb.avif", make_ispe_bomb}, {"progressive.jpg", make_progressive}, {"polyglot.jpg", make_polyglot},
    {"image.heic", make_heic},
};

/* `n` different noisy photos, noise<i>.jpg: noise compresses badly, so each stays some 20 KB once resized. */
static int make_noise(const char *dir, int n)
{
    for (int i = 0; i < n; i++) {
        VipsObject *scope = VIPS_OBJECT(vips_image_new());
        VipsImage **t = local(scope, 6);
        char name[32], *path;
        int rc;

        snprintf(name, sizeof(name), "noise%d.jpg", i);
        path = g_build_filename(dir, name, NULL);
        rc = vips_gaussnoise(&t[0], 300, 300, "mean", 128.0, "sigma", 60.0, "seed", 3 * i, NULL) ||
             vips_gaussnoise(&t[1], 300, 300, "mean", 128.0, "sigma", 60.0, "seed", 3 * i + 1, NULL) ||
             vips_gaussnoise(&t[2], 300, 300, "mean", 128.0, "sigma", 60.0, "seed", 3 * i + 2, NULL) ||
             vips_bandjoin((VipsImage *[]){t[0], t[1], t[2]}, &t[3], 3, NULL) || vips_cast_uchar(t[3], &t[4], NULL) ||
             vips_copy(t[4], &t[5], "interpretation", VIPS_INTERPRETATION_sRGB, NULL) ||
             vips_jpegsave(t[5], path, "Q", 90, NULL);
        g_object_unref(scope);
        g_free(path);
        if (rc)
            return -1;
    }
    return 0;
}

static int make_all(const char *dir, const struct fixture *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char *path = g_build_filename(dir, list[i].name, NULL);
        VipsObject *scope = VIPS_OBJECT(vips_image_new());
        int rc = list[i].make(scope, path);

        g_object_unref(scope);
        g_free(path);
        if (rc) {
            vips_error("make_fixtures", "cannot make %s", list[i].name);
            return -1;
        }
    }
    return 0;
}

/* Appends the pixel at (x, y) as a JSON array of integers. */
static int append_point(GString *json, VipsImage *image, int x, int y)
{
    double *v = NULL;
    int n = 0;

    if (vips_getpoint(image, &v, &n, x, y, NULL))
        return -1;
    g_string_append_c(json, '[');
    for (int i = 0; i < n; i++) {
        if (isfinite(v[i]))
            g_string_append_printf(json, "%s%.0f", i ? "," : "", v[i]);
        else
            g_string_append_printf(json, "%snull", i ? "," : "");
    }
    g_string_append_c(json, ']');
    g_free(v);
    return 0;
}

/* Prints one line of JSON describing the stored pixels of `path`: no autorotation, first page only. */
static int inspect(const char *path)
{
    VipsImage *image = vips_image_new_from_file(path, "access", VIPS_ACCESS_RANDOM, NULL);
    const char *loader = "unknown";
    const char *keys[3] = {"left", "center", "right"};
    GString *json;
    int orientation = 0;
    int width, height, y;
    int rc = -1;

    if (!image)
        return -1;
    width = vips_image_get_width(image);
    height = vips_image_get_height(image);
    y = vips_image_get_page_height(image) / 2;
    if (vips_image_get_typeof(image, "vips-loader"))
        vips_image_get_string(image, "vips-loader", &loader);
    if (vips_image_get_typeof(image, VIPS_META_ORIENTATION))
        vips_image_get_int(image, VIPS_META_ORIENTATION, &orientation);

    json = g_string_new("{\"format\":\"");
    /* "jpegload" -> "jpeg"; loader names are plain identifiers, so no escaping is needed. */
    g_string_append_len(json, loader, g_str_has_suffix(loader, "load") ? strlen(loader) - 4 : strlen(loader));
    g_string_append_printf(json,
                           "\",\"width\":%d,\"height\":%d,\"bands\":%d,\"interpretation\":\"%s\","
                           "\"orientation\":%d,\"pages\":%d",
                           width, height, vips_image_get_bands(image),
                           vips_enum_nick(VIPS_TYPE_INTERPRETATION, vips_image_get_interpretation(image)), orientation,
                           vips_image_get_n_pages(image));
    for (int i = 0; i < 3; i++) {
        int x = i == 0 ? width / 8 : i == 1 ? width / 2 : 7 * width / 8;

        g_string_append_printf(json, ",\"%s\":", keys[i]);
        if ((double)width * height > HEADER_ONLY_PIXELS)
            g_string_append(json, "null");
        else if (append_point(json, image, x, y))
            goto out;
    }
    g_string_append(json, "}\n");
    /* Only a complete answer reaches stdout, so a caller never parses half a line. */
    fputs(json->str, stdout);
    rc = 0;
out:
    g_string_free(json, TRUE);
    g_object_unref(image);
    return rc;
}

int main(int argc, char **argv)
{
    int rc;

    if (VIPS_INIT(argv[0]))
        vips_error_exit(NULL);
    if (argc == 2 && strcmp(argv[1], "--inspect") != 0) {
        rc = make_all(argv[1], fixtures, G_N_ELEMENTS(fixtures));
    } else if (argc == 3 && strcmp(argv[1], "--hostile") == 0) {
        rc = make_all(argv[2], hostile, G_N_ELEMENTS(hostile));
    } else if (argc == 3 && strcmp(argv[1], "--inspect") == 0) {
        rc = inspect(argv[2]);
    } else if (argc == 4 && strcmp(argv[1], "--noise") == 0 && atoi(argv[3]) > 0) {
        rc = make_noise(argv[2], atoi(argv[3]));
    } else {
        fprintf(stderr, "usage: %s DIR\n       %s --hostile DIR\n       %s --inspect FILE\n       %s --noise DIR N\n",
                argv[0], argv[0], argv[0], argv[0]);
        vips_shutdown();
        return 2;
    }
    if (rc)
        fprintf(stderr, "%s", vips_error_buffer());
    vips_shutdown();
    return rc ? 1 : 0;
}
