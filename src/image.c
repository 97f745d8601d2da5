/*
 * image.c -- pictures checked and resized with libvips: the format decided by magic bytes; pixels, scans and
 * image data bounded before decoding; a watchdog for each picture's time and one budget for decoders' memory.
 */
#include "image.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <gmodule.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "imgscan.h"
#include "log.h"
#include "vipsbudget.h"

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

const char *image_refusal_name(enum image_refusal r)
{
    static const char *const names[IMAGE_REFUSALS] = {"format", "pixels",  "scans",  "trailing_data",
                                                      "memory", "timeout", "corrupt"};
    return (unsigned)r < IMAGE_REFUSALS ? names[r] : "unknown";
}

/* Sources refused since start-up, by reason: atomic, for every image thread. */
static uint64_t refusal_counts[IMAGE_REFUSALS];

/* --- start-up --------------------------------------------------------------------------------------------------- */

/*
 * libvips loads its HEIF support as a module, from the library directory it derives from VIPSHOME or guesses
 * from where the program seems to be installed; when that points elsewhere the module is missed, and every AVIF
 * and HEIF fails with 'class "heifload_buffer" not found'. The modules that go with the running libvips are
 * beside the library itself, which the address of its version string names.
 */
static void load_heif_module(void)
{
    Dl_info lib;
    char *dir, *path;
    GModule *module;

    if (vips_type_find("VipsOperation", "heifload_buffer") != 0)
        return;
    if (dladdr(vips_version_string(), &lib) == 0 || lib.dli_fname == NULL)
        return;
    dir = g_path_get_dirname(lib.dli_fname);
    path =
        g_strdup_printf("%s/vips-modules-%d.%d/vips-heif.%s", dir, vips_version(0), vips_version(1), G_MODULE_SUFFIX);
    /* Modules register types, so they stay loaded. */
    if ((module = g_module_open(path, G_MODULE_BIND_LAZY)) != NULL)
        g_module_make_resident(module);
    else
        log_warn("images: cannot load libvips' HEIF module: %s", g_module_error());
    g_free(path);
    g_free(dir);
}

/* The operations the accepted formats need; missing ones are named in the log. */
static bool operations_present(void)
{
    static const char *const needed[] = {"jpegload_buffer", "pngload_buffer",  "gifload_buffer",
                                         "webpload_buffer", "heifload_buffer", "jpegsave_buffer"};
    bool all = true;

    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
        if (vips_type_find("VipsOperation", needed[i]) == 0) {
            log_error("images: libvips %s has no %s, which the accepted formats need%s", vips_version_string(),
                      needed[i],
                      strncmp(needed[i], "heif", 4) == 0 ? " (AVIF and HEIF come from its module vips-heif)" : "");
            all = false;
        }
    }
    return all;
}

int image_init(void)
{
    if (VIPS_INIT("pfpcache-relay") != 0) {
        log_error("images: libvips does not start: %s", vips_error_buffer());
        return -EIO;
    }
    load_heif_module();
    if (!operations_present())
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

    if (vipsbudget_init() != 0) {
        log_error("images: cannot start the image watchdog thread");
        return -EIO;
    }
    return 0;
}

void image_free(void)
{
    vipsbudget_free();
    vips_shutdown();
}

void image_stats(struct image_stats *out)
{
    for (int r = 0; r < IMAGE_REFUSALS; r++)
        out->refused[r] = __atomic_load_n(&refusal_counts[r], __ATOMIC_RELAXED);
}

/* --- refusals --------------------------------------------------------------------------------------------------- */

static int refuse(struct image_out *out, enum image_refusal r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct image_out *out, enum image_refusal r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(out->error, sizeof(out->error), fmt, ap);
    va_end(ap);
    out->refusal = r;
    __atomic_add_fetch(&refusal_counts[r], 1, __ATOMIC_RELAXED);
    return -EINVAL;
}

/* The reason libvips gave, one line of it; vips keeps its error text per process, so a copy is taken. */
static int vips_refusal(struct image_out *out, const char *what)
{
    char *msg = vips_error_buffer_copy();
    char *nl = strchr(msg, '\n');

    if (nl != NULL)
        *nl = '\0';
    refuse(out, IMAGE_REFUSED_CORRUPT, "%s: %s", what, msg[0] ? msg : "no detail");
    g_free(msg);
    return -EINVAL;
}

/* --- decoding --------------------------------------------------------------------------------------------------- */

/* Every load decodes top to bottom once, and stops at the first sign of corruption. */
#define SEQUENTIAL "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_ERROR

/* What the bytes' structure says before any decoder runs. */
struct layout {
    struct imgscan_jpeg jpeg;
    struct imgscan_png png;
    struct imgscan_bmff bmff;
};

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
 * The bytes the decoder of the first frame holds at once, from the header. Decoders that produce the whole
 * picture before its first row hold it all: a progressive JPEG's coefficients (16 bits each, at full size
 * whatever the shrink), an interlaced PNG, a GIF frame (libnsgif's and libvips' copies), WebP and HEIF (libheif's
 * planes and the converted picture). The others hold a band of rows.
 */
static int64_t decode_memory(VipsImage *im, enum image_type t, const struct layout *l)
{
    int64_t w = vips_image_get_width(im), h = vips_image_get_page_height(im), bands = vips_image_get_bands(im);
    int64_t sample = (int64_t)vips_format_sizeof(vips_image_get_format(im)), rows = w * bands * sample * 256;
    int64_t whole = 0;

    switch (t) {
    case IMAGE_JPEG: whole = l->jpeg.scans > 1 ? w * h * bands * 2 : 0; break;
    case IMAGE_PNG: whole = l->png.interlace ? w * h * bands * sample : 0; break;
    case IMAGE_GIF: whole = w * h * 4 * 2; break;
    case IMAGE_WEBP: whole = w * h * 4; break;
    case IMAGE_AVIF:
    case IMAGE_HEIC: whole = w * h * bands * sample * 2; break;
    case IMAGE_NONE: break;
    }
    return whole > rows ? whole : rows;
}

/*
 * The image to resize: the one already open, unless the format can decode at a
 * reduced size (JPEG by powers of two, WebP by any scale) or more than one of
 * its `frames` is wanted, in which case it is opened again so that no more
 * pixels are decoded than the result needs. Takes over `header`; returns NULL
 * on failure.
 */
static VipsImage *open_for_resize(VipsImage *header, const uint8_t *src, size_t len, enum image_type t, int max_size,
                                  int frames)
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
    } else if (t == IMAGE_WEBP && (longest > max_size || frames > 1)) {
        double scale = longest > max_size ? (double)max_size / longest : 1.0;
        r = vips_webpload_buffer(buf, len, &im, "scale", scale, "n", frames, SEQUENTIAL, NULL);
    } else if (t == IMAGE_GIF && frames > 1) {
        r = vips_gifload_buffer(buf, len, &im, "n", frames, SEQUENTIAL, NULL);
    }
    if (im == NULL && r == 0)
        return header;
    g_object_unref(header);
    return r == 0 ? im : NULL;
}

/* The result: a copy of `data`, which belongs to libvips or to the caller. */
static void set_output(struct image_out *out, const void *data, size_t len, enum image_type t, int width, int height,
                       int frames)
{
    if ((out->data = malloc(len)) == NULL)
        abort();
    memcpy(out->data, data, len);
    out->len = len;
    out->type = t;
    out->width = width;
    out->height = height;
    out->frames = frames;
}

/* Replaces *im with the result of the step just done. */
static void swap_in(VipsImage **im, VipsImage *next)
{
    g_object_unref(*im);
    *im = next;
}

/* `w` x `h` made to fit `size` x `size` like vips_thumbnail: the longer side exact, the other rounded. */
static void fit_size(int w, int h, int size, int *tw, int *th)
{
    *tw = w >= h ? size : (int)((double)w * size / h + 0.5);
    *th = h > w ? size : (int)((double)h * size / w + 0.5);
    *tw = *tw < 1 ? 1 : *tw;
    *th = *th < 1 ? 1 : *th;
}

/*
 * Each of the `frames` frames stacked in `in` resized to `tw` x `th` with lanczos3, into *out. Frames are
 * resized apart and joined again, so that every frame comes out exactly `th` rows high and the kernel never
 * blends the bottom of one frame into the top of the next. Returns 0, or -1 with libvips' reason.
 */
static int fit_frames(VipsImage *in, int frames, int tw, int th, VipsImage **out)
{
    int w = vips_image_get_width(in), ph = vips_image_get_height(in) / frames, r = 0;
    double hscale = (double)tw / w, vscale = (double)th / ph;
    VipsImage *holder, **t;

    if (frames == 1)
        return vips_resize(in, out, hscale, "vscale", vscale, NULL);
    holder = vips_image_new();
    t = (VipsImage **)vips_object_local_array(VIPS_OBJECT(holder), 2 * frames);
    for (int i = 0; i < frames && r == 0; i++) {
        r = vips_extract_area(in, &t[i], 0, i * ph, w, ph, NULL) ||
            vips_resize(t[i], &t[frames + i], hscale, "vscale", vscale, NULL);
    }
    if (r == 0)
        r = vips_arrayjoin(t + frames, out, frames, "across", 1, NULL);
    g_object_unref(holder);
    return r != 0 ? -1 : 0;
}

/*
 * libvips 8.14's webpsave writes an EXIF chunk of its own (the resolution, some 200 bytes) whatever `strip` says,
 * which would make every small variant a tenth bigger. The chunk is cut out of the RIFF container, the VP8X flag
 * that announces it cleared, and the VP8X header dropped too when nothing else needs it. `buf` is our encoder's
 * output; *len shrinks in place.
 */
static void webp_drop_exif(uint8_t *buf, size_t *len)
{
    size_t n = *len, off = 12, vp8x = 0;

    if (n < 12 || memcmp(buf, "RIFF", 4) != 0 || memcmp(buf + 8, "WEBP", 4) != 0)
        return;
    while (off + 8 <= n) {
        size_t size =
            (size_t)buf[off + 4] | (size_t)buf[off + 5] << 8 | (size_t)buf[off + 6] << 16 | (size_t)buf[off + 7] << 24;
        size_t whole = 8 + size + (size & 1);
        if (whole > n - off)
            return;
        if (memcmp(buf + off, "EXIF", 4) == 0) {
            memmove(buf + off, buf + off + whole, n - off - whole);
            n -= whole;
            continue;
        }
        if (memcmp(buf + off, "VP8X", 4) == 0 && size >= 10)
            vp8x = off;
        off += whole;
    }
    if (vp8x != 0) {
        buf[vp8x + 8] &= (uint8_t)~0x08;
        /* A still picture without alpha, ICC or XMP: the simple format, one VP8 or VP8L chunk. */
        if (buf[vp8x + 8] == 0) {
            size_t whole = 8 + 10;
            memmove(buf + vp8x, buf + vp8x + whole, n - vp8x - whole);
            n -= whole;
        }
    }
    buf[4] = (uint8_t)(n - 8);
    buf[5] = (uint8_t)((n - 8) >> 8);
    buf[6] = (uint8_t)((n - 8) >> 16);
    buf[7] = (uint8_t)((n - 8) >> 24);
    *len = n;
}

/* `im` as a lossy WebP at `q` and `effort` (4 is libvips' and sharp's default), without metadata, into a g_malloc()ed
 * *buf; 0, or -1 with libvips' reason. */
static int webp_save(VipsImage *im, int q, int effort, void **buf, size_t *len)
{
    if (vips_webpsave_buffer(im, buf, len, "Q", q, "effort", effort, "strip", TRUE, NULL) != 0)
        return -1;
    webp_drop_exif(*buf, len);
    return 0;
}

/* A master between its checks and its encoding. */
struct image_master {
    VipsImage *im;      /* the pipeline that makes its pixels, or with `pixels` the pixels themselves */
    VipsImage *head;    /* what the watchdog stops: the pipeline's loader (see master_pipeline()), or the pixels */
    bool pixels;        /* `im` is in memory */
    int tw, th, frames; /* the size out->width, out->height and out->frames will have */
    struct vipsbudget reserve; /* the decoder's memory, from the checks to the encoding or until its pixels are made */
};

/*
 * The pipeline of the master into m->im: upright, sRGB, alpha kept, within max_size, m->frames frames of it, 8
 * bits, with the frames' height and timing; image_master_finish() encodes it as a WebP at IMAGE_MASTER_QUALITY
 * without metadata. Alpha is premultiplied while resampling, so that transparent pixels' colours do not bleed into
 * the visible ones. Takes over `header`; returns 0, or -1 with libvips' reason in its error buffer.
 *
 * IMAGE_MASTER_QUALITY (bench/quality.mjs, "master"): JPEG-85 variants at 128
 * and 256 px lose 0.0216 of SSIM made from the source. Made from a master
 * instead, they lose more; beyond what a q100 master costs them (resampling
 * twice), a q85 master adds 10% to their loss, q90 6% and q95 1%, for masters
 * 1.6 and 2.8 times as big as q85's. 90 keeps the master's share of the loss
 * well under a tenth.
 */
static int master_pipeline(VipsImage *header, const uint8_t *src, size_t len, enum image_type t,
                           const struct image_opts *o, struct vipsbudget *b, struct image_master *m)
{
    int frames = m->frames, max_size = frames > 1 && o->max_size > IMAGE_MASTER_ANIMATED_MAX_SIZE
                                           ? IMAGE_MASTER_ANIMATED_MAX_SIZE
                                           : o->max_size;
    VipsImage *im = open_for_resize(header, src, len, t, max_size, frames), *next = NULL;
    int *delay = NULL, ndelay = 0, w, h, tw, th;
    bool alpha;

    if (im == NULL)
        return -1;
    /*
     * libvips clears the kill flag of the image it writes as it starts writing it, which would miss a deadline
     * already past; the loader is never the one written.
     */
    m->head = g_object_ref(im);
    vipsbudget_watch(b, im);
    /* As vips_thumbnail does, only still pictures are turned: an animation's frames are one tall image here. */
    if (frames == 1 && vips_image_get_orientation(im) > 1) {
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

    w = vips_image_get_width(im);
    h = vips_image_get_height(im) / frames;
    tw = w;
    th = h;
    if (w > max_size || h > max_size) {
        alpha = vips_image_hasalpha(im);
        fit_size(w, h, max_size, &tw, &th);
        if (alpha) {
            if (vips_premultiply(im, &next, NULL) != 0)
                goto fail;
            swap_in(&im, next);
        }
        if (fit_frames(im, frames, tw, th, &next) != 0)
            goto fail;
        swap_in(&im, next);
        if (alpha) {
            if (vips_unpremultiply(im, &next, NULL) != 0)
                goto fail;
            swap_in(&im, next);
        }
    }
    if (vips_image_get_format(im) != VIPS_FORMAT_UCHAR) {
        if (vips_cast_uchar(im, &next, NULL) != 0)
            goto fail;
        swap_in(&im, next);
    }
    /* The frames' height and timing as they are now; the loaders give a delay for every frame of the source. */
    if (vips_copy(im, &next, NULL) != 0)
        goto fail;
    swap_in(&im, next);
    if (frames > 1) {
        vips_image_set_int(im, VIPS_META_PAGE_HEIGHT, th);
        if (vips_image_get_typeof(im, "delay") && vips_image_get_array_int(im, "delay", &delay, &ndelay) == 0 &&
            ndelay > frames) {
            int *kept = g_memdup2(delay, (guint)frames * sizeof(int));
            vips_image_set_array_int(im, "delay", kept, frames);
            g_free(kept);
        }
    } else {
        vips_image_remove(im, VIPS_META_PAGE_HEIGHT);
    }
    m->im = im;
    m->tw = tw;
    m->th = th;
    return 0;

fail:
    g_object_unref(im);
    return -1;
}

/* Where the picture ends by its container's structure, as the checks before decoding found it; 0 if nowhere. */
static size_t picture_end(const uint8_t *src, size_t len, enum image_type t, const struct layout *l)
{
    switch (t) {
    case IMAGE_JPEG: return l->jpeg.end;
    case IMAGE_PNG: return l->png.end;
    case IMAGE_GIF: return imgscan_gif_end(src, len);
    case IMAGE_WEBP: return imgscan_webp_end(src, len);
    case IMAGE_AVIF:
    case IMAGE_HEIC: return l->bmff.end;
    case IMAGE_NONE: break;
    }
    return 0;
}

/*
 * The original, once every pixel of its first frame decodes (so that a truncated or corrupt one is not kept),
 * up to the end of its picture: whatever follows, such as an archive that would make the file a polyglot, is
 * dropped. Returns 0, 1 when there is no end, or -1 with libvips' reason in its error buffer.
 */
static int keep_original(VipsImage *im, const uint8_t *src, size_t len, enum image_type t, const struct layout *l,
                         struct vipsbudget *b, struct image_out *out)
{
    size_t end = picture_end(src, len, t, l);
    double avg;

    vipsbudget_watch(b, im);
    if (vips_avg(im, &avg, NULL) != 0)
        return -1;
    if (end == 0)
        return 1;
    set_output(out, src, end, t, vips_image_get_width(im), vips_image_get_page_height(im), vips_image_get_n_pages(im));
    return 0;
}

/* The checks that need no decoder: the structure of JPEG, PNG and ISO-BMFF files. */
static int check_layout(const uint8_t *src, size_t len, enum image_type t, const struct image_opts *o, struct layout *l,
                        struct image_out *out)
{
    memset(l, 0, sizeof(*l));
    switch (t) {
    case IMAGE_JPEG:
        imgscan_jpeg(src, len, &l->jpeg);
        if (l->jpeg.scans > IMAGE_MAX_SCANS)
            return refuse(out, IMAGE_REFUSED_SCANS, "too many scans (%u; at most %d)", l->jpeg.scans, IMAGE_MAX_SCANS);
        break;
    case IMAGE_PNG: imgscan_png(src, len, &l->png); break;
    case IMAGE_AVIF:
    case IMAGE_HEIC:
        /* libheif refuses sizes past its own limits with a message of its own; this says which limit it is. */
        imgscan_bmff(src, len, &l->bmff);
        if ((int64_t)l->bmff.width * l->bmff.height > o->max_pixels)
            return refuse(out, IMAGE_REFUSED_PIXELS,
                          "too many pixels (%ux%u in its header; max_source_pixels limits them)", l->bmff.width,
                          l->bmff.height);
        break;
    default: break;
    }
    return 0;
}

/*
 * The checks of a source before its pixels are decoded, into *t, *l and *im (its header open), with the memory
 * its decoder needs reserved in `b`. Returns 0, or -EINVAL with the refusal in `out`.
 */
static int check_source(const uint8_t *src, size_t len, const struct image_opts *o, enum image_type *t,
                        struct layout *l, VipsImage **im, struct vipsbudget *b, struct image_out *out)
{
    const char *name;
    int64_t pixels, need;
    int r;

    *t = image_sniff(src, len, &name);
    if (*t == IMAGE_NONE)
        return refuse(out, IMAGE_REFUSED_FORMAT, "unsupported format (%s)", name);
    if (check_layout(src, len, *t, o, l, out) != 0)
        return -EINVAL;
    if ((*im = open_header(src, len, *t)) == NULL)
        return vips_refusal(out, "cannot read the header");

    /* Every frame of an animation counts: a thousand small frames decode like one huge picture. */
    pixels = (int64_t)vips_image_get_width(*im) * vips_image_get_page_height(*im) * vips_image_get_n_pages(*im);
    if (pixels > o->max_pixels) {
        r = refuse(out, IMAGE_REFUSED_PIXELS, "too many pixels (%dx%d, %d frame(s); max_source_pixels limits them)",
                   vips_image_get_width(*im), vips_image_get_page_height(*im), vips_image_get_n_pages(*im));
        g_object_unref(*im);
        return r;
    }
    /* libpng inflates whatever follows the last row before it reports the picture done, so that is not left to it. */
    if (*t == IMAGE_PNG && l->png.data_len > 0 && imgscan_png_overlong(src, len, l->png.data_len)) {
        g_object_unref(*im);
        return refuse(out, IMAGE_REFUSED_TRAILING_DATA, "image data goes on past the last row (%llu bytes)",
                      (unsigned long long)l->png.data_len);
    }
    need = decode_memory(*im, *t, l);
    if (o->memory_bytes > 0) {
        if (need > o->memory_bytes) {
            g_object_unref(*im);
            return refuse(out, IMAGE_REFUSED_MEMORY, "decoding needs about %lld MB; image_memory_mb allows %lld",
                          (long long)(need >> 20) + 1, (long long)(o->memory_bytes >> 20));
        }
        vipsbudget_reserve(b, need, o->memory_bytes);
    }
    return 0;
}

/* The refusal of a picture whose decoding or encoding failed (r < 0), or whose structure has no end (r > 0). */
static int decode_refusal(struct image_out *out, int r, bool expired, const struct image_opts *o)
{
    if (r > 0)
        return refuse(out, IMAGE_REFUSED_CORRUPT, "no end of picture in its structure");
    if (expired)
        return refuse(out, IMAGE_REFUSED_TIMEOUT, "not done within image_timeout_ms (%d ms)", o->timeout_ms);
    return vips_refusal(out, "cannot decode");
}

int image_process(const uint8_t *src, size_t len, const struct image_opts *o, struct image_out *out)
{
    enum image_type t;
    struct vipsbudget b = {0};
    struct layout l;
    struct image_master *m;
    VipsImage *im;
    bool expired;
    int r;

    if (o->resize)
        return (r = image_master_begin(src, len, o, false, &m, out)) != 0 ? r : image_master_finish(m, o, out);
    memset(out, 0, sizeof(*out));
    if ((r = check_source(src, len, o, &t, &l, &im, &b, out)) != 0)
        return r;
    vipsbudget_start(&b, o->timeout_ms);
    r = keep_original(im, src, len, t, &l, &b, out);
    g_object_unref(im);
    expired = vipsbudget_stop(&b);
    vipsbudget_release(&b);
    return r == 0 ? 0 : decode_refusal(out, r, expired, o);
}

int image_master_begin(const uint8_t *src, size_t len, const struct image_opts *o, bool in_memory,
                       struct image_master **m, struct image_out *out)
{
    struct image_master *mm;
    struct vipsbudget b = {0};
    enum image_type t;
    struct layout l;
    VipsImage *im, *mem;
    bool expired;
    int r;

    memset(out, 0, sizeof(*out));
    *m = NULL;
    if (!o->resize)
        return -EINVAL;
    if ((mm = calloc(1, sizeof(*mm))) == NULL)
        abort();
    if ((r = check_source(src, len, o, &t, &l, &im, &mm->reserve, out)) != 0) {
        free(mm);
        return r;
    }
    /* Only GIF and WebP animate here; a HEIF's other images are alternatives to its primary one, not frames. */
    mm->frames = t == IMAGE_GIF || t == IMAGE_WEBP ? vips_image_get_n_pages(im) : 1;
    if (mm->frames > (o->max_frames > 1 ? o->max_frames : 1))
        mm->frames = o->max_frames > 1 ? o->max_frames : 1;

    vipsbudget_start(&b, o->timeout_ms);
    r = master_pipeline(im, src, len, t, o, &b, mm);
    /* An animation's pixels would be its frames' worth, and its variants are made from the encoded master anyway. */
    if (r == 0 && in_memory && mm->frames == 1) {
        if ((mem = vips_image_copy_memory(mm->im)) == NULL) {
            r = -1;
        } else {
            /* The pipeline, and with it the decoder, goes, and so does its reservation: a master waiting to be
             * encoded must not hold memory that pictures decoding on every image thread wait for, or the
             * encoding queued behind them would never come. Its pixels are bounded by the download slots. */
            swap_in(&mm->im, mem);
            swap_in(&mm->head, g_object_ref(mem));
            mm->pixels = true;
            vipsbudget_release(&mm->reserve);
        }
    }
    /* Past the deadline, the watchdog may have killed the pipeline, which could then not be encoded. */
    expired = vipsbudget_stop(&b);
    if (r != 0 || expired) {
        image_master_free(mm);
        return decode_refusal(out, -1, expired, o);
    }
    *m = mm;
    return 0;
}

void image_master_size(const struct image_master *m, int *width, int *height, int *frames)
{
    *width = m->tw;
    *height = m->th;
    *frames = m->frames;
}

int image_master_finish(struct image_master *m, const struct image_opts *o, struct image_out *out)
{
    struct vipsbudget b = {0};
    void *webp = NULL;
    size_t wlen = 0;
    bool expired;
    int r;

    memset(out, 0, sizeof(*out));
    vipsbudget_start(&b, o->timeout_ms);
    vipsbudget_watch(&b, m->head);
    r = webp_save(m->im, IMAGE_MASTER_QUALITY, m->frames > 1 ? IMAGE_MASTER_ANIMATED_EFFORT : 4, &webp, &wlen);
    expired = vipsbudget_stop(&b);
    if (r == 0) {
        set_output(out, webp, wlen, IMAGE_WEBP, m->tw, m->th, m->frames);
        g_free(webp);
    }
    image_master_free(m);
    return r == 0 ? 0 : decode_refusal(out, r, expired, o);
}

void image_master_free(struct image_master *m)
{
    if (m == NULL)
        return;
    if (m->im != NULL)
        g_object_unref(m->im);
    if (m->head != NULL)
        g_object_unref(m->head);
    vipsbudget_release(&m->reserve);
    free(m);
}

void image_out_free(struct image_out *out)
{
    free(out->data);
    out->data = NULL;
    out->len = 0;
}

/* --- generated pictures ---------------------------------------------------------------------------------------- */

/*
 * WebP's and AVIF's qualities of the same mean SSIM as JPEG's, every 5 from 50 (bench/quality.mjs: variants at
 * 128 and 256 px of the resize corpus and three fractal textures, luma SSIM against the variant resized without
 * loss; the mean of three runs, which differ by about 1 in WebP and 2 in AVIF). At JPEG 85 the WebP is 0.89 and
 * the AVIF 0.47 of the JPEG's bytes. From 90 libvips stops subsampling JPEG's and AVIF's chroma, which luma SSIM
 * does not see. Below 50, which was not measured, the qualities fall in proportion to 1.
 */
static const struct {
    uint8_t jpeg, webp, avif;
} quality_map[] = {
    {1, 1, 1},    {50, 73, 51}, {55, 76, 52}, {60, 78, 54}, {65, 81, 56}, {70, 83, 59},
    {75, 85, 61}, {80, 86, 65}, {85, 89, 70}, {90, 93, 80}, {95, 99, 87}, {100, 100, 98},
};

int image_encode_quality(enum image_type t, int quality)
{
    size_t i = 1;

    if (t == IMAGE_PNG || t == IMAGE_GIF)
        return 100;
    if (t != IMAGE_WEBP && t != IMAGE_AVIF)
        return quality;
    quality = quality < 1 ? 1 : quality > 100 ? 100 : quality;
    while (quality_map[i].jpeg < quality)
        i++;
    /* Linear between the two measured qualities around it, rounded. */
    int j0 = quality_map[i - 1].jpeg, j1 = quality_map[i].jpeg;
    int q0 = t == IMAGE_WEBP ? quality_map[i - 1].webp : quality_map[i - 1].avif;
    int q1 = t == IMAGE_WEBP ? quality_map[i].webp : quality_map[i].avif;
    return q0 + ((q1 - q0) * (quality - j0) + (j1 - j0) / 2) / (j1 - j0);
}

int image_encode_rgb(const uint8_t *rgb, int w, int h, enum image_type t, int quality, struct image_out *out)
{
    VipsImage *im;
    void *buf = NULL;
    size_t len = 0;
    int q = image_encode_quality(t, quality), r;

    memset(out, 0, sizeof(*out));
    if (w < 1 || h < 1 || quality < 1 || quality > 100)
        return -EINVAL;
    im = vips_image_new_from_memory(rgb, (size_t)w * h * 3, w, h, 3, VIPS_FORMAT_UCHAR);
    if (im == NULL)
        return -EIO;
    switch (t) {
    case IMAGE_JPEG:
        r = vips_jpegsave_buffer(im, &buf, &len, "Q", q, "optimize_coding", TRUE, "strip", TRUE, NULL);
        break;
    case IMAGE_WEBP: r = webp_save(im, q, 4, &buf, &len); break;
    case IMAGE_AVIF:
        r = vips_heifsave_buffer(im, &buf, &len, "Q", q, "compression", VIPS_FOREIGN_HEIF_COMPRESSION_AV1, "strip",
                                 TRUE, NULL);
        break;
    case IMAGE_PNG: r = vips_pngsave_buffer(im, &buf, &len, "compression", 9, "strip", TRUE, NULL); break;
    default: g_object_unref(im); return -EINVAL;
    }
    g_object_unref(im);
    if (r != 0) {
        snprintf(out->error, sizeof(out->error), "%s", vips_error_buffer());
        vips_error_clear();
        return -EIO;
    }
    set_output(out, buf, len, t, w, h, 1);
    g_free(buf);
    return 0;
}

/* --- variants --------------------------------------------------------------------------------------------------- */

/* `im` encoded as `t` at JPEG's `quality`, into a g_malloc()ed *buf; 0, or -1 with libvips' reason. */
static int save_as(VipsImage *im, enum image_type t, int quality, void **buf, size_t *len)
{
    int q = image_encode_quality(t, quality);

    switch (t) {
    case IMAGE_JPEG: return vips_jpegsave_buffer(im, buf, len, "Q", q, "optimize_coding", TRUE, "strip", TRUE, NULL);
    case IMAGE_WEBP:
        /* Animations at the animated masters' effort, for the same reason: their frames must fit the timeout. */
        return webp_save(im, q, vips_image_get_n_pages(im) > 1 ? IMAGE_MASTER_ANIMATED_EFFORT : 4, buf, len);
    case IMAGE_AVIF:
        return vips_heifsave_buffer(im, buf, len, "Q", q, "compression", VIPS_FOREIGN_HEIF_COMPRESSION_AV1, "strip",
                                    TRUE, NULL);
    case IMAGE_PNG: return vips_pngsave_buffer(im, buf, len, "strip", TRUE, NULL);
    case IMAGE_GIF: return vips_gifsave_buffer(im, buf, len, "strip", TRUE, NULL);
    default: break;
    }
    vips_error("image", "no encoder for that type");
    return -1;
}

static bool variant_type(enum image_type t)
{
    return t == IMAGE_JPEG || t == IMAGE_WEBP || t == IMAGE_AVIF || t == IMAGE_PNG || t == IMAGE_GIF;
}

/* The variant's failure: libvips' reason, one line of it, or the timeout. */
static int variant_error(struct image_out *out, bool expired, int timeout_ms)
{
    char *msg = vips_error_buffer_copy(), *nl = strchr(msg, '\n');

    if (nl != NULL)
        *nl = '\0';
    if (expired)
        snprintf(out->error, sizeof(out->error), "not done within %d ms", timeout_ms);
    else
        snprintf(out->error, sizeof(out->error), "%s", msg[0] ? msg : "no detail");
    g_free(msg);
    return -EIO;
}

static bool box_valid(const struct image_box *bx)
{
    const int v[] = {bx->scale_w, bx->scale_h, bx->crop_w, bx->crop_h, bx->canvas_w, bx->canvas_h};

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        if (v[i] < 1 || v[i] > IMAGE_VARIANT_MAX_SIZE)
            return false;
    return bx->crop_w <= bx->scale_w && bx->crop_h <= bx->scale_h && bx->canvas_w >= bx->crop_w &&
           bx->canvas_h >= bx->crop_h && bx->gravity >= IMAGE_GRAVITY_CENTRE && bx->gravity <= IMAGE_GRAVITY_WEST;
}

/*
 * Each frame of `in`, already scaled to the box, cut at its gravity and centred on its canvas (alpha added, so
 * that the padding is clear), into *out. Frames are cut and padded apart and joined again, as in fit_frames(), so
 * that neither the cut nor the padding crosses from one frame into the next. Returns 0, or -1 with libvips' reason.
 */
static int box_frames(VipsImage *in, const struct image_box *bx, VipsImage **out)
{
    int w = vips_image_get_width(in), ph = vips_image_get_page_height(in), frames = vips_image_get_height(in) / ph;
    int x = (w - bx->crop_w) / 2, y = (ph - bx->crop_h) / 2, r = 0;
    bool cut = bx->crop_w != w || bx->crop_h != ph, pad = bx->canvas_w != bx->crop_w || bx->canvas_h != bx->crop_h;
    VipsImage *holder = vips_image_new(), *joined = NULL;
    VipsImage **t = (VipsImage **)vips_object_local_array(VIPS_OBJECT(holder), 5 * frames);
    VipsArrayDouble *clear = vips_array_double_newv(1, 0.0);

    switch (bx->gravity) {
    case IMAGE_GRAVITY_NORTH: y = 0; break;
    case IMAGE_GRAVITY_SOUTH: y = ph - bx->crop_h; break;
    case IMAGE_GRAVITY_EAST: x = w - bx->crop_w; break;
    case IMAGE_GRAVITY_WEST: x = 0; break;
    default: break;
    }
    for (int i = 0; i < frames && r == 0; i++) {
        VipsImage **f = t + 4 * i, *im = in;
        /*
         * Attention is worked out on a still picture only: an animation's frames must all be cut alike. It reads
         * the picture more than once, and vips_thumbnail reads its source once from top to bottom, so the scaled
         * picture (at most IMAGE_VARIANT_MAX_SIZE square) is made in memory first.
         */
        if (cut && bx->gravity == IMAGE_GRAVITY_SMART && frames == 1) {
            r = (f[0] = vips_image_copy_memory(im)) == NULL ||
                vips_smartcrop(f[0], &f[1], bx->crop_w, bx->crop_h, "interesting", VIPS_INTERESTING_ATTENTION, NULL);
        } else if (cut || frames > 1) {
            r = vips_extract_area(im, &f[1], x, i * ph + y, bx->crop_w, bx->crop_h, NULL);
        } else {
            f[1] = g_object_ref(im);
        }
        im = f[1];
        if (r == 0 && pad && !vips_image_hasalpha(im)) {
            r = vips_bandjoin_const1(im, &f[2], 255, NULL);
            im = f[2];
        }
        if (r == 0 && pad) {
            r = vips_embed(im, &f[3], (bx->canvas_w - bx->crop_w) / 2, (bx->canvas_h - bx->crop_h) / 2, bx->canvas_w,
                           bx->canvas_h, "extend", VIPS_EXTEND_BACKGROUND, "background", clear, NULL);
            im = f[3];
        }
        if (r == 0)
            t[4 * frames + i] = g_object_ref(im);
    }
    if (r == 0)
        r = vips_arrayjoin(t + 4 * frames, &joined, frames, "across", 1, NULL);
    /* A copy, so that the frames' new height can be set for the encoders. */
    if (r == 0 && (r = vips_copy(joined, out, NULL)) == 0)
        vips_image_set_int(*out, VIPS_META_PAGE_HEIGHT, bx->canvas_h);
    if (joined != NULL)
        g_object_unref(joined);
    vips_area_unref(VIPS_AREA(clear));
    g_object_unref(holder);
    return r != 0 ? -1 : 0;
}

static bool spec_valid(const struct image_variant_spec *s)
{
    return (s->size == 0 ? box_valid(&s->box) : s->size >= 1 && s->size <= IMAGE_VARIANT_MAX_SIZE) &&
           variant_type(s->type) && s->quality >= 1 && s->quality <= 100 && s->timeout_ms >= 0;
}

/*
 * The variant of a master given either as its bytes (`master`, `len`, with `frames` to keep) or as its pixels in
 * memory (`pixels`), once the spec is known to be valid. Returns as image_variant().
 */
static int make_variant(const uint8_t *master, size_t len, bool frames, VipsImage *pixels,
                        const struct image_variant_spec *s, struct image_out *out)
{
    bool box = s->size == 0;
    int width = box ? s->box.scale_w : s->size, r;
    int height = box ? s->box.scale_h : s->width_only ? VIPS_MAX_COORD : s->size;
    VipsSize size = box ? VIPS_SIZE_FORCE : VIPS_SIZE_DOWN;
    VipsImage *base = vips_image_new(), **t = (VipsImage **)vips_object_local_array(VIPS_OBJECT(base), 3), *im;
    struct vipsbudget b = {0};
    void *buf = NULL;
    size_t n = 0;
    bool expired;

    /*
     * vips_thumbnail shrinks on load (JPEG, WebP), turns by EXIF (older originals), converts to sRGB, resamples
     * premultiplied and never enlarges, or for a box makes each frame exactly its size; of an animation it keeps
     * each frame's height whole.
     */
    vipsbudget_start(&b, s->timeout_ms);
    if (pixels != NULL)
        r = vips_thumbnail_image(pixels, &t[0], width, "height", height, "size", size, NULL);
    else
        r = vips_thumbnail_buffer((void *)master, len, &t[0], width, "height", height, "size", size, "option_string",
                                  frames ? "n=-1" : "", NULL);
    im = t[0];
    if (r == 0 && box) {
        /* The smart cut makes the scaled picture at once, within the budget too. */
        vipsbudget_watch(&b, im);
        r = box_frames(im, &s->box, &t[1]);
        im = t[1];
    }
    if (r == 0 && s->type == IMAGE_JPEG && vips_image_hasalpha(im)) {
        VipsArrayDouble *white = vips_array_double_newv(1, 255.0);
        r = vips_flatten(im, &t[2], "background", white, NULL);
        vips_area_unref(VIPS_AREA(white));
        im = t[2];
    }
    if (r == 0) {
        vipsbudget_watch(&b, im);
        r = save_as(im, s->type, s->quality, &buf, &n);
    }
    expired = vipsbudget_stop(&b);
    if (r != 0) {
        g_object_unref(base);
        return variant_error(out, expired, s->timeout_ms);
    }
    set_output(out, buf, n, s->type, vips_image_get_width(im), vips_image_get_page_height(im),
               vips_image_get_height(im) / vips_image_get_page_height(im));
    g_free(buf);
    g_object_unref(base);
    return 0;
}

int image_variant(const uint8_t *master, size_t len, const struct image_variant_spec *s, struct image_out *out)
{
    const char *name;
    enum image_type mt = image_sniff(master, len, &name);
    /* Only GIF and WebP masters have frames to keep, and only GIF and WebP variants can show them. */
    bool frames =
        s->animated && (s->type == IMAGE_WEBP || s->type == IMAGE_GIF) && (mt == IMAGE_GIF || mt == IMAGE_WEBP);

    memset(out, 0, sizeof(*out));
    if (!spec_valid(s))
        return -EINVAL;
    if (mt == IMAGE_NONE) {
        snprintf(out->error, sizeof(out->error), "the master is no picture (%s)", name);
        return -EIO;
    }
    return make_variant(master, len, frames, NULL, s, out);
}

int image_master_variant(const struct image_master *m, const struct image_variant_spec *s, struct image_out *out)
{
    memset(out, 0, sizeof(*out));
    if (!spec_valid(s))
        return -EINVAL;
    if (!m->pixels)
        return -ENOTSUP;
    /* Still pictures only: there are no frames to keep. */
    return make_variant(NULL, 0, false, m->im, s, out);
}

/* --- thumbnails for summaries ------------------------------------------------------------------------------------ */

int image_thumbnail_rgb(const uint8_t *src, size_t len, int size, uint8_t **rgb, int *width, int *height)
{
    VipsImage *base = vips_image_new(), **t = (VipsImage **)vips_object_local_array(VIPS_OBJECT(base), 4);
    VipsImage *im;
    size_t n;
    void *mem;

    *rgb = NULL;
    /* Pictures stored here were checked when they were downloaded; the thumbnail shrinks on load, never enlarges. */
    if (vips_thumbnail_buffer((void *)src, len, &t[0], size, "height", size, "size", VIPS_SIZE_DOWN, NULL) != 0 ||
        vips_colourspace(t[0], &t[1], VIPS_INTERPRETATION_sRGB, NULL) != 0) {
        g_object_unref(base);
        vips_error_clear();
        return -EINVAL;
    }
    im = t[1];
    if (vips_image_hasalpha(im)) {
        /* Flattened on white, as resized pictures are. */
        double white[3] = {255, 255, 255};
        VipsArrayDouble *bg = vips_array_double_new(white, 3);
        int r = vips_flatten(im, &t[2], "background", bg, NULL);
        vips_area_unref(VIPS_AREA(bg));
        if (r != 0) {
            g_object_unref(base);
            vips_error_clear();
            return -EINVAL;
        }
        im = t[2];
    }
    if (vips_cast_uchar(im, &t[3], NULL) != 0 || vips_image_get_bands(t[3]) != 3 ||
        (mem = vips_image_write_to_memory(t[3], &n)) == NULL) {
        g_object_unref(base);
        vips_error_clear();
        return -EINVAL;
    }
    *width = vips_image_get_width(t[3]);
    *height = vips_image_get_height(t[3]);
    /* vips' memory is g_malloc()ed: copied so that callers free() it like every other buffer. */
    if ((*rgb = malloc(n)) == NULL)
        abort();
    memcpy(*rgb, mem, n);
    g_free(mem);
    g_object_unref(base);
    return 0;
}
