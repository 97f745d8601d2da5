/*
 * negentropy.h -- Negentropy protocol V1 (range-based set reconciliation), as
 * NIP-77 carries it: two sides with sets of (timestamp, 32-byte id) records
 * find which ids each lacks in a few rounds of fingerprints, with the
 * reference's parameters (16 buckets a split, id lists below 32 records).
 * Bytes in, bytes out: the hex and the NEG-* messages around them are the
 * relay's.
 */
#ifndef PFP_NEGENTROPY_H
#define PFP_NEGENTROPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define NEG_VERSION     0x61 /* protocol V1 */
#define NEG_MIN_FRAME   4096 /* the smallest frame size limit a session may have */
#define NEG_FINGERPRINT 16

struct neg_item {
    uint64_t timestamp;
    uint8_t id[32];
};

/* A side's records, sorted by timestamp then id once sealed. */
struct neg_storage {
    struct neg_item *items;
    size_t n, cap;
};

void neg_storage_add(struct neg_storage *s, uint64_t timestamp, const uint8_t id[32]);
/* Sorts the records. Returns 0, or -EEXIST when a record was added twice. */
int neg_storage_seal(struct neg_storage *s);
void neg_storage_free(struct neg_storage *s);

/* The fingerprint of records [begin, end): SHA-256 of their ids' sum modulo 2^256 and their count, truncated. */
void neg_fingerprint(const struct neg_storage *s, size_t begin, size_t end, uint8_t out[NEG_FINGERPRINT]);

/* One side of a reconciliation. The storage must stay sealed and unchanged while it is used. */
struct neg {
    const struct neg_storage *_s;
    uint64_t _frame_limit; /* 0: messages of any size */
    bool _initiator;
    uint64_t _last_in, _last_out;
};

/* `frame_limit` is 0 or at least NEG_MIN_FRAME bytes. Returns 0 or -EINVAL. */
int neg_init(struct neg *n, const struct neg_storage *s, uint64_t frame_limit);

/* The first message, as the side that starts (the client of NIP-77), into `out`. */
void neg_initiate(struct neg *n, struct buf *out);

/*
 * Answers the message `msg` into `out`. The side that initiated appends, to
 * `have` and `need`, the 32-byte ids only it has and only the other side has;
 * an `out` left empty then means the reconciliation is complete. The other
 * side always answers (with just the version byte when the message asks for
 * another protocol version). Returns 0, or -EINVAL with the reason in `err`
 * when the message is malformed.
 */
int neg_reconcile(struct neg *n, const uint8_t *msg, size_t len, struct buf *out, struct buf *have, struct buf *need,
                  char *err, size_t errlen);

/* The varint of the protocol, for tests and callers that frame it: 0, or -EINVAL past the end or 64 bits. */
void neg_put_varint(struct buf *out, uint64_t v);
int neg_get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v);

#endif
