/* event.h -- Nostr events (NIP-01): strict parsing, the id serialization, signatures, and the stored record. */
#ifndef PFP_EVENT_H
#define PFP_EVENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* A parsed event. Strings point into `root`, which the event holds one reference to. */
struct event {
    uint8_t id[32];
    uint8_t pubkey[32];
    uint8_t sig[64];
    int64_t created_at;
    uint32_t kind;
    json_t *tags;        /* array of arrays of strings */
    const char *content; /* may contain NUL bytes */
    size_t content_len;
    json_t *root;
};

/*
 * Checks every field of `obj` strictly: id and pubkey 64 lowercase hex, sig 128,
 * created_at a non-negative integer, kind an integer 0..65535, tags an array of
 * arrays of strings, content a string. Returns 0 and takes a reference to `obj`
 * (release with event_free), or -EINVAL with the reason in `reason`.
 */
int event_parse(json_t *obj, struct event *ev, char *reason, size_t len);
void event_free(struct event *ev);

/*
 * Appends [0,"pubkey",created_at,kind,tags,"content"]: with BUF_JSON_NIP01, as
 * NIP-01 specifies it for the id; with BUF_JSON_WIRE, as JavaScript's
 * JSON.stringify writes it, which escapes the other control characters too.
 */
void event_serialize(const struct event *ev, struct buf *b, enum buf_json_mode mode);

/* The SHA-256 of event_serialize(). */
void event_compute_id(const struct event *ev, enum buf_json_mode mode, uint8_t out[32]);

/*
 * True when the event's id is the hash of its NIP-01 serialization. For events
 * holding control characters other than the seven NIP-01 escapes, the
 * JSON.stringify serialization that nostr-tools and most clients hash is accepted
 * too: both are commitments the author signed.
 */
bool event_id_valid(const struct event *ev);

/* BIP-340 Schnorr verification of `sig` over `id` by `pubkey`. Safe from any thread. */
bool event_verify_sig(const uint8_t id[32], const uint8_t pubkey[32], const uint8_t sig[64]);

enum event_class { EVENT_REGULAR, EVENT_REPLACEABLE, EVENT_EPHEMERAL, EVENT_ADDRESSABLE };

/* How NIP-01 stores a kind: regular, replaceable (0, 3, 10000-19999), ephemeral, addressable. */
enum event_class event_kind_class(uint32_t kind);

/*
 * The stored form of an event, kept in the database under its id and handed
 * around whole. Layout, little-endian:
 *   u64 created_at | u32 kind | pubkey[32] | u32 tags_len | u32 json_len | tags | json
 * `tags` packs the first value of each single-letter tag, the ones filters can
 * name, as [letter][u16 length][value], for values up to EVENT_TAG_VALUE_MAX
 * bytes. `json` is the event as clients receive it.
 */
#define EVENT_RECORD_HEADER 52
#define EVENT_TAG_VALUE_MAX 65535

/* Builds the record of a parsed event. Returns a malloc()ed buffer of `*len` bytes; the caller frees it. */
uint8_t *event_record_build(const struct event *ev, size_t *len);

/* A record decoded in place: every pointer points into the record's bytes and lives as long as they do. */
struct event_view {
    const uint8_t *id; /* 32 bytes, kept beside the record (it is the database key) */
    const uint8_t *pubkey;
    int64_t created_at;
    uint32_t kind;
    const uint8_t *tags;
    size_t tags_len;
    const char *json;
    size_t json_len;
};

/* Decodes `rec` (len bytes) of the event `id`. Returns 0, or -EINVAL when the lengths do not add up. */
int event_view_decode(const uint8_t *id, const void *rec, size_t len, struct event_view *v);

/*
 * Copies the event behind `v` (id and record) into one malloc()ed block and
 * decodes `out` from the copy, which lives until the returned pointer is freed.
 */
void *event_view_dup(const struct event_view *v, struct event_view *out);

/* Walks the packed tags: start with *pos = 0; returns false after the last. */
bool event_view_next_tag(const struct event_view *v, size_t *pos, char *letter, const char **value, size_t *value_len);

/* The value of the first "d" tag ("" when there is none), as addressable events are keyed by it. */
void event_view_d_tag(const struct event_view *v, const char **value, size_t *len);

#endif
