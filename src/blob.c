/* blob.c -- pictures stored as files named by their SHA-256, each once, never seen half-written. */
#include "blob.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "hex.h"

#define TMP_MARK ".tmp."

void blob_hash(const uint8_t *data, size_t len, uint8_t out[32])
{
    SHA256(data, len, out);
}

void blob_path(const struct blobs *b, const uint8_t hash[32], char *out, size_t len)
{
    char hex[65];
    hex_encode(hash, 32, hex);
    hex[64] = '\0';
    snprintf(out, len, "%s/%.2s/%s", b->dir, hex, hex);
}

/* Removes files named *.tmp.* in one fan-out directory: writes a crash interrupted. */
static void remove_temporaries(DIR *parent, const char *name)
{
    int fd = openat(dirfd(parent), name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *e;

    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return;
    }
    while ((e = readdir(d)) != NULL) {
        if (strstr(e->d_name, TMP_MARK) != NULL)
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

int blobs_init(struct blobs *b, const char *dir, char *err, size_t errlen)
{
    DIR *d;
    struct dirent *e;
    int r;

    if ((r = fs_mkdir_p(dir, 0755)) != 0) {
        snprintf(err, errlen, "cannot create the picture directory %s: %s", dir, strerror(-r));
        return r;
    }
    if ((b->dir = strdup(dir)) == NULL)
        abort();
    if ((d = opendir(dir)) == NULL) {
        snprintf(err, errlen, "cannot read the picture directory %s: %s", dir, strerror(errno));
        return -errno;
    }
    while ((e = readdir(d)) != NULL) {
        if (strlen(e->d_name) == 2 && e->d_name[0] != '.')
            remove_temporaries(d, e->d_name);
    }
    closedir(d);
    return 0;
}

void blobs_free(struct blobs *b)
{
    free(b->dir);
    b->dir = NULL;
}

int blob_exists(const struct blobs *b, const uint8_t hash[32])
{
    char path[4096];
    struct stat st;

    blob_path(b, hash, path, sizeof(path));
    return stat(path, &st) == 0;
}

int blob_read(const struct blobs *b, const uint8_t hash[32], size_t expect_len, uint8_t **data, size_t *len)
{
    char path[4096];
    struct stat st;
    uint8_t *buf = NULL, got[32];
    size_t done = 0;
    int fd, r = 0;

    blob_path(b, hash, path, sizeof(path));
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return -errno;
    if (fstat(fd, &st) != 0) {
        r = -errno;
        goto out;
    }
    /* Truncated, emptied or grown: known from the size alone, before reading it. */
    if ((uint64_t)st.st_size != expect_len) {
        r = -EBADMSG;
        goto out;
    }
    /* One byte more than needed, so that an empty file is not a zero-sized malloc(). */
    if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
        r = -ENOMEM;
        goto out;
    }
    while (done < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r = n < 0 ? -errno : -EIO;
            goto out;
        }
        done += (size_t)n;
    }
    /* The name is the hash of the bytes, so checking them costs one hash, on this thread rather than the loop. */
    blob_hash(buf, done, got);
    if (memcmp(got, hash, 32) != 0)
        r = -EBADMSG;
out:
    close(fd);
    if (r != 0) {
        free(buf);
        return r;
    }
    *data = buf;
    *len = done;
    return 0;
}

/* A file of a batch, written under the temporary name <its path>.tmp.<pid>.<serial>. */
struct blob_staged {
    uint8_t hash[32];
    unsigned serial;
    bool renamed; /* under its name */
};

static void staged_tmp_path(const struct blobs *b, const struct blob_staged *f, char *out, size_t len)
{
    char path[4096];

    blob_path(b, f->hash, path, sizeof(path));
    snprintf(out, len, "%s" TMP_MARK "%d.%u", path, (int)getpid(), f->serial);
}

void blob_batch_init(struct blob_batch *bb, const struct blobs *b)
{
    *bb = (struct blob_batch){._b = b};
}

int blob_batch_add(struct blob_batch *bb, const uint8_t hash[32], const uint8_t *data, size_t len)
{
    static atomic_uint counter;
    char path[4096], tmp[4200];
    struct blob_staged *f;
    struct stat st;
    size_t done = 0;
    int fd, r = 0;

    blob_path(bb->_b, hash, path, sizeof(path));
    /* Stored already, unless damaged: a file of another size is replaced at the rename. */
    if (stat(path, &st) == 0 && (uint64_t)st.st_size == len)
        return 0;
    for (size_t i = 0; i < bb->_n; i++) {
        if (memcmp(bb->_files[i].hash, hash, 32) == 0)
            return 0;
    }
    if ((r = fs_mkdir_parent(path, 0755)) != 0)
        return r;
    if (bb->_n == bb->_cap) {
        bb->_cap = bb->_cap ? 2 * bb->_cap : 16;
        if ((bb->_files = realloc(bb->_files, bb->_cap * sizeof(*bb->_files))) == NULL)
            abort();
    }
    f = &bb->_files[bb->_n];
    memcpy(f->hash, hash, 32);
    f->serial = atomic_fetch_add(&counter, 1);
    f->renamed = false;
    staged_tmp_path(bb->_b, f, tmp, sizeof(tmp));
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0)
        return -errno;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            break;
        }
        done += (size_t)n;
    }
    if (close(fd) != 0 && r == 0)
        r = -errno;
    if (r != 0) {
        unlink(tmp);
        return r;
    }
    bb->_n++;
    return 0;
}

/*
 * syncfs() writes every file of the batch in one pass and flushes the disk
 * once, where an fsync of each file and of each directory would flush it
 * twice per file. It also writes whatever else of that filesystem is dirty:
 * next to the picture directory that is normally the database, synced at
 * each of its commits anyway.
 */
int blob_batch_commit(struct blob_batch *bb)
{
    char path[4096], tmp[4200];
    int fd, r = 0;

    if (bb->_n == 0)
        return 0;
    if ((fd = open(bb->_b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return -errno;
    /* The contents first, so that a name never points at a file that is not whole; then the names. */
    if (syncfs(fd) != 0) {
        r = -errno;
        goto out;
    }
    for (size_t i = 0; i < bb->_n; i++) {
        struct blob_staged *f = &bb->_files[i];
        staged_tmp_path(bb->_b, f, tmp, sizeof(tmp));
        blob_path(bb->_b, f->hash, path, sizeof(path));
        if (rename(tmp, path) == 0)
            f->renamed = true;
        else if (r == 0)
            r = -errno;
    }
    if (syncfs(fd) != 0) {
        r = -errno;
        /* Not known to be durable under their names: taken away, so that no record comes to name them. */
        for (size_t i = 0; i < bb->_n; i++) {
            if (bb->_files[i].renamed)
                blob_remove(bb->_b, bb->_files[i].hash);
        }
    }
out:
    close(fd);
    return r;
}

void blob_batch_free(struct blob_batch *bb)
{
    char tmp[4200];

    for (size_t i = 0; i < bb->_n; i++) {
        if (!bb->_files[i].renamed) {
            staged_tmp_path(bb->_b, &bb->_files[i], tmp, sizeof(tmp));
            unlink(tmp);
        }
    }
    free(bb->_files);
    *bb = (struct blob_batch){0};
}

int blob_write(const struct blobs *b, const uint8_t hash[32], const uint8_t *data, size_t len)
{
    struct blob_batch bb;
    int r;

    blob_batch_init(&bb, b);
    if ((r = blob_batch_add(&bb, hash, data, len)) == 0)
        r = blob_batch_commit(&bb);
    blob_batch_free(&bb);
    return r;
}

int blob_remove(const struct blobs *b, const uint8_t hash[32])
{
    char path[4096];

    blob_path(b, hash, path, sizeof(path));
    return unlink(path) == 0 ? 0 : -errno;
}
