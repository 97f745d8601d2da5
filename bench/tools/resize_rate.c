/* resize_rate.c -- pfpcache-relay's picture pipeline on one thread over every file in DIR, ROUNDS times:
 * prints images per second and the bytes one round produces, for the resize benchmark. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image.h"

struct source {
    unsigned char *data;
    size_t len;
};

static struct source load(const char *path)
{
    struct source s = {0};
    FILE *f = fopen(path, "rb");
    long n;

    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        exit(1);
    if ((s.data = malloc((size_t)n)) == NULL || fread(s.data, 1, (size_t)n, f) != (size_t)n)
        exit(1);
    s.len = (size_t)n;
    fclose(f);
    return s;
}

int main(int argc, char **argv)
{
    struct image_opts o = {true, 200, 85, 50000000};
    struct source src[64];
    size_t n = 0, bytes = 0;
    int rounds;
    struct timespec t0, t1;
    DIR *d;
    struct dirent *e;

    if (argc != 3 || (rounds = atoi(argv[2])) <= 0 || (d = opendir(argv[1])) == NULL) {
        fprintf(stderr, "usage: resize_rate DIR ROUNDS\n");
        return 2;
    }
    while ((e = readdir(d)) != NULL && n < 64) {
        char path[4096];
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", argv[1], e->d_name);
        src[n++] = load(path);
    }
    closedir(d);
    if (image_init() != 0)
        return 1;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < rounds; r++) {
        for (size_t i = 0; i < n; i++) {
            struct image_out out;
            if (image_process(src[i].data, src[i].len, &o, &out) != 0) {
                fprintf(stderr, "resize_rate: %s\n", out.error);
                return 1;
            }
            if (r == 0)
                bytes += out.len;
            image_out_free(&out);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);

    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%.2f %zu %zu\n", (double)(n * (size_t)rounds) / secs, bytes, n);
    for (size_t i = 0; i < n; i++)
        free(src[i].data);
    image_free();
    return 0;
}
