/* resize_rate.c -- pfpcache-relay's download-time picture work on one thread over every file in DIR, ROUNDS
 * times: the master (WebP within 1024, up to 100 frames) and the default variant made from it (JPEG, 200 px, Q85).
 * Prints images per second, the bytes of the masters and of the variants one round produces, and the number of
 * sources, for the resize benchmark. With MASTERS, also writes each master there under its source's name, for the
 * variants benchmark. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image.h"

struct source {
    char name[256];
    unsigned char *data;
    size_t len;
};

static struct source load(const char *dir, const char *name)
{
    struct source s = {0};
    char path[4096];
    FILE *f;
    long n;

    snprintf(s.name, sizeof(s.name), "%s", name);
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        exit(1);
    if ((f = fopen(path, "rb")) == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0)
        exit(1);
    if ((s.data = malloc((size_t)n)) == NULL || fread(s.data, 1, (size_t)n, f) != (size_t)n)
        exit(1);
    s.len = (size_t)n;
    fclose(f);
    return s;
}

static void save(const char *dir, const char *name, const struct image_out *out)
{
    char path[4096];
    FILE *f;

    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        exit(1);
    if ((f = fopen(path, "wb")) == NULL || fwrite(out->data, 1, out->len, f) != out->len || fclose(f) != 0)
        exit(1);
}

int main(int argc, char **argv)
{
    struct image_opts o = {true, 1024, 85, 50000000, 0, 0, 100};
    struct image_variant_spec spec = {200, false, IMAGE_JPEG, false, 85, 0};
    struct source src[64];
    size_t n = 0, master_bytes = 0, variant_bytes = 0;
    int rounds;
    struct timespec t0, t1;
    DIR *d;
    struct dirent *e;

    if ((argc != 3 && argc != 4) || (rounds = atoi(argv[2])) <= 0 || (d = opendir(argv[1])) == NULL) {
        fprintf(stderr, "usage: resize_rate DIR ROUNDS [MASTERS]\n");
        return 2;
    }
    while ((e = readdir(d)) != NULL && n < 64) {
        if (e->d_name[0] != '.')
            src[n++] = load(argv[1], e->d_name);
    }
    closedir(d);
    if (image_init() != 0)
        return 1;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < rounds; r++) {
        for (size_t i = 0; i < n; i++) {
            struct image_out master, variant;
            if (image_process(src[i].data, src[i].len, &o, &master) != 0) {
                fprintf(stderr, "resize_rate: %s: %s\n", src[i].name, master.error);
                return 1;
            }
            if (image_variant(master.data, master.len, &spec, &variant) != 0) {
                fprintf(stderr, "resize_rate: %s: %s\n", src[i].name, variant.error);
                return 1;
            }
            if (r == 0) {
                master_bytes += master.len;
                variant_bytes += variant.len;
                if (argc == 4)
                    save(argv[3], src[i].name, &master);
            }
            image_out_free(&variant);
            image_out_free(&master);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);

    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%.2f %zu %zu %zu\n", (double)(n * (size_t)rounds) / secs, master_bytes, variant_bytes, n);
    for (size_t i = 0; i < n; i++)
        free(src[i].data);
    image_free();
    return 0;
}
