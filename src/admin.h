/*
 * admin.h -- the endpoints that change the cache or spend its bandwidth:
 * POST /batch-cache, GET /cache-follows/{id}, the purges; and GET /jobs
 * to follow the jobs they start.
 */
#ifndef PFP_ADMIN_H
#define PFP_ADMIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "http.h"
#include "jobs.h"
#include "lookup.h"
#include "nip05.h"
#include "pictures.h"
#include "store.h"

#define ADMIN_BATCH_MAX       1000
#define ADMIN_FOLLOWS_DEFAULT 500
#define ADMIN_FOLLOWS_MAX     5000

/* Distinct NIP-05 names in one POST /batch-cache: each may cost a request to its domain. */
#define ADMIN_BATCH_NAMES_MAX 100

struct names;
struct sync;

/* What the endpoints work with; all must outlive the module. */
struct admin_options {
    struct auth *auth;
    struct jobs *jobs;
    struct pictures *pictures;
    struct store *store;
    struct lookup *lookup;
    struct names *names; /* NIP-05 names in place of keys; NULL: keys only */
    struct sync *sync;   /* what POST /sync asks is checked by it */
    struct cdn *cdn;     /* told of pubkeys purged; NULL: none */
};

/* The module; the fields are private. */
struct admin {
    struct admin_options _o;
};

/* `o` is copied; what it points to must outlive `a`. Nothing to free. */
void admin_init(struct admin *a, const struct admin_options *o);

/* A NIP-05 name of a batch. */
struct admin_batch_name {
    struct nip05_id id;
    size_t index;                                      /* its first place in "pubkeys" */
    size_t slot;                                       /* its place in keys, filled once it is resolved */
    char given[NIP05_NAME_MAX + NIP05_DOMAIN_MAX + 2]; /* as the body spells it, for messages */
};

/* What a POST /batch-cache body asks for, or why it is refused. */
struct admin_batch {
    uint8_t (*keys)[32]; /* the distinct pubkeys, in order of first appearance; a name's slot is zeroes until set */
    size_t n;
    struct admin_batch_name *names; /* the distinct names (compared without regard to case), in order */
    size_t nnames;
    int status;      /* 0, or the HTTP status of the refusal (400, 413) */
    char error[512]; /* with a refusal: the message */
    json_t *invalid; /* with a 400 for entries that are not public keys (or names): their indexes */
};

/*
 * Parses a batch body, {"pubkeys": [hex, npub, nprofile or, with `names`, a NIP-05 name, ...]} (at most
 * ADMIN_BATCH_MAX entries and ADMIN_BATCH_NAMES_MAX distinct names; duplicates in any spelling count once), from
 * untrusted bytes. Returns b->status. Each name has a slot in b->keys for its pubkey: fill them all, then call
 * admin_batch_settle(). Free with admin_batch_free() either way.
 */
int admin_parse_batch(const char *body, size_t len, bool names, struct admin_batch *b);

/* Once every name's slot holds its pubkey: drops the duplicates that made, keeping first appearances. */
void admin_batch_settle(struct admin_batch *b);
void admin_batch_free(struct admin_batch *b);

/* Routes the admin endpoints on `http`; `a` must outlive the server. Returns 0, or an http_route() error. */
int admin_route(struct admin *a, struct http_server *http);

/*
 * The follows in a contact list (kind 3) event's JSON: the distinct pubkeys of
 * its "p" tags, in order, at most `limit` (`out` holds that many). Malformed
 * tags are skipped. Each relay URL a tag gives (["p", pubkey, url]) goes to
 * `hint` unless it is NULL. Returns how many were written.
 */
size_t admin_follows_of(const char *json, size_t len, size_t limit, uint8_t (*out)[32],
                        void (*hint)(void *ctx, const uint8_t pubkey[32], const char *url), void *ctx);

#endif
