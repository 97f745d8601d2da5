/*
 * ingest.h -- the one path of every incoming event, from a client or an upstream relay: strict parsing, the id,
 * the date, the duplicate check, the signature on the verify pool, the store, the answer.
 */
#ifndef PFP_INGEST_H
#define PFP_INGEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "store.h"
#include "workpool.h"

/*
 * Errors, besides the store's (-EFBIG, -ENOSPC, -EIO):
 *   -EINVAL        the event is malformed (event_parse's rules)
 *   -EBADMSG       its id is not the hash of its content
 *   -ERANGE        its created_at is further ahead of the clock than max_future_seconds
 *   -EKEYREJECTED  its signature is not the author's
 */

/* What an event became once through the pipeline, the non-negative statuses of ingest_done_fn. */
enum ingest_result {
    INGEST_STORED = 0, /* new, and now stored: the store's listeners have heard of it */
    INGEST_DUPLICATE,  /* already stored */
    INGEST_SUPERSEDED, /* a replaceable or addressable event older than the stored version: not stored */
    INGEST_EPHEMERAL,  /* verified but, being ephemeral, not stored: the caller delivers it */
};

struct ingest_options {
    int64_t max_future_seconds; /* how far ahead of the clock created_at may be */
};

struct ingest_stats {
    uint64_t verified;       /* signatures checked */
    uint64_t bad_signatures; /* ... that were not the author's */
    uint64_t known;          /* events found stored before their signature was checked */
};

struct ingest;
struct ingest_job;

/*
 * Runs once on the loop thread with an enum ingest_result or a negative error
 * (-EKEYREJECTED, -EFBIG, -ENOSPC, -EIO). `ev` is the event, valid only during the call.
 * The job is the caller's again: it may free it.
 */
typedef void (*ingest_done_fn)(struct ingest_job *job, int status, const struct event_view *ev);

/* One event on its way, embedded in the caller's own struct. Set `done`; the rest is the pipeline's. */
struct ingest_job {
    ingest_done_fn done;
    struct work _work;
    struct store_event_write _ew;
    struct ingest *_ig;
    uint8_t _pubkey[32];
    uint8_t _sig[64];
    uint32_t _kind;
    bool _sig_ok;
};

/*
 * Prepares the pipeline in `*out`: signatures are checked on `verify`, events
 * stored in `st`; both must outlive it. Release with ingest_free(). Returns 0.
 */
int ingest_init(struct ingest **out, const struct ingest_options *opt, struct store *st, struct workpool *verify);

/*
 * The first stage, on the loop thread: parses `obj` strictly and checks the id
 * and the date. Returns 0 with `ev` filled (the caller releases it with
 * event_free()), or an error with one line in `reason` and nothing to free:
 * -EINVAL, -EBADMSG or -ERANGE; after the last two `ev->id` still holds the
 * event's id, for an answer that names it.
 */
int ingest_check(const struct ingest *ig, json_t *obj, struct event *ev, char *reason, size_t len);

/*
 * The second stage, for an event ingest_check() passed and the caller accepts:
 * returns INGEST_DUPLICATE when it is already stored (its signature was checked
 * then; `job` is not used), or 0 once `job` is queued: the signature is checked on
 * the verify pool, the event stored, and job->done called with the outcome. `ev`
 * stays the caller's.
 */
int ingest_submit(struct ingest *ig, const struct event *ev, struct ingest_job *job);

void ingest_stats(const struct ingest *ig, struct ingest_stats *out);

/* Releases the pipeline, once every job's `done` has run (the verify pool stopped and the store closed). */
void ingest_free(struct ingest *ig);

#endif
