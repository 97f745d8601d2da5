/*
 * ring.h -- the consistent-hash ring of nginx's `hash $key consistent`
 * (ngx_http_upstream_hash_module, ketama-style): 160 CRC32 points per unit of
 * weight for each server, placed from the server's name as written in the
 * upstream block. With the same servers in the same order, any node computes
 * the owner of a key exactly as nginx picks it (while every server is up).
 */
#ifndef PFP_RING_H
#define PFP_RING_H

#include <stddef.h>
#include <stdint.h>

struct ring;

/*
 * A ring of `n` servers, each named as in nginx's `server` line ("host:port",
 * "unix:/path") with its weight (1 or more). Returns NULL when `n` is 0 or a
 * weight is 0. The names are copied.
 */
struct ring *ring_new(const char *const *servers, const unsigned *weights, size_t n);
void ring_free(struct ring *r);

/* The fraction of the hash space each server owns, into `shares` (one per server given). */
void ring_shares(const struct ring *r, double *shares, size_t n);

/* The index (into the servers given) of the one that owns `key`. */
size_t ring_owner(const struct ring *r, const char *key, size_t len);

/* CRC32 (IEEE 802.3, as nginx's ngx_crc32_long and zlib's crc32) of `len` bytes, continuing from `crc` (0 at first). */
uint32_t ring_crc32(uint32_t crc, const void *data, size_t len);

#endif
