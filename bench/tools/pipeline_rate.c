/* pipeline_rate.c -- pfpcache-relay's picture pipeline alone, as the batch runs it: every file in DIR
 * checked and resized on a workpool of THREADS image threads (0: one per online CPU, as the relay's
 * image_threads default), results back on a libuv loop, with no network and no disk. Prints pictures
 * per second, the pictures and the threads, for the batch benchmark's reference. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "image.h"
#include "inbox.h"
#include "workpool.h"

struct job {
    struct work w;
    unsigned char *src;
    size_t len;
    int rc;
    struct image_out out;
};

static const struct image_opts opts = {true, 200, 85, 50000000};
static struct inbox inbox;
static size_t pending, failed;

static void run(struct work *w)
{
    struct job *j = (struct job *)w;
    j->rc = image_process(j->src, j->len, &opts, &j->out);
}

static void done(struct work *w)
{
    struct job *j = (struct job *)w;
    if (j->rc != 0) {
        fprintf(stderr, "pipeline_rate: %s\n", j->out.error);
        failed++;
    }
    image_out_free(&j->out);
    if (--pending == 0)
        inbox_free(&inbox);
}

static int load(const char *path, struct job *j)
{
    FILE *f = fopen(path, "rb");
    long n;
    int r = -1;

    if (f == NULL)
        return -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (j->src = malloc((size_t)n)) != NULL && fread(j->src, 1, (size_t)n, f) == (size_t)n) {
        j->len = (size_t)n;
        r = 0;
    }
    fclose(f);
    return r;
}

int main(int argc, char **argv)
{
    struct workpool pool;
    struct job *jobs = NULL;
    size_t n = 0, cap = 0, threads;
    uint64_t t0, t1;
    DIR *d;
    struct dirent *e;

    if (argc != 3 || (d = opendir(argv[1])) == NULL) {
        fprintf(stderr, "usage: pipeline_rate DIR THREADS\n");
        return 2;
    }
    threads = (size_t)atol(argv[2]);
    while ((e = readdir(d)) != NULL) {
        char path[4096];
        if (e->d_name[0] == '.')
            continue;
        if (n == cap && (jobs = realloc(jobs, (cap = cap ? 2 * cap : 1024) * sizeof(*jobs))) == NULL)
            return 1;
        memset(&jobs[n], 0, sizeof(jobs[n]));
        snprintf(path, sizeof(path), "%s/%s", argv[1], e->d_name);
        if (load(path, &jobs[n++]) != 0) {
            fprintf(stderr, "pipeline_rate: cannot read %s\n", path);
            return 1;
        }
    }
    closedir(d);
    if (n == 0 || image_init() != 0 || inbox_init(&inbox, uv_default_loop()) != 0 ||
        workpool_init(&pool, threads, &inbox) != 0)
        return 1;

    t0 = uv_hrtime();
    pending = n;
    for (size_t i = 0; i < n; i++) {
        jobs[i].w.run = run;
        jobs[i].w.done = done;
        workpool_submit(&pool, &jobs[i].w);
    }
    uv_run(uv_default_loop(), UV_RUN_DEFAULT);
    t1 = uv_hrtime();

    printf("%.2f %zu %zu\n", (double)n / ((double)(t1 - t0) / 1e9), n, workpool_threads(&pool));
    workpool_free(&pool);
    for (size_t i = 0; i < n; i++)
        free(jobs[i].src);
    free(jobs);
    image_free();
    uv_loop_close(uv_default_loop());
    return failed != 0;
}
