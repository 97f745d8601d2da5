/* blurhash.c -- BlurHash encoding: a DCT of the linear-light picture, quantised and written in base 83. */
#include "blurhash.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

static const char BASE83[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";

static double srgb_to_linear(int value)
{
    double v = value / 255.0;
    return v <= 0.04045 ? v / 12.92 : pow((v + 0.055) / 1.055, 2.4);
}

static int linear_to_srgb(double value)
{
    double v = value < 0 ? 0 : value > 1 ? 1 : value;
    return (int)(v <= 0.0031308 ? v * 12.92 * 255 + 0.5 : (1.055 * pow(v, 1 / 2.4) - 0.055) * 255 + 0.5);
}

static double sign_pow(double v, double e)
{
    return (v < 0 ? -1 : 1) * pow(fabs(v), e);
}

static char *put83(char *p, long value, int digits)
{
    for (int i = 1; i <= digits; i++) {
        long divisor = 1;
        for (int k = 0; k < digits - i; k++)
            divisor *= 83;
        *p++ = BASE83[(value / divisor) % 83];
    }
    return p;
}

static int quantise_ac(double v, double maximum)
{
    double q = floor(sign_pow(v / maximum, 0.5) * 9 + 9.5);
    return q < 0 ? 0 : q > 18 ? 18 : (int)q;
}

int blurhash_encode(const uint8_t *pixels, int width, int height, size_t stride, int bands, int cx, int cy, char *out,
                    size_t outlen)
{
    double linear[256], factors[81][3], maximum = 1;
    double *cosx, *cosy;
    char *p = out;

    if (width < 1 || height < 1 || cx < 1 || cx > 9 || cy < 1 || cy > 9 || (bands != 3 && bands != 4) ||
        stride < (size_t)width * (size_t)bands || outlen < (size_t)(4 + 2 * cx * cy + 1))
        return -EINVAL;
    if ((cosx = malloc(sizeof(*cosx) * (size_t)width * (size_t)cx)) == NULL ||
        (cosy = malloc(sizeof(*cosy) * (size_t)height * (size_t)cy)) == NULL)
        abort();
    for (int i = 0; i < 256; i++)
        linear[i] = srgb_to_linear(i);
    /* The same expressions as the reference, so that the sums, and the hash, come out the same. */
    for (int i = 0; i < cx; i++)
        for (int x = 0; x < width; x++)
            cosx[i * width + x] = cos(M_PI * i * x / width);
    for (int j = 0; j < cy; j++)
        for (int y = 0; y < height; y++)
            cosy[j * height + y] = cos(M_PI * j * y / height);
    for (int j = 0; j < cy; j++) {
        for (int i = 0; i < cx; i++) {
            double norm = i == 0 && j == 0 ? 1 : 2, r = 0, g = 0, b = 0, scale = 1.0 / ((double)width * height);
            double *f = factors[j * cx + i];
            for (int x = 0; x < width; x++) {
                double nx = norm * cosx[i * width + x];
                for (int y = 0; y < height; y++) {
                    const uint8_t *px = pixels + (size_t)y * stride + (size_t)x * (size_t)bands;
                    double basis = nx * cosy[j * height + y];
                    r += basis * linear[px[0]];
                    g += basis * linear[px[1]];
                    b += basis * linear[px[2]];
                }
            }
            f[0] = r * scale;
            f[1] = g * scale;
            f[2] = b * scale;
        }
    }
    free(cosx);
    free(cosy);
    p = put83(p, (cx - 1) + (cy - 1) * 9, 1);
    if (cx * cy > 1) {
        /* The reference scales by the largest AC value, signed: a picture of only negative ones gets 0. */
        double largest = -INFINITY, q;
        for (int k = 1; k < cx * cy; k++)
            for (int c = 0; c < 3; c++)
                largest = factors[k][c] > largest ? factors[k][c] : largest;
        q = floor(largest * 166 - 0.5);
        q = q < 0 ? 0 : q > 82 ? 82 : q;
        maximum = (q + 1) / 166;
        p = put83(p, (long)q, 1);
    } else {
        p = put83(p, 0, 1);
    }
    p = put83(p,
              ((long)linear_to_srgb(factors[0][0]) << 16) + ((long)linear_to_srgb(factors[0][1]) << 8) +
                  linear_to_srgb(factors[0][2]),
              4);
    for (int k = 1; k < cx * cy; k++)
        p = put83(p,
                  quantise_ac(factors[k][0], maximum) * 19 * 19 + quantise_ac(factors[k][1], maximum) * 19 +
                      quantise_ac(factors[k][2], maximum),
                  2);
    *p = '\0';
    return 0;
}
