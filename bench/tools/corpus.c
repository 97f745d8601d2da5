/* corpus.c -- pictures for the benchmarks, made with libvips:
 *   corpus distinct DIR N [SIDE]   p0.jpg ... p<N-1>.jpg, SIDE x SIDE (256), each a different colour
 *   corpus resize DIR       JPEG, PNG (with alpha), GIF (animated) and WebP sources of several sizes */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

/* A smooth picture: red across, green down, blue from `seed`, so that sizes and colours vary. */
static VipsImage *gradient(int w, int h, int seed)
{
    VipsImage *xy, *scaled, *r, *g, *b, *rgb, *out;
    VipsImage *bands[3];
    double k[2] = {255.0 / w, 255.0 / h};
    double zero[2] = {0, 0};

    if (vips_xyz(&xy, w, h, NULL) || vips_linear(xy, &scaled, k, zero, 2, NULL) ||
        vips_extract_band(scaled, &r, 0, NULL) || vips_extract_band(scaled, &g, 1, NULL) ||
        vips_linear1(r, &b, 0.0, (double)(seed * 37 % 256), NULL))
        vips_error_exit(NULL);
    bands[0] = r;
    bands[1] = g;
    bands[2] = b;
    if (vips_bandjoin(bands, &rgb, 3, NULL) || vips_cast_uchar(rgb, &out, NULL))
        vips_error_exit(NULL);
    g_object_unref(xy);
    g_object_unref(scaled);
    g_object_unref(r);
    g_object_unref(g);
    g_object_unref(b);
    g_object_unref(rgb);
    return out;
}

static void save(VipsImage *im, const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (vips_image_write_to_file(im, path, NULL))
        vips_error_exit(NULL);
}

static void distinct(const char *dir, int n, int side)
{
    for (int i = 0; i < n; i++) {
        VipsImage *im = gradient(side, side, i), *tinted;
        double mul[3] = {1, 1, 1}, add[3] = {(double)(i % 97), (double)(i / 97 % 97), (double)(i % 13)};
        char name[32];
        if (vips_linear(im, &tinted, mul, add, 3, "uchar", TRUE, NULL))
            vips_error_exit(NULL);
        snprintf(name, sizeof(name), "p%d.jpg", i);
        save(tinted, dir, name);
        g_object_unref(tinted);
        g_object_unref(im);
    }
}

static void resize_corpus(const char *dir)
{
    static const struct {
        const char *name;
        int w, h;
    } jpegs[] = {{"photo-3000.jpg", 3000, 2000},
                 {"photo-1600.jpg", 1600, 1200},
                 {"photo-800.jpg", 800, 600},
                 {"photo-320.jpg", 320, 240}};
    static const struct {
        const char *name;
        int w, h;
    } webps[] = {{"image-1600.webp", 1600, 1600}, {"image-500.webp", 500, 400}};

    for (size_t i = 0; i < sizeof(jpegs) / sizeof(jpegs[0]); i++) {
        VipsImage *im = gradient(jpegs[i].w, jpegs[i].h, (int)i);
        save(im, dir, jpegs[i].name);
        g_object_unref(im);
    }
    for (size_t i = 0; i < sizeof(webps) / sizeof(webps[0]); i++) {
        VipsImage *im = gradient(webps[i].w, webps[i].h, (int)i + 10);
        save(im, dir, webps[i].name);
        g_object_unref(im);
    }
    for (int size = 400; size <= 1200; size += 800) {
        VipsImage *im = gradient(size, size, size), *alpha, *rgba;
        char name[32];
        if (vips_extract_band(im, &alpha, 0, NULL) || vips_bandjoin2(im, alpha, &rgba, NULL))
            vips_error_exit(NULL);
        snprintf(name, sizeof(name), "alpha-%d.png", size);
        save(rgba, dir, name);
        g_object_unref(rgba);
        g_object_unref(alpha);
        g_object_unref(im);
    }
    for (int size = 200; size <= 600; size += 400) {
        VipsImage *frames[3], *strip;
        char name[32];
        for (int f = 0; f < 3; f++)
            frames[f] = gradient(size, size, size + f);
        if (vips_arrayjoin(frames, &strip, 3, "across", 1, NULL))
            vips_error_exit(NULL);
        vips_image_set_int(strip, "page-height", size);
        snprintf(name, sizeof(name), "anim-%d.gif", size);
        save(strip, dir, name);
        g_object_unref(strip);
        for (int f = 0; f < 3; f++)
            g_object_unref(frames[f]);
    }
}

int main(int argc, char **argv)
{
    if (VIPS_INIT(argv[0]))
        vips_error_exit(NULL);
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "distinct") == 0)
        distinct(argv[2], atoi(argv[3]), argc == 5 ? atoi(argv[4]) : 256);
    else if (argc == 3 && strcmp(argv[1], "resize") == 0)
        resize_corpus(argv[2]);
    else {
        fprintf(stderr, "usage: corpus distinct DIR N [SIDE] | corpus resize DIR\n");
        return 2;
    }
    vips_shutdown();
    return 0;
}
