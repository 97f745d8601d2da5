/* make_fixtures.c -- writes the images the end-to-end tests serve (and N distinct noisy ones), and reports what
 * libvips sees in one. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>

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

/* The CRC of PNG chunks (ISO 3309), bit by bit: speed does not matter for three tiny chunks. */
static uint32_t crc32_of(const uint8_t *p, size_t len)
{
    uint32_t crc = 0xffffffffu;

    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1u));
    }
    return crc ^ 0xffffffffu;
}

static size_t put_u32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24;
    p[1] = v >> 16;
    p[2] = v >> 8;
    p[3] = v;
    return 4;
}

/* Appends a chunk at `p`; the CRC covers the type and the data. Returns the bytes written. */
static size_t put_chunk(uint8_t *p, const char *type, const uint8_t *data, uint32_t len)
{
    size_t n = put_u32(p, len);

    memcpy(p + n, type, 4);
    if (len)
        memcpy(p + n + 4, data, len);
    n += 4 + len;
    return n + put_u32(p + n, crc32_of(p + 4, 4 + len));
}

/* A decompression bomb: a valid header claiming 50000x50000 RGB (7.5 GB decoded) over a few bytes of image
 * data. The zlib stream is one stored deflate block, since zlib is not linked here. */
static int make_huge(VipsObject *scope, const char *path)
{
    uint8_t ihdr[13];
    const uint8_t idat[] = {
        0x78, 0x01,             /* zlib header: deflate, 32 KiB window, no dictionary; 0x7801 % 31 == 0 */
        0x01,                   /* final block, stored */
        0x04, 0x00, 0xfb, 0xff, /* LEN = 4 and its one's complement, little-endian */
        0x00, 0x00, 0x00, 0x00, /* filter byte and the first three samples of row 0 */
        0x00, 0x04, 0x00, 0x01, /* Adler-32 of four zero bytes: b = 4, a = 1 */
    };
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint8_t file[128];
    size_t n = 0;

    (void)scope;
    put_u32(ihdr, 50000);
    put_u32(ihdr + 4, 50000);
    ihdr[8] = 8;  /* bit depth */
    ihdr[9] = 2;  /* colour type: RGB */
    ihdr[10] = 0; /* compression: deflate */
    ihdr[11] = 0; /* filter method */
    ihdr[12] = 0; /* no interlace */
    memcpy(file, signature, sizeof(signature));
    n += sizeof(signature);
    n += put_chunk(file + n, "IHDR", ihdr, sizeof(ihdr));
    n += put_chunk(file + n, "IDAT", idat, sizeof(idat));
    n += put_chunk(file + n, "IEND", NULL, 0);
    return write_file(path, file, n);
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

static const struct fixture {
    const char *name;
    int (*make)(VipsObject *scope, const char *path);
} fixtures[] = {
    {"big.jpg", make_big},     {"small.jpg", make_small},         {"alpha.png", make_alpha},
    {"cmyk.jpg", make_cmyk},   {"rotated.jpg", make_rotated},     {"anim.gif", make_anim},
    {"image.webp", make_webp}, {"image.avif", make_avif},         {"vector.svg", make_svg},
    {"huge.png", make_huge},   {"truncated.jpg", make_truncated}, {"random.bin", make_random},
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

static int make_all(const char *dir)
{
    for (size_t i = 0; i < G_N_ELEMENTS(fixtures); i++) {
        char *path = g_build_filename(dir, fixtures[i].name, NULL);
        VipsObject *scope = VIPS_OBJECT(vips_image_new());
        int rc = fixtures[i].make(scope, path);

        g_object_unref(scope);
        g_free(path);
        if (rc) {
            vips_error("make_fixtures", "cannot make %s", fixtures[i].name);
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
        rc = make_all(argv[1]);
    } else if (argc == 3 && strcmp(argv[1], "--inspect") == 0) {
        rc = inspect(argv[2]);
    } else if (argc == 4 && strcmp(argv[1], "--noise") == 0 && atoi(argv[3]) > 0) {
        rc = make_noise(argv[2], atoi(argv[3]));
    } else {
        fprintf(stderr, "usage: %s DIR\n       %s --inspect FILE\n       %s --noise DIR N\n", argv[0], argv[0],
                argv[0]);
        vips_shutdown();
        return 2;
    }
    if (rc)
        fprintf(stderr, "%s", vips_error_buffer());
    vips_shutdown();
    return rc ? 1 : 0;
}
