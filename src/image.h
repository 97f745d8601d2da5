/* image.h -- pictures checked and resized with libvips: the format decided by magic bytes, pixels bounded. */
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

struct image_opts {
    bool resize;        /* false: keep the original once it is known to decode */
    int max_size;       /* fit within max_size x max_size, never enlarged */
    int quality;        /* JPEG quality of resized pictures */
    int64_t max_pixels; /* width x height x frames a source may have */
};

/* A checked picture. `data` is malloc()ed; free it with image_out_free(). */
struct image_out {
    uint8_t *data;
    size_t len;
    enum image_type type;
    int width, height;
    char error[200]; /* why the source was refused */
};

/*
 * Starts libvips for this process: untrusted loaders blocked, and every loader
 * but those of the accepted formats too; no operation cache; one thread per
 * operation (parallelism comes from the worker pool). Returns 0 or -EIO.
 */
int image_init(void);
/* Shuts libvips down, once every image thread has stopped. */
void image_free(void);

/*
 * Checks and converts one source picture; safe from any thread. With `resize`,
 * the result is a JPEG fitting `max_size`, EXIF orientation applied, converted
 * to sRGB, alpha flattened on white, metadata stripped, the first frame of an
 * animation. Returns 0, or -EINVAL with the reason in out->error when the
 * source is not an accepted picture (format, pixel count, corrupt data).
 */
int image_process(const uint8_t *src, size_t len, const struct image_opts *o, struct image_out *out);

void image_out_free(struct image_out *out);

#endif
