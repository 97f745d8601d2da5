/* evict_rate.c -- the LRU benchmark: a picture index of N pubkeys, each with its own 2 KB file, is reopened
 * with max_cache_size_mb just under its size, so that a tenth must go. Prints the files evicted, the
 * eviction's seconds and, as the reference, the seconds to unlink as many files of the same size with no
 * index at all:  EVICTED EVICT_SECONDS UNLINK_SECONDS */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blob.h"
#include "blobcache.h"
#include "db.h"
#include "fsutil.h"
#include "inbox.h"
#include "pictures.h"

#define FILE_BYTES 2048

struct bench {
    uv_loop_t loop;
    struct inbox inbox;
    struct db *db;
    struct blobs blobs;
    struct blobcache memory;
    struct pictures index;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "evict_rate: %s\n", what);
    exit(1);
}

static bool index_ready(struct bench *b)
{
    struct pictures_stats s;
    pictures_stats(&b->index, &s);
    return s.ready;
}

static bool index_evicting(struct bench *b)
{
    struct pictures_stats s;
    pictures_stats(&b->index, &s);
    return s.evicting;
}

static void open_index(struct bench *b, const char *dir, uint64_t max_cache_size_mb)
{
    char db[4096], media[4096], err[512];
    /* The relay's defaults: the low water at 90%, a check every 5 minutes. */
    struct pictures_options opt = {max_cache_size_mb << 20, 90, 300000};

    memset(b, 0, sizeof(*b));
    snprintf(db, sizeof(db), "%s/db/pictures.db", dir);
    snprintf(media, sizeof(media), "%s/media", dir);
    uv_loop_init(&b->loop);
    inbox_init(&b->inbox, &b->loop);
    if (fs_mkdir_parent(db, 0755) != 0 ||
        db_init(&b->db, &(struct db_options){db, 65536}, &b->inbox, err, sizeof(err)) != 0 ||
        blobs_init(&b->blobs, media, err, sizeof(err)) != 0)
        die("cannot open the database or the media directory");
    blobcache_init(&b->memory, 0);
    if (pictures_init(&b->index, &b->loop, &opt, b->db, &b->blobs, &b->memory, &b->inbox) != 0 || db_start(b->db) != 0)
        die("cannot open the picture index");
    pictures_start(&b->index);
    while (!index_ready(b))
        uv_run(&b->loop, UV_RUN_ONCE);
}

static void close_index(struct bench *b)
{
    pictures_shutdown(&b->index);
    db_shutdown(b->db);
    inbox_free(&b->inbox);
    pictures_free(&b->index);
    db_free(b->db);
    blobcache_free(&b->memory);
    blobs_free(&b->blobs);
    uv_run(&b->loop, UV_RUN_NOWAIT);
    uv_loop_close(&b->loop);
}

/* Bytes that differ for every seed. */
static void make_data(uint8_t data[FILE_BYTES], uint32_t seed)
{
    for (size_t i = 0; i < FILE_BYTES; i += 4)
        memcpy(data + i, &(uint32_t){seed * 2654435761u + (uint32_t)i}, 4);
}

/* Written without fsync: the benchmark is about the index, not the disk's flushes. */
static void write_file(const char *path, const uint8_t data[FILE_BYTES])
{
    int fd;

    if (fs_mkdir_parent(path, 0755) != 0 || (fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0 ||
        write(fd, data, FILE_BYTES) != FILE_BYTES || close(fd) != 0)
        die("cannot write a file");
}

static size_t committed;

static void on_put(void *ctx, int status)
{
    (void)ctx;
    if (status != 0)
        die("a picture record could not be stored");
    committed++;
}

static void fill(const char *dir, uint32_t n)
{
    struct bench b;

    open_index(&b, dir, 16777216);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t data[FILE_BYTES], pubkey[32];
        struct pic pic = {0};
        char path[4096];

        make_data(data, i);
        blob_hash(data, sizeof(data), pic.h.blob);
        blob_path(&b.blobs, pic.h.blob, path, sizeof(path));
        write_file(path, data);
        blob_hash((const uint8_t *)&i, sizeof(i), pubkey);
        pic.h.state = PIC_OK;
        pic.h.bytes = FILE_BYTES;
        pic.h.fetched_at = (uint64_t)time(NULL);
        pictures_put(&b.index, pubkey, &pic, NULL, NULL, NULL, NULL, 0, on_put, NULL);
        if (i % 4096 == 4095)
            uv_run(&b.loop, UV_RUN_NOWAIT);
    }
    while (committed < n)
        uv_run(&b.loop, UV_RUN_ONCE);
    close_index(&b);
}

/* Reopens with the limit just under the cache's size: the eviction starts as soon as the index is ready. */
static double evict(const char *dir, uint64_t *evicted)
{
    struct bench b;
    struct pictures_stats s;
    double t0, t1;

    /* 100,000 files of 2 KB are 195.3 MiB: a limit of 195 with the low water at 90% evicts a tenth. */
    open_index(&b, dir, 195);
    t0 = now_s();
    while (index_evicting(&b))
        uv_run(&b.loop, UV_RUN_ONCE);
    t1 = now_s();
    pictures_stats(&b.index, &s);
    *evicted = s.evicted_files;
    close_index(&b);
    return t1 - t0;
}

static double unlink_reference(const char *dir, uint64_t n)
{
    char path[4096];
    uint8_t data[FILE_BYTES];
    double t0;

    for (uint64_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/ref/%02x/%016llx", dir, (unsigned)(i % 256), (unsigned long long)i);
        make_data(data, (uint32_t)i);
        write_file(path, data);
    }
    t0 = now_s();
    for (uint64_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/ref/%02x/%016llx", dir, (unsigned)(i % 256), (unsigned long long)i);
        if (unlink(path) != 0)
            die("cannot unlink a reference file");
    }
    return now_s() - t0;
}

int main(int argc, char **argv)
{
    uint64_t evicted = 0;
    double evict_s, unlink_s;

    if (argc != 2) {
        fprintf(stderr, "usage: evict_rate DIR (an empty directory)\n");
        return 2;
    }
    fill(argv[1], 100000);
    evict_s = evict(argv[1], &evicted);
    unlink_s = unlink_reference(argv[1], evicted);
    printf("%llu %.4f %.4f\n", (unsigned long long)evicted, evict_s, unlink_s);
    return 0;
}
