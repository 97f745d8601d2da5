/*
 * admin.h -- the endpoints that change the cache or spend its bandwidth:
 * POST /batch-cache, GET /cache-follows/{pubkey}, the purges; and GET /jobs
 * to follow the jobs they start.
 */
#ifndef PFP_ADMIN_H
#define PFP_ADMIN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "http.h"
#include "jobs.h"
#include "lookup.h"
#include "pictures.h"
#include "store.h"

#define ADMIN_BATCH_MAX       1000
#define ADMIN_FOLLOWS_DEFAULT 500
#define ADMIN_FOLLOWS_MAX     5000

struct admin {
    struct auth *auth;
    struct jobs *jobs;
    struct pictures *pictures;
    struct store *store;
    struct lookup *lookup;
};

/* What a POST /batch-cache body asks for, or why it is refused. */
struct admin_batch {
    uint8_t (*keys)[32]; /* the distinct pubkeys, in order of first appearance */
    size_t n;
    int status;      /* 0, or the HTTP status of the refusal (400, 413) */
    char error[512]; /* with a refusal: the message */
    json_t *invalid; /* with a 400 for entries that are not public keys: their indexes */
};

/*
 * Parses a batch body, {"pubkeys": [hex, npub or nprofile, ...]} (at most
 * ADMIN_BATCH_MAX entries; duplicates in any spelling count once), from
 * untrusted bytes. Returns b->status. Free with admin_batch_free() either way.
 */
int admin_parse_batch(const char *body, size_t len, struct admin_batch *b);
void admin_batch_free(struct admin_batch *b);

/* Routes the admin endpoints on `http`; `a` must outlive the server. Returns 0, or an http_route() error. */
int admin_route(struct admin *a, struct http_server *http);

/*
 * The follows in a contact list (kind 3) event's JSON: the distinct pubkeys of
 * its "p" tags, in order, at most `limit` (`out` holds that many). Malformed
 * tags are skipped. Returns how many were written.
 */
size_t admin_follows_of(const char *json, size_t len, size_t limit, uint8_t (*out)[32]);

#endif
