/* blob.h -- pictures stored as files named by their SHA-256, each once, never seen half-written. */
#ifndef PFP_BLOB_H
#define PFP_BLOB_H

#include <stddef.h>
#include <stdint.h>

/* Files live at <dir>/<first two hex digits>/<64 hex digits>. */
struct blob_staged;

struct blobs {
    char *dir; /* owned */
};

/*
 * Creates `dir` if needed and removes temporary files a crash left behind.
 * Returns 0 or -errno (with a message in `err`).
 */
int blobs_init(struct blobs *b, const char *dir, char *err, size_t errlen);
void blobs_free(struct blobs *b);

void blob_hash(const uint8_t *data, size_t len, uint8_t out[32]);

/* Writes the path of the blob `hash` into `out`. */
void blob_path(const struct blobs *b, const uint8_t hash[32], char *out, size_t len);

/*
 * Files written together and made durable with two syncs of the filesystem
 * for the whole batch, not two fsyncs per file: each is written under a
 * temporary name, the filesystem is synced, all are renamed, and it is synced
 * again. A crash leaves every file either whole under its name or under a
 * temporary name that blobs_init() removes. The fields are private. Blocks on
 * the disk: for worker threads, one batch on one thread at a time.
 */
struct blob_batch {
    const struct blobs *_b;
    struct blob_staged *_files;
    size_t _n, _cap;
};

void blob_batch_init(struct blob_batch *bb, const struct blobs *b);

/*
 * Writes `data` (`len` bytes, not kept) as the blob `hash` under a temporary
 * name, unless the blob is stored already (with that size: a damaged file is
 * replaced) or in the batch. Returns 0 or -errno.
 */
int blob_batch_add(struct blob_batch *bb, const uint8_t hash[32], const uint8_t *data, size_t len);

/*
 * Makes the files added durable under their names. Returns 0, or the first
 * -errno: a file whose sync or rename failed is not under its name
 * (blob_exists() tells which are).
 */
int blob_batch_commit(struct blob_batch *bb);

/* Removes what was added and not committed, and frees the batch. */
void blob_batch_free(struct blob_batch *bb);

/* Stores `data` under `hash` unless it is there already: a batch of one. Returns 0 or -errno. */
int blob_write(const struct blobs *b, const uint8_t hash[32], const uint8_t *data, size_t len);

/*
 * Reads the whole blob `hash` into `*data` (malloc()ed, the caller frees it) and
 * its size into `*len`, and checks it: a file of another size than `expect_len`
 * (its record's), or whose bytes do not hash to its name, is damaged. Blocks on
 * the disk and hashes: for worker threads. Returns 0, or -errno (-ENOENT when
 * the file has gone, -EBADMSG when it is damaged, -EIO for a short read).
 */
int blob_read(const struct blobs *b, const uint8_t hash[32], size_t expect_len, uint8_t **data, size_t *len);

/* 1 when the blob's file exists, 0 when not. */
int blob_exists(const struct blobs *b, const uint8_t hash[32]);

/* Removes the blob's file. Returns 0, or -errno (-ENOENT when it was not there). */
int blob_remove(const struct blobs *b, const uint8_t hash[32]);

#endif
