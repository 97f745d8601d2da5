/*
 * hashurl.h -- GET /p/{sha256}.{ext}: any cached file by the SHA-256 of its bytes, which never changes what the
 * URL answers, so it is served immutable for a year and a CDN may keep it for ever. In a cluster, a file this node
 * does not hold is asked of the other nodes.
 */
#ifndef PFP_HASHURL_H
#define PFP_HASHURL_H

#include <stdint.h>

#include "image.h"

struct blobcache;
struct blobs;
struct cluster;
struct http_server;
struct inbox;
struct pictures;

/* "/p/" + 64 hex digits + "." + the longest extension, and the NUL. */
#define HASHURL_PATH_MAX 80

struct hashurl_services {
    struct pictures *pictures;
    struct blobs *blobs;
    struct blobcache *cache;
    struct inbox *inbox;     /* where the read thread's results come back */
    struct cluster *cluster; /* the other nodes, asked for files not here; NULL: none */
};

struct hashurl;

/* Starts its read thread. Returns 0 or a negative errno. */
int hashurl_init(struct hashurl **out, const struct hashurl_services *sv);
int hashurl_route(struct hashurl *h, struct http_server *http);

/* The path a file of type `t` is served at. */
void hashurl_path(const uint8_t hash[32], enum image_type t, char out[HASHURL_PATH_MAX]);

/* Lets the read thread finish (its results arrive through the inbox). Idempotent. */
void hashurl_shutdown(struct hashurl *h);
/* Once the inbox has been drained. Accepts NULL. */
void hashurl_free(struct hashurl *h);

#endif
