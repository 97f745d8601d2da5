/* quality_scan.c -- how encoder qualities compare, by SSIM, for the quality benchmark (bench/quality.mjs):
 *   quality_scan map DIR      for JPEG, WebP and AVIF at a range of qualities: the mean SSIM of variants (128 and
 *                             256 px) against the same variant resized without loss, and their total bytes
 *   quality_scan master DIR   for masters at a range of WebP qualities: the mean SSIM of JPEG-85 variants made
 *                             from the master, beside those made from the source
 * over every file in DIR plus three fractal textures, since the bench corpus's gradients compress almost
 * losslessly. SSIM is computed here over libvips pixels: luma, an 11-tap Gaussian window of sigma 1.5, the usual
 * constants (0.01 and 0.03 of 255). Prints one line a quality: "FORMAT Q SSIM BYTES". */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#define MAX_SOURCES 64

struct source {
    void *data;
    size_t len;
};

static const int sizes[] = {128, 256};
#define NSIZES (int)(sizeof(sizes) / sizeof(sizes[0]))

static void *load(const char *path, size_t *len)
{
    gchar *data;
    gsize n;

    if (!g_file_get_contents(path, &data, &n, NULL))
        vips_error_exit("cannot read %s", path);
    *len = n;
    return data;
}

/* A photograph-like texture: three fractal surfaces as the bands, scaled to 0..255, as a PNG. */
static struct source texture(int w, int h, double dimension)
{
    VipsImage *band[3], *rgb, *scaled, *u8;
    struct source s;

    for (int b = 0; b < 3; b++)
        if (vips_fractsurf(&band[b], w, h, dimension + b * 0.1, NULL))
            vips_error_exit(NULL);
    if (vips_bandjoin(band, &rgb, 3, NULL) || vips_scale(rgb, &scaled, NULL) || vips_cast_uchar(scaled, &u8, NULL))
        vips_error_exit(NULL);
    u8->Type = VIPS_INTERPRETATION_sRGB;
    if (vips_pngsave_buffer(u8, &s.data, &s.len, NULL))
        vips_error_exit(NULL);
    for (int b = 0; b < 3; b++)
        g_object_unref(band[b]);
    g_object_unref(rgb);
    g_object_unref(scaled);
    g_object_unref(u8);
    return s;
}

/* 8-bit sRGB on white: what a viewer shows of `im`. Takes over `im`. */
static VipsImage *shown(VipsImage *im)
{
    VipsImage *next;

    if (vips_image_hasalpha(im)) {
        VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
        if (vips_flatten(im, &next, "background", white, NULL))
            vips_error_exit(NULL);
        vips_area_unref(VIPS_AREA(white));
        g_object_unref(im);
        im = next;
    }
    if (vips_colourspace(im, &next, VIPS_INTERPRETATION_sRGB, NULL) || vips_cast_uchar(next, &im, NULL))
        vips_error_exit(NULL);
    g_object_unref(next);
    return im;
}

/* `src` resized to fit `size`, as the variants are, without any encoding, in memory; unref it. */
/* `im` as shown, decoded whole now, so that the buffer it came from may go. Takes over `im`. */
static VipsImage *settled(VipsImage *im)
{
    VipsImage *copy;

    im = shown(im);
    if ((copy = vips_image_copy_memory(im)) == NULL)
        vips_error_exit(NULL);
    g_object_unref(im);
    return copy;
}

static VipsImage *resized(const void *src, size_t len, int size)
{
    VipsImage *im;

    if (vips_thumbnail_buffer((void *)src, len, &im, size, "height", size, "size", VIPS_SIZE_DOWN, NULL))
        vips_error_exit(NULL);
    return settled(im);
}

static VipsImage *decode(const void *buf, size_t len)
{
    VipsImage *im = vips_image_new_from_buffer(buf, len, "", NULL);

    if (im == NULL)
        vips_error_exit(NULL);
    return settled(im);
}

/* The mean SSIM of the luma of `a` and `b`, both 8-bit sRGB of one size. */
static double ssim(VipsImage *a, VipsImage *b)
{
    VipsImage *base = vips_image_new(), **t = (VipsImage **)vips_object_local_array(VIPS_OBJECT(base), 28);
    const double c1 = (0.01 * 255) * (0.01 * 255), c2 = (0.03 * 255) * (0.03 * 255);
    double mean;

#define CONV(in, out) vips_convsep(in, out, t[0], "precision", VIPS_PRECISION_FLOAT, NULL)
    if (vips_gaussmat(&t[0], 1.5, 0.05, "separable", TRUE, "precision", VIPS_PRECISION_FLOAT, NULL) ||
        vips_colourspace(a, &t[1], VIPS_INTERPRETATION_B_W, NULL) || vips_cast_float(t[1], &t[2], NULL) ||
        vips_colourspace(b, &t[3], VIPS_INTERPRETATION_B_W, NULL) || vips_cast_float(t[3], &t[4], NULL) ||
        CONV(t[2], &t[5]) || CONV(t[4], &t[6]) || vips_multiply(t[2], t[2], &t[7], NULL) ||
        vips_multiply(t[4], t[4], &t[8], NULL) || vips_multiply(t[2], t[4], &t[9], NULL) || CONV(t[7], &t[10]) ||
        CONV(t[8], &t[11]) || CONV(t[9], &t[12]) || vips_multiply(t[5], t[5], &t[13], NULL) ||
        vips_multiply(t[6], t[6], &t[14], NULL) || vips_multiply(t[5], t[6], &t[15], NULL) ||
        /* 2 mu_a mu_b + c1, and 2 (E[ab] - mu_a mu_b) + c2 */
        vips_linear1(t[15], &t[16], 2, c1, NULL) || vips_subtract(t[12], t[15], &t[17], NULL) ||
        vips_linear1(t[17], &t[18], 2, c2, NULL) ||
        /* mu_a^2 + mu_b^2 + c1, and var_a + var_b + c2 = E[a^2] + E[b^2] - mu_a^2 - mu_b^2 + c2 */
        vips_add(t[13], t[14], &t[19], NULL) || vips_add(t[10], t[11], &t[20], NULL) ||
        vips_subtract(t[20], t[19], &t[21], NULL) || vips_linear1(t[19], &t[22], 1, c1, NULL) ||
        vips_linear1(t[21], &t[23], 1, c2, NULL) || vips_multiply(t[16], t[18], &t[24], NULL) ||
        vips_multiply(t[22], t[23], &t[25], NULL) || vips_divide(t[24], t[25], &t[26], NULL) ||
        vips_avg(t[26], &mean, NULL))
        vips_error_exit(NULL);
#undef CONV
    g_object_unref(base);
    return mean;
}

/* `in` encoded as `format` at the encoder's own quality `q`, with the settings image_variant() uses. */
static void *encode(VipsImage *in, const char *format, int q, size_t *len)
{
    VipsImage *im = in, *flat = NULL;
    void *buf = NULL;
    int r;

    if (strcmp(format, "jpeg") == 0) {
        if (vips_image_hasalpha(in)) {
            VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
            if (vips_flatten(in, &flat, "background", white, NULL))
                vips_error_exit(NULL);
            vips_area_unref(VIPS_AREA(white));
            im = flat;
        }
        r = vips_jpegsave_buffer(im, &buf, len, "Q", q, "optimize_coding", TRUE, "strip", TRUE, NULL);
    } else if (strcmp(format, "webp") == 0) {
        r = vips_webpsave_buffer(im, &buf, len, "Q", q, "strip", TRUE, NULL);
    } else {
        r = vips_heifsave_buffer(im, &buf, len, "Q", q, "compression", VIPS_FOREIGN_HEIF_COMPRESSION_AV1, "strip", TRUE,
                                 NULL);
    }
    if (r)
        vips_error_exit(NULL);
    if (flat != NULL)
        g_object_unref(flat);
    return buf;
}

/* The variant of `src` at `size` as vips_thumbnail makes it, before encoding; unref it. */
static VipsImage *variant_pixels(const void *src, size_t len, int size)
{
    VipsImage *im;

    if (vips_thumbnail_buffer((void *)src, len, &im, size, "height", size, "size", VIPS_SIZE_DOWN, NULL))
        vips_error_exit(NULL);
    return im;
}

static void scan_map(struct source *src, int n)
{
    static const char *const formats[] = {"jpeg", "webp", "avif"};
    VipsImage *ref[MAX_SOURCES][NSIZES], *pix[MAX_SOURCES][NSIZES];

    for (int i = 0; i < n; i++) {
        for (int s = 0; s < NSIZES; s++) {
            ref[i][s] = resized(src[i].data, src[i].len, sizes[s]);
            /* Held in memory, since every quality encodes it again. */
            VipsImage *p = variant_pixels(src[i].data, src[i].len, sizes[s]);
            if ((pix[i][s] = vips_image_copy_memory(p)) == NULL)
                vips_error_exit(NULL);
            g_object_unref(p);
        }
    }
    for (int f = 0; f < 3; f++) {
        for (int q = 20; q <= 100; q += 5) {
            double sum = 0;
            size_t bytes = 0;
            for (int i = 0; i < n; i++) {
                for (int s = 0; s < NSIZES; s++) {
                    size_t len;
                    void *buf = encode(pix[i][s], formats[f], q, &len);
                    VipsImage *got = decode(buf, len);
                    sum += ssim(ref[i][s], got);
                    bytes += len;
                    g_object_unref(got);
                    g_free(buf);
                }
            }
            printf("%s %d %.5f %zu\n", formats[f], q, sum / (n * NSIZES), bytes);
            fflush(stdout);
        }
    }
}

/* Masters made as image_process() makes them, but at the WebP quality `q`: fit 1024, premultiplied lanczos3. */
static void *master(const void *src, size_t len, int q, size_t *out)
{
    VipsImage *im;
    void *buf;

    if (vips_thumbnail_buffer((void *)src, len, &im, 1024, "height", 1024, "size", VIPS_SIZE_DOWN, NULL) ||
        vips_webpsave_buffer(im, &buf, out, "Q", q, "strip", TRUE, NULL))
        vips_error_exit(NULL);
    g_object_unref(im);
    return buf;
}

static double jpeg_ssim(const void *src, size_t len, VipsImage *ref, int size, size_t *bytes)
{
    VipsImage *pix = variant_pixels(src, len, size), *got;
    size_t n;
    void *buf = encode(pix, "jpeg", 85, &n);
    double r;

    got = decode(buf, n);
    r = ssim(ref, got);
    *bytes += n;
    g_object_unref(got);
    g_object_unref(pix);
    g_free(buf);
    return r;
}

static void scan_master(struct source *src, int n)
{
    static const int qualities[] = {75, 80, 85, 90, 95, 100};
    double direct = 0;
    size_t bytes = 0;

    for (int i = 0; i < n; i++) {
        for (int s = 0; s < NSIZES; s++) {
            VipsImage *ref = resized(src[i].data, src[i].len, sizes[s]);
            direct += jpeg_ssim(src[i].data, src[i].len, ref, sizes[s], &bytes);
            g_object_unref(ref);
        }
    }
    printf("source 0 %.5f %zu\n", direct / (n * NSIZES), bytes);
    for (size_t k = 0; k < sizeof(qualities) / sizeof(qualities[0]); k++) {
        double sum = 0;
        size_t master_bytes = 0, vbytes = 0;
        for (int i = 0; i < n; i++) {
            size_t mlen;
            void *m = master(src[i].data, src[i].len, qualities[k], &mlen);
            master_bytes += mlen;
            for (int s = 0; s < NSIZES; s++) {
                VipsImage *ref = resized(src[i].data, src[i].len, sizes[s]);
                sum += jpeg_ssim(m, mlen, ref, sizes[s], &vbytes);
                g_object_unref(ref);
            }
            g_free(m);
        }
        printf("master %d %.5f %zu\n", qualities[k], sum / (n * NSIZES), master_bytes);
        fflush(stdout);
    }
}

int main(int argc, char **argv)
{
    struct source src[MAX_SOURCES];
    int n = 0;
    DIR *d;
    struct dirent *e;

    if (argc != 3 || (d = opendir(argv[2])) == NULL) {
        fprintf(stderr, "usage: quality_scan map|master DIR\n");
        return 2;
    }
    if (VIPS_INIT(argv[0]))
        vips_error_exit(NULL);
    vips_cache_set_max(0);
    while ((e = readdir(d)) != NULL && n < MAX_SOURCES - 3) {
        char path[4096];
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", argv[2], e->d_name);
        src[n].data = load(path, &src[n].len);
        n++;
    }
    closedir(d);
    src[n++] = texture(1600, 1200, 2.5);
    src[n++] = texture(800, 800, 2.2);
    src[n++] = texture(500, 400, 2.7);
    if (strcmp(argv[1], "map") == 0)
        scan_map(src, n);
    else
        scan_master(src, n);
    for (int i = 0; i < n; i++)
        g_free(src[i].data);
    vips_shutdown();
    return 0;
}
