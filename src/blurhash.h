/*
 * blurhash.h -- the BlurHash of a picture (https://blurha.sh): a short string
 * from which a client draws a blurred placeholder before the picture arrives.
 * Computed as the published algorithm and its npm encoder compute it, on a
 * picture already made small (a few dozen pixels a side): the cost grows with
 * pixels times components.
 */
#ifndef PFP_BLURHASH_H
#define PFP_BLURHASH_H

#include <stddef.h>
#include <stdint.h>

/* The longest hash, 9 x 9 components, with its terminating NUL. */
#define BLURHASH_MAX (4 + 2 * 9 * 9 + 1)

/*
 * Encodes `width` x `height` pixels of 8-bit sRGB, `bands` bytes a pixel (3 or
 * 4: a fourth is ignored), `stride` bytes a row, with `cx` x `cy` components
 * (1 to 9 each), into `out` (4 + 2 * cx * cy characters and a NUL). Returns 0,
 * or -EINVAL for sizes or components out of range, or an `out` too small.
 */
int blurhash_encode(const uint8_t *pixels, int width, int height, size_t stride, int bands, int cx, int cy, char *out,
                    size_t outlen);

#endif
