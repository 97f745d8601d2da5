/* variant_rate.c -- pfpcache-relay's variants on one thread, from every master in DIR, ROUNDS times: for JPEG,
 * WebP and AVIF in turn, each master at 64, 128, 256 and 512 px at JPEG's quality 85 (mapped to each format by
 * image_encode_quality()). Prints "quality JPEG WEBP AVIF", the encoder qualities used, then a line a format,
 * "FORMAT VARIANTS_PER_SECOND BYTES SIZE,SIZE,...", the bytes and sizes of one round, for the variants benchmark. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image.h"

struct master {
    unsigned char *data;
    size_t len;
};

static struct master load(const char *dir, const char *name)
{
    struct master m = {0};
    char path[4096];
    FILE *f;
    long n;

    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        exit(1);
    if ((f = fopen(path, "rb")) == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0)
        exit(1);
    if ((m.data = malloc((size_t)n)) == NULL || fread(m.data, 1, (size_t)n, f) != (size_t)n)
        exit(1);
    m.len = (size_t)n;
    fclose(f);
    return m;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const int sizes[] = {64, 128, 256, 512};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

int main(int argc, char **argv)
{
    static const struct {
        enum image_type type;
        const char *name;
    } formats[] = {{IMAGE_JPEG, "jpeg"}, {IMAGE_WEBP, "webp"}, {IMAGE_AVIF, "avif"}};
    struct master m[64];
    char *names[64];
    size_t n = 0;
    int rounds;
    DIR *d;
    struct dirent *e;

    if (argc != 3 || (rounds = atoi(argv[2])) <= 0 || (d = opendir(argv[1])) == NULL) {
        fprintf(stderr, "usage: variant_rate DIR ROUNDS\n");
        return 2;
    }
    while ((e = readdir(d)) != NULL && n < 64) {
        if (e->d_name[0] != '.')
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    /* In name order, as the benchmark's sharp reads them, so that the sizes line up. */
    qsort(names, n, sizeof(names[0]), by_name);
    for (size_t i = 0; i < n; i++)
        m[i] = load(argv[1], names[i]);
    if (image_init() != 0)
        return 1;

    printf("quality %d %d %d\n", image_encode_quality(IMAGE_JPEG, 85), image_encode_quality(IMAGE_WEBP, 85),
           image_encode_quality(IMAGE_AVIF, 85));
    for (size_t f = 0; f < sizeof(formats) / sizeof(formats[0]); f++) {
        size_t bytes = 0, count = 0;
        struct timespec t0, t1;

        printf("%s", formats[f].name);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int r = 0; r < rounds; r++) {
            for (size_t i = 0; i < n; i++) {
                for (size_t s = 0; s < NSIZES; s++) {
                    struct image_variant_spec spec = {sizes[s], false, formats[f].type, false, 85, 0};
                    struct image_out out;
                    if (image_variant(m[i].data, m[i].len, &spec, &out) != 0) {
                        fprintf(stderr, "variant_rate: %s: %s\n", names[i], out.error);
                        return 1;
                    }
                    if (r == 0) {
                        bytes += out.len;
                        count++;
                    }
                    image_out_free(&out);
                }
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        printf(" %.2f %zu", (double)count * rounds / secs, bytes);
        /* The sizes again, out of the timing, one a variant in order. */
        for (size_t i = 0; i < n; i++) {
            for (size_t s = 0; s < NSIZES; s++) {
                struct image_variant_spec spec = {sizes[s], false, formats[f].type, false, 85, 0};
                struct image_out out;
                if (image_variant(m[i].data, m[i].len, &spec, &out) != 0)
                    return 1;
                printf("%c%zu", i == 0 && s == 0 ? ' ' : ',', out.len);
                image_out_free(&out);
            }
        }
        printf("\n");
    }
    for (size_t i = 0; i < n; i++) {
        free(m[i].data);
        free(names[i]);
    }
    image_free();
    return 0;
}
