/*
 * image.h -- pictures checked and resized with libvips: the format decided by magic bytes, pixels, scans and
 * image data bounded before decoding, and every decode within a time budget and a memory budget.
 */
#ifndef PFP_IMAGE_H
#define PFP_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum image_type { IMAGE_NONE, IMAGE_JPEG, IMAGE_PNG, IMAGE_GIF, IMAGE_WEBP, IMAGE_AVIF, IMAGE_HEIC };

/*
 * The format of `p`, from its first bytes only. For formats that are refused
 * (SVG, PDF, TIFF, BMP...) or unknown, returns IMAGE_NONE; `name` names what
 * was recognised ("svg", "tiff"...) or "unknown", for logs.
 */
enum image_type image_sniff(const uint8_t *p, size_t n, const char **name);

/* "image/jpeg" and so on; "application/octet-stream" for IMAGE_NONE. */
const char *image_mime(enum image_type t);

/*
 * Progressive JPEGs have about ten scans (libjpeg's default script has 10, and encoders that optimise scans stay
 * within a few dozen); each scan costs the decoder a pass over every block of the picture, so more are refused.
 */
#define IMAGE_MAX_SCANS 100

/*
 * The WebP quality of masters. Every variant is made from the master, so its loss is paid once more by each of
 * them; image.c says how this figure was measured.
 */
#define IMAGE_MASTER_QUALITY 90

/*
 * An animated master is made smaller, and encoded with less effort, than a still one, so that 100 frames fit
 * image_timeout_ms. libwebp's animation encoder takes about twice as long at its default effort, 4, as at 2 (100
 * frames of 480x480 texture: 2.4 s against 1.3 s, 1 % more bytes). At effort 2, 100 frames of 256x256 become a
 * master in 0.3 s, of 400x400 in 1.0 s, of 480x480 in 1.3 s, and of 640x640 (made 512x512) in 3.0 s, past the
 * default 2000 ms: frames that change everywhere, the worst case, on a 2-core machine that had other work.
 */
#define IMAGE_MASTER_ANIMATED_MAX_SIZE 512
#define IMAGE_MASTER_ANIMATED_EFFORT   2

struct image_opts {
    bool resize;          /* false: keep the original once it is known to decode */
    int max_size;         /* the master fits max_size x max_size (master_max_size; an animated one, at most
                             IMAGE_MASTER_ANIMATED_MAX_SIZE), never enlarged */
    int quality;          /* JPEG's scale (image_quality); the master's own quality is IMAGE_MASTER_QUALITY */
    int64_t max_pixels;   /* width x height x frames a source may have */
    int timeout_ms;       /* longest a picture may take to check and convert; 0: no limit */
    int64_t memory_bytes; /* decoder memory all pictures being processed at once may take; 0: no limit */
    int max_frames;       /* frames of an animated source the master keeps (max_animation_frames); 0: 1 */
};

/* Why a source was refused. */
enum image_refusal {
    IMAGE_REFUSED_FORMAT,        /* not an accepted format */
    IMAGE_REFUSED_PIXELS,        /* more than max_pixels, from its header */
    IMAGE_REFUSED_SCANS,         /* a JPEG of more than IMAGE_MAX_SCANS scans */
    IMAGE_REFUSED_TRAILING_DATA, /* PNG image data past the last row */
    IMAGE_REFUSED_MEMORY,        /* decoding it alone would take more than memory_bytes */
    IMAGE_REFUSED_TIMEOUT,       /* not done within timeout_ms */
    IMAGE_REFUSED_CORRUPT,       /* the decoder failed, or (keeping originals) it has no end */
    IMAGE_REFUSALS
};

/* "format", "pixels", "scans", "trailing_data", "memory", "timeout", "corrupt". */
const char *image_refusal_name(enum image_refusal r);

/* A checked picture. `data` is malloc()ed; free it with image_out_free(). */
struct image_out {
    uint8_t *data;
    size_t len;
    enum image_type type;
    int width, height;          /* of one frame */
    int frames;                 /* 1 for a still picture */
    enum image_refusal refusal; /* when refused */
    char error[200];            /* why the source was refused */
};

/*
 * Starts libvips for this process: its HEIF module loaded from beside the
 * library when libvips' own search missed it; untrusted loaders blocked, and
 * every loader but those of the accepted formats too; no operation cache; one
 * thread per operation (parallelism comes from the worker pool); and the thread
 * that enforces timeouts. Returns 0, or -EIO when libvips does not start or a
 * loader of an accepted format is missing (the reason is logged, since the
 * callers only learn that pictures cannot be processed at all).
 */
int image_init(void);
/* Shuts libvips down, once every image thread has stopped. */
void image_free(void);

/* Sources refused since start-up, by reason. */
struct image_stats {
    uint64_t refused[IMAGE_REFUSALS];
};
void image_stats(struct image_stats *out);

/*
 * Checks and converts one source picture; safe from any thread. With `resize`,
 * the result is the picture's master, from which every variant is made: a WebP
 * fitting `max_size`, EXIF orientation applied, converted to sRGB, alpha kept,
 * metadata stripped, and of an animation up to `max_frames` frames with their
 * timing (out->frames says how many). Without `resize`, the original up to its end marker (bytes after
 * it, such as an appended archive, are dropped). Returns 0, or -EINVAL with
 * out->refusal and the reason in out->error when the source is not an accepted
 * picture. A picture that needs more memory than is left waits for it.
 */
int image_process(const uint8_t *src, size_t len, const struct image_opts *o, struct image_out *out);

void image_out_free(struct image_out *out);

/*
 * A master on its way, for a caller that wants a variant before the master is encoded: checked, decoded and
 * resized as image_process() does with `resize`, not yet encoded. Safe from any thread, one at a time.
 */
struct image_master;
struct image_variant_spec;

/*
 * The checks, decoding and resizing of image_process() (which `o->resize` must ask for), up to the encoding, into
 * *m. With `in_memory`, a still picture's pixels are made now and held in memory (about 4 bytes a pixel of the
 * master, outside memory_bytes, whose reservation for the decoder ends here) so that image_master_variant() can
 * use them; an animation's never are. `src` must outlive *m. Returns 0,
 * or as image_process() does, with *m NULL.
 */
int image_master_begin(const uint8_t *src, size_t len, const struct image_opts *o, bool in_memory,
                       struct image_master **m, struct image_out *out);

/* The master's size, as out->width, out->height and out->frames will be. */
void image_master_size(const struct image_master *m, int *width, int *height, int *frames);

/*
 * A variant made from the master's pixels held in memory, as image_variant() would make it from the encoded master
 * (without the master's encoding loss). Returns as image_variant() does, or -ENOTSUP when the pixels are not held.
 */
int image_master_variant(const struct image_master *m, const struct image_variant_spec *s, struct image_out *out);

/* Encodes the master into `out`, within `o`'s timeout of its own, and frees `m`. Returns as image_process(). */
int image_master_finish(struct image_master *m, const struct image_opts *o, struct image_out *out);

/* Frees a master that is not to be finished. Accepts NULL. */
void image_master_free(struct image_master *m);

/* The largest `size` of a variant. */
#define IMAGE_VARIANT_MAX_SIZE 4096

/* Which part of a picture a crop keeps: its centre, its most interesting part (libvips' attention), or a side. */
enum image_gravity {
    IMAGE_GRAVITY_CENTRE,
    IMAGE_GRAVITY_SMART,
    IMAGE_GRAVITY_NORTH,
    IMAGE_GRAVITY_SOUTH,
    IMAGE_GRAVITY_EAST,
    IMAGE_GRAVITY_WEST
};

/*
 * A variant of exact geometry, as imgproxy's resizing asks for it, every figure worked out beforehand from the
 * master's size: the master (each frame) resized to `scale_w` x `scale_h` (the aspect ratio is the caller's
 * business: a forced resize changes it), then cut to `crop_w` x `crop_h` (at most the scaled size) at `gravity`,
 * then centred on a canvas of `canvas_w` x `canvas_h` (at least the cut; transparent, or white for JPEG). Each
 * figure is 1 to IMAGE_VARIANT_MAX_SIZE.
 */
struct image_box {
    int scale_w, scale_h;
    int crop_w, crop_h;
    enum image_gravity gravity; /* an animation's frames are all cut alike: IMAGE_GRAVITY_SMART is the centre */
    int canvas_w, canvas_h;
};

/* What one variant of a master is made as. */
struct image_variant_spec {
    int size;             /* 1 to IMAGE_VARIANT_MAX_SIZE: the longer side fits it (the width, with `width_only`);
                             0: `box` says the geometry instead */
    bool width_only;      /* banners: `size` is the width */
    enum image_type type; /* IMAGE_JPEG, IMAGE_WEBP, IMAGE_AVIF, IMAGE_PNG or IMAGE_GIF */
    bool animated;        /* keep the master's frames and timing (IMAGE_WEBP and IMAGE_GIF); else the first frame */
    int quality;          /* 1 to 100, JPEG's scale: image_encode_quality() maps it to `type`'s */
    int timeout_ms;       /* as image_opts; 0: no limit */
    struct image_box box; /* with size 0 */
};

/*
 * Makes one variant of `master`, a picture stored here (a master from
 * image_process(), or any picture that once passed its checks): resized with
 * lanczos3, alpha flattened on white for JPEG and kept otherwise, metadata
 * stripped, never enlarged (a `box` is made exactly as it says, enlarged if
 * so). out->width and out->height are one frame's, and
 * out->data is malloc()ed (image_out_free()). Safe from any thread. Returns 0,
 * -EINVAL for a spec out of range, or -EIO with libvips' reason in out->error
 * (a master that does not decode, or the timeout).
 */
int image_variant(const uint8_t *master, size_t len, const struct image_variant_spec *s, struct image_out *out);

/*
 * Encodes `w` x `h` pixels of 8-bit sRGB, three bytes a pixel and no padding (as identicon_draw() gives them), as
 * `t` (IMAGE_JPEG, IMAGE_WEBP, IMAGE_AVIF or IMAGE_PNG), metadata stripped, at the encoder quality that
 * image_encode_quality() derives from `quality` (1 to 100, JPEG's scale); PNG is lossless. Safe from any thread
 * once image_init() has run. Returns 0, -EINVAL for another type or a size or quality out of range, or -EIO with
 * libvips' reason in out->error.
 */
int image_encode_rgb(const uint8_t *rgb, int w, int h, enum image_type t, int quality, struct image_out *out);

/*
 * The encoder quality for `t` that looks like JPEG at `quality` (1 to 100), for image_encode_rgb() and
 * image_variant(); image.c gives the measurement behind it. 100 for PNG and GIF, whose encoders have no quality.
 */
int image_encode_quality(enum image_type t, int quality);

/*
 * A picture stored here (already checked) made to fit `size` x `size`, never
 * enlarged, as 8-bit sRGB, three bytes a pixel, alpha flattened on white:
 * `*rgb` malloc()ed (free() it), `*width` x `*height` pixels. Any thread.
 * Returns 0, or -EINVAL when it does not decode.
 */
int image_thumbnail_rgb(const uint8_t *src, size_t len, int size, uint8_t **rgb, int *width, int *height);

#endif
