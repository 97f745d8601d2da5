/*
 * identicon.h -- the picture a pubkey without one gets when the client asks for
 * an identicon: a symmetric 5 x 5 pattern in one colour on a light ground, both
 * derived from the pubkey alone, so that the same key always gives the same
 * pixels and different keys look clearly different.
 */
#ifndef PFP_IDENTICON_H
#define PFP_IDENTICON_H

#include <stddef.h>
#include <stdint.h>

/* Sides an identicon may have, in pixels. */
#define IDENTICON_MIN_SIZE 8
#define IDENTICON_MAX_SIZE 2048

/*
 * Draws the identicon of `pubkey`, `size` x `size` pixels of 8-bit sRGB, three
 * bytes a pixel and no padding, into `*rgb` (free() it). Safe from any thread
 * once image_init() has run. Returns 0, -EINVAL for a size out of range, or
 * -EIO when libvips fails.
 */
int identicon_draw(const uint8_t pubkey[32], int size, uint8_t **rgb);

#endif
