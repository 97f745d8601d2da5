/* blob.c -- pictures stored as files named by their SHA-256, each once, never seen half-written. */
#include "blob.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdatomic.h>
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

int blob_read(const struct blobs *b, const uint8_t hash[32], uint8_t **data, size_t *len)
{
    char path[4096];
    struct stat st;
    uint8_t *buf = NULL;
    size_t done = 0;
    int fd, r = 0;

    blob_path(b, hash, path, sizeof(path));
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return -errno;
    if (fstat(fd, &st) != 0) {
        r = -errno;
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

/* Makes a rename in `dir` durable. */
static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

    if (fd < 0)
        return -errno;
    if (fsync(fd) != 0)
        r = -errno;
    close(fd);
    return r;
}

int blob_write(const struct blobs *b, const uint8_t hash[32], const uint8_t *data, size_t len)
{
    static atomic_uint counter;
    char path[4096], tmp[4200], dir[4096];
    size_t done = 0;
    int fd, r = 0;

    blob_path(b, hash, path, sizeof(path));
    if (access(path, F_OK) == 0)
        return 0;
    snprintf(dir, sizeof(dir), "%s", path);
    *strrchr(dir, '/') = '\0';
    if ((r = fs_mkdir_p(dir, 0755)) != 0)
        return r;

    snprintf(tmp, sizeof(tmp), "%s" TMP_MARK "%d.%u", path, (int)getpid(), atomic_fetch_add(&counter, 1));
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
    if (r == 0 && fsync(fd) != 0)
        r = -errno;
    if (close(fd) != 0 && r == 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) != 0)
        r = -errno;
    if (r != 0) {
        unlink(tmp);
        return r;
    }
    return sync_dir(dir);
}

int blob_remove(const struct blobs *b, const uint8_t hash[32])
{
    char path[4096];

    blob_path(b, hash, path, sizeof(path));
    return unlink(path) == 0 ? 0 : -errno;
}
