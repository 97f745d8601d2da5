/* blob.h -- pictures stored as files named by their SHA-256, each once, never seen half-written. */
#ifndef PFP_BLOB_H
#define PFP_BLOB_H

#include <stddef.h>
#include <stdint.h>

/* Files live at <dir>/<first two hex digits>/<64 hex digits>. */
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
 * Stores `data` under `hash` unless it is there already: written to a temporary
 * file in the same directory, synced and renamed, so that a crash leaves either
 * nothing or the whole file. Blocks on the disk: for worker threads. Returns 0
 * or -errno.
 */
int blob_write(const struct blobs *b, const uint8_t hash[32], const uint8_t *data, size_t len);

/*
 * Reads the whole blob `hash` into `*data` (malloc()ed, the caller frees it) and
 * its size into `*len`. Blocks on the disk: for worker threads. Returns 0, or
 * -errno (-ENOENT when the file has gone, -EIO for a short read).
 */
int blob_read(const struct blobs *b, const uint8_t hash[32], uint8_t **data, size_t *len);

/* 1 when the blob's file exists, 0 when not. */
int blob_exists(const struct blobs *b, const uint8_t hash[32]);

/* Removes the blob's file. Returns 0, or -errno (-ENOENT when it was not there). */
int blob_remove(const struct blobs *b, const uint8_t hash[32]);

#endif
