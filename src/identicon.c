/* identicon.c -- identicons drawn with libvips: a mirrored 5 x 5 cell mask, scaled and coloured. */
#include "identicon.h"

#include <errno.h>
#include <math.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#define CELLS 5

static const double BACKGROUND[3] = {240, 240, 240};

/* A colour from `hue` (0 to 1) at a fixed saturation and lightness, so that every key's colour reads on the ground. */
static void colour(double hue, double rgb[3])
{
    const double s = 0.6, l = 0.5, c = (1 - fabs(2 * l - 1)) * s, m = l - c / 2;
    double h = hue * 6, x = c * (1 - fabs(fmod(h, 2) - 1)), r = 0, g = 0, b = 0;

    if (h < 1)
        r = c, g = x;
    else if (h < 2)
        r = x, g = c;
    else if (h < 3)
        g = c, b = x;
    else if (h < 4)
        g = x, b = c;
    else if (h < 5)
        r = x, b = c;
    else
        r = c, b = x;
    rgb[0] = round((r + m) * 255);
    rgb[1] = round((g + m) * 255);
    rgb[2] = round((b + m) * 255);
}

/*
 * The key's digest rather than the key itself: pubkeys a client chooses could
 * share the bytes a pattern is read from. Cells of the first three columns come
 * from its bits and are mirrored onto the last two; the hue from two more bytes.
 */
static void pattern(const uint8_t pubkey[32], uint8_t mask[CELLS * CELLS], double fg[3])
{
    uint8_t d[SHA256_DIGEST_LENGTH];
    int bit = 0;

    SHA256(pubkey, 32, d);
    for (int x = 0; x < (CELLS + 1) / 2; x++) {
        for (int y = 0; y < CELLS; y++, bit++) {
            uint8_t on = (d[bit / 8] >> (bit % 8)) & 1 ? 255 : 0;
            mask[y * CELLS + x] = mask[y * CELLS + CELLS - 1 - x] = on;
        }
    }
    /* One key in 32,768 has no cell on: it gets the middle column rather than a blank square. */
    if (memchr(mask, 255, sizeof(*mask) * CELLS * CELLS) == NULL)
        for (int y = 0; y < CELLS; y++)
            mask[y * CELLS + CELLS / 2] = 255;
    colour(((d[30] << 8) | d[31]) / 65536.0, fg);
}

int identicon_draw(const uint8_t pubkey[32], int size, uint8_t **rgb)
{
    uint8_t mask[CELLS * CELLS], *pixels = NULL;
    double fg[3];
    VipsObject *scope;
    VipsImage **t;
    /* Cells of whole pixels, and at least half a cell of margin: the pattern reads best with room around it. */
    int cell = size / (CELLS + 1), margin = (size - cell * CELLS) / 2;
    size_t len = 0;

    *rgb = NULL;
    if (size < IDENTICON_MIN_SIZE || size > IDENTICON_MAX_SIZE)
        return -EINVAL;
    pattern(pubkey, mask, fg);
    scope = VIPS_OBJECT(vips_image_new());
    t = (VipsImage **)vips_object_local_array(scope, 6);
    if ((t[0] = vips_image_new_from_memory_copy(mask, sizeof(mask), CELLS, CELLS, 1, VIPS_FORMAT_UCHAR)) != NULL &&
        vips_zoom(t[0], &t[1], cell, cell, NULL) == 0 &&
        vips_embed(t[1], &t[2], margin, margin, size, size, "extend", VIPS_EXTEND_BLACK, NULL) == 0 &&
        (t[3] = vips_image_new_from_image(t[2], fg, 3)) != NULL &&
        (t[4] = vips_image_new_from_image(t[2], BACKGROUND, 3)) != NULL &&
        vips_ifthenelse(t[2], t[3], t[4], &t[5], NULL) == 0)
        pixels = vips_image_write_to_memory(t[5], &len);
    g_object_unref(scope);
    if (pixels == NULL || len != (size_t)size * size * 3) {
        g_free(pixels);
        return -EIO;
    }
    if ((*rgb = malloc(len)) == NULL)
        abort();
    memcpy(*rgb, pixels, len);
    g_free(pixels);
    return 0;
}
