/* image.c -- pictures checked and resized with libvips: the format decided by magic bytes, pixels bounded. */
#include "image.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

static bool starts(const uint8_t *p, size_t n, const void *magic, size_t mlen)
{
    return n >= mlen && memcmp(p, magic, mlen) == 0;
}

/* ISO base media files (HEIF, AVIF) name their brands in the leading "ftyp" box. */
static enum image_type sniff_ftyp(const uint8_t *p, size_t n)
{
    uint32_t box;
    bool heif = false;

    if (n < 16 || memcmp(p + 4, "ftyp", 4) != 0)
        return IMAGE_NONE;
    box = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    if (box < 16 || box > n)
        box = (uint32_t)(n < 64 ? n : 64);
    /* The major brand, then the compatible brands, four bytes each (the minor version skipped). */
    for (size_t off = 8; off + 4 <= box; off += off == 8 ? 8 : 4) {
        const uint8_t *b = p + off;
        if (memcmp(b, "avif", 4) == 0 || memcmp(b, "avis", 4) == 0)
            return IMAGE_AVIF;
        if (memcmp(b, "heic", 4) == 0 || memcmp(b, "heix", 4) == 0 || memcmp(b, "mif1", 4) == 0 ||
            memcmp(b, "msf1", 4) == 0)
            heif = true;
    }
    return heif ? IMAGE_HEIC : IMAGE_NONE;
}

enum image_type image_sniff(const uint8_t *p, size_t n, const char **name)
{
    static const struct {
        const char *magic;
        size_t len;
        const char *name;
    } refused[] = {
        {"%PDF", 4, "pdf"},
        {"II*\0", 4, "tiff"},
        {"MM\0*", 4, "tiff"},
        {"BM", 2, "bmp"},
        {"\0\0\1\0", 4, "ico"},
        {"MATLAB", 6, "matlab"},
        {"8BPS", 4, "psd"},
        {"\xff\x0a", 2, "jpeg-xl"},
        {"\0\0\0\x0cJXL ", 8, "jpeg-xl"},
        {"\x1a\x45\xdf\xa3", 4, "webm"},
    };
    enum image_type t;

    if (starts(p, n, "\xff\xd8\xff", 3)) {
        *name = "jpeg";
        return IMAGE_JPEG;
    }
    if (starts(p, n, "\x89PNG\r\n\x1a\n", 8)) {
        *name = "png";
        return IMAGE_PNG;
    }
    if (starts(p, n, "GIF87a", 6) || starts(p, n, "GIF89a", 6)) {
        *name = "gif";
        return IMAGE_GIF;
    }
    if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0) {
        *name = "webp";
        return IMAGE_WEBP;
    }
    if ((t = sniff_ftyp(p, n)) != IMAGE_NONE) {
        *name = t == IMAGE_AVIF ? "avif" : "heic";
        return t;
    }
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        if (starts(p, n, refused[i].magic, refused[i].len)) {
            *name = refused[i].name;
            return IMAGE_NONE;
        }
    }
    /* SVG and other XML: text, perhaps after a byte order mark or white space. */
    for (size_t i = 0; i < n && i < 512; i++) {
        if (p[i] == '<') {
            *name = (n - i >= 4 && (memcmp(p + i, "<svg", 4) == 0 || memcmp(p + i, "<?xm", 4) == 0)) ? "svg" : "html";
            return IMAGE_NONE;
        }
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n' && p[i] != 0xef && p[i] != 0xbb && p[i] != 0xbf)
            break;
    }
    *name = "unknown";
    return IMAGE_NONE;
}

const char *image_mime(enum image_type t)
{
    switch (t) {
    case IMAGE_JPEG: return "image/jpeg";
    case IMAGE_PNG: return "image/png";
    case IMAGE_GIF: return "image/gif";
    case IMAGE_WEBP: return "image/webp";
    case IMAGE_AVIF: return "image/avif";
    case IMAGE_HEIC: return "image/heic";
    case IMAGE_NONE: break;
    }
    return "application/octet-stream";
}

int image_init(void)
{
    if (VIPS_INIT("pfpcache-relay") != 0)
        return -EIO;
    vips_block_untrusted_set(TRUE);
    /* Only the loaders of the accepted formats may run at all, whatever else libvips was built with. */
    vips_operation_block_set("VipsForeignLoad", TRUE);
    vips_operation_block_set("VipsForeignLoadJpeg", FALSE);
    vips_operation_block_set("VipsForeignLoadPng", FALSE);
    vips_operation_block_set("VipsForeignLoadNsgif", FALSE);
    vips_operation_block_set("VipsForeignLoadWebp", FALSE);
    vips_operation_block_set("VipsForeignLoadHeif", FALSE);
    /* Pictures do not repeat, so cached operations would only hold memory. */
    vips_cache_set_max(0);
    vips_concurrency_set(1);
    return 0;
}

void image_free(void)
{
    vips_shutdown();
}

static int refuse(struct image_out *out, const char *fmt, const char *detail)
{
    snprintf(out->error, sizeof(out->error), fmt, detail);
    return -EINVAL;
}

/* The reason libvips gave, one line of it; vips keeps its error text per process, so a copy is taken. */
static int vips_refusal(struct image_out *out, const char *what)
{
    char *msg = vips_error_buffer_copy();
    char *nl = strchr(msg, '\n');

    if (nl != NULL)
        *nl = '\0';
    snprintf(out->error, sizeof(out->error), "%s: %s", what, msg[0] ? msg : "no detail");
    g_free(msg);
    return -EINVAL;
}

/* Every load decodes top to bottom once, and stops at the first sign of corruption. */
#define SEQUENTIAL "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_ERROR

/* Opens the source with its own format's loader; only the header is read until pixels are asked for. */
static VipsImage *open_header(const uint8_t *src, size_t len, enum image_type t)
{
    VipsImage *im = NULL;
    void *buf = (void *)src;
    int r = -1;

    switch (t) {
    case IMAGE_JPEG: r = vips_jpegload_buffer(buf, len, &im, SEQUENTIAL, NULL); break;
    case IMAGE_PNG: r = vips_pngload_buffer(buf, len, &im, SEQUENTIAL, NULL); break;
    case IMAGE_GIF: r = vips_gifload_buffer(buf, len, &im, SEQUENTIAL, NULL); break;
    case IMAGE_WEBP: r = vips_webpload_buffer(buf, len, &im, SEQUENTIAL, NULL); break;
    case IMAGE_AVIF:
    case IMAGE_HEIC: r = vips_heifload_buffer(buf, len, &im, SEQUENTIAL, NULL); break;
    case IMAGE_NONE: break;
    }
    return r == 0 ? im : NULL;
}

/*
 * The image to resize: the one already open, unless the format can decode at a
 * reduced size (JPEG by powers of two, WebP by any scale), in which case it is
 * opened again so that no more pixels are decoded than the result needs.
 * Takes over `header`; returns NULL on failure.
 */
static VipsImage *open_for_resize(VipsImage *header, const uint8_t *src, size_t len, enum image_type t, int max_size)
{
    int width = vips_image_get_width(header), height = vips_image_get_page_height(header);
    int longest = width > height ? width : height, shrink = 1, r = 0;
    VipsImage *im = NULL;
    void *buf = (void *)src;

    if (t == IMAGE_JPEG) {
        while (shrink < 8 && longest / (shrink * 2) >= max_size)
            shrink *= 2;
        if (shrink > 1)
            r = vips_jpegload_buffer(buf, len, &im, "shrink", shrink, SEQUENTIAL, NULL);
    } else if (t == IMAGE_WEBP && longest > max_size) {
        r = vips_webpload_buffer(buf, len, &im, "scale", (double)max_size / longest, SEQUENTIAL, NULL);
    }
    if (im == NULL && r == 0)
        return header;
    g_object_unref(header);
    return r == 0 ? im : NULL;
}

/* The result: a copy of `data`, which belongs to libvips or to the caller. */
static void set_output(struct image_out *out, const void *data, size_t len, enum image_type t, int width, int height)
{
    if ((out->data = malloc(len)) == NULL)
        abort();
    memcpy(out->data, data, len);
    out->len = len;
    out->type = t;
    out->width = width;
    out->height = height;
}

/* Replaces *im with the result of the step just done. */
static void swap_in(VipsImage **im, VipsImage *next)
{
    g_object_unref(*im);
    *im = next;
}

/*
 * Upright, sRGB, on white, within max_size: the same lanczos3 resampling
 * vips_thumbnail uses, in the order that suits an opaque JPEG result. Alpha is
 * flattened before resampling, which gives the same pixels as resampling
 * premultiplied and flattening after (both are linear) without premultiplying.
 */
static int resize(VipsImage *header, const uint8_t *src, size_t len, enum image_type t, const struct image_opts *o,
                  struct image_out *out)
{
    VipsImage *im = open_for_resize(header, src, len, t, o->max_size), *next = NULL;
    void *jpeg = NULL;
    size_t jlen = 0;
    int w, h, tw, th;

    if (im == NULL)
        return vips_refusal(out, "cannot decode");
    if (vips_image_get_orientation(im) > 1) {
        if (vips_autorot(im, &next, NULL) != 0)
            goto fail;
        swap_in(&im, next);
    }
    if (vips_image_get_typeof(im, VIPS_META_ICC_NAME) ||
        vips_image_get_interpretation(im) == VIPS_INTERPRETATION_CMYK) {
        const char *assumed = vips_image_get_interpretation(im) == VIPS_INTERPRETATION_CMYK ? "cmyk" : "srgb";
        if (vips_icc_transform(im, &next, "srgb", "embedded", TRUE, "input_profile", assumed, NULL) != 0)
            goto fail;
        swap_in(&im, next);
    } else if (vips_image_get_interpretation(im) != VIPS_INTERPRETATION_sRGB &&
               vips_image_get_interpretation(im) != VIPS_INTERPRETATION_B_W) {
        /* 16-bit and other spaces: converted rather than clipped when cast to 8 bits. */
        if (vips_colourspace(im, &next, VIPS_INTERPRETATION_sRGB, NULL) != 0)
            goto fail;
        swap_in(&im, next);
    }
    if (vips_image_hasalpha(im)) {
        VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
        int fr = vips_flatten(im, &next, "background", white, NULL);
        vips_area_unref(VIPS_AREA(white));
        if (fr != 0)
            goto fail;
        swap_in(&im, next);
    }

    /* The target size, fitting max_size like vips_thumbnail: the longer side exact, the other rounded. */
    w = vips_image_get_width(im);
    h = vips_image_get_height(im);
    if (w > o->max_size || h > o->max_size) {
        tw = w >= h ? o->max_size : (int)((double)w * o->max_size / h + 0.5);
        th = h > w ? o->max_size : (int)((double)h * o->max_size / w + 0.5);
        tw = tw < 1 ? 1 : tw;
        th = th < 1 ? 1 : th;
        if (vips_resize(im, &next, (double)tw / w, "vscale", (double)th / h, NULL) != 0)
            goto fail;
        swap_in(&im, next);
    }
    if (vips_jpegsave_buffer(im, &jpeg, &jlen, "Q", o->quality, "optimize_coding", TRUE, "strip", TRUE, NULL) != 0)
        goto fail;
    set_output(out, jpeg, jlen, IMAGE_JPEG, vips_image_get_width(im), vips_image_get_height(im));
    g_free(jpeg);
    g_object_unref(im);
    return 0;

fail:
    g_object_unref(im);
    return vips_refusal(out, "cannot convert");
}

/* Decodes every pixel of the first frame, so that a truncated or corrupt original is not kept. */
static int check_decodes(VipsImage *im, struct image_out *out)
{
    double avg;
    if (vips_avg(im, &avg, NULL) != 0)
        return vips_refusal(out, "cannot decode");
    return 0;
}

int image_process(const uint8_t *src, size_t len, const struct image_opts *o, struct image_out *out)
{
    const char *name;
    enum image_type t = image_sniff(src, len, &name);
    VipsImage *im;
    int64_t pixels;
    int r;

    memset(out, 0, sizeof(*out));
    if (t == IMAGE_NONE)
        return refuse(out, "unsupported format (%s)", name);
    if ((im = open_header(src, len, t)) == NULL)
        return vips_refusal(out, "cannot read the header");

    /* Every frame of an animation counts: a thousand small frames decode like one huge picture. */
    pixels = (int64_t)vips_image_get_width(im) * vips_image_get_page_height(im) * vips_image_get_n_pages(im);
    if (pixels > o->max_pixels) {
        char detail[96];
        snprintf(detail, sizeof(detail), "%dx%d, %d frame(s)", vips_image_get_width(im), vips_image_get_page_height(im),
                 vips_image_get_n_pages(im));
        g_object_unref(im);
        return refuse(out, "too many pixels (%s; max_source_pixels limits them)", detail);
    }

    if (o->resize) {
        r = resize(im, src, len, t, o, out);
    } else {
        r = check_decodes(im, out);
        if (r == 0)
            set_output(out, src, len, t, vips_image_get_width(im), vips_image_get_page_height(im));
        g_object_unref(im);
    }
    return r;
}

void image_out_free(struct image_out *out)
{
    free(out->data);
    out->data = NULL;
    out->len = 0;
}
