/*
 * sync.h -- NIP-77 as a client: reconciles the stored events of a filter with another relay's, a window of
 * records at a time, fetches the ids this side lacks with batched REQs (verified and stored as any event), and
 * optionally sends the other side the events it lacks. Each sync has a connection of its own, so bulk transfer
 * never waits behind, or delays, the lookups' upstream connections.
 */
#ifndef PFP_SYNC_H
#define PFP_SYNC_H

#include <jansson.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct store;
struct ingest;
struct workpool;

/*
 * Where a sync stands, kept with its job so that it resumes after a restart: windows are walked from the newest
 * records down, and `until` is where the next one ends. A fixed layout: it is stored as it is.
 */
struct sync_progress {
    int64_t until;        /* the next window's newest second (the filter's until before the first) */
    int64_t span;         /* 0, or the widest window in seconds the relay accepted after refusing a wider one */
    uint64_t windows;     /* windows reconciled */
    uint64_t records;     /* local records compared */
    uint64_t round_trips; /* NEG-OPEN and NEG-MSG sent and answered */
    uint64_t needed;      /* ids only the other relay has */
    uint64_t fetched;     /* ... received from it (asked for, and well-formed) */
    uint64_t stored;      /* ... verified and newly stored */
    uint64_t have;        /* ids only this relay has */
    uint64_t sent;        /* ... sent to the other relay (sync_push) */
    uint64_t accepted;    /* ... that it accepted */
    uint64_t bytes_in;    /* WebSocket messages received, in bytes */
    uint64_t bytes_out;   /* ... sent */
    char error[160];      /* why it failed; "" otherwise */
};

/* What a sync reconciles when it is not told: the profiles, contact lists and relay lists. */
#define SYNC_DEFAULT_FILTER "{\"kinds\":[0,3,10002]}"

struct sync_options {
    SSL_CTX *ssl_ctx;    /* for wss://: the trust store of the upstream connections */
    uint64_t timeout_ms; /* a relay silent this long while answers are due fails the sync */
    bool push;           /* send the other relay the events it lacks */
    uint32_t max_limit;  /* as for REQ, to parse filters */
};

struct sync_stats {
    uint64_t runs;    /* syncs started */
    uint64_t running; /* now */
    uint64_t done, failed;
    uint64_t windows, records, round_trips, needed, fetched, stored, have, sent, accepted, bytes_in, bytes_out;
};

struct sync;
struct sync_run;

/* Where a run stands, whenever it has moved on (a window done, a batch fetched); `p` is valid during the call. */
typedef void (*sync_progress_fn)(void *ctx, const struct sync_progress *p);
/* The run has ended: `status` is 0, or -1 with the reason in p->error. The run is gone after the call. */
typedef void (*sync_done_fn)(void *ctx, int status, const struct sync_progress *p);

/* The stores, pipeline and pool (the negentropy thread) must outlive it. Allocation failure aborts. */
struct sync *sync_init(uv_loop_t *loop, struct store *store, struct ingest *ingest, struct workpool *pool,
                       const struct sync_options *o);

/*
 * Checks what a sync is asked to do: `relay` a ws:// or wss:// URL and `filter` a NIP-01 filter object (its limit
 * aside: a set is reconciled whole). Returns 0, or -EINVAL with a sentence in `err`.
 */
int sync_check(const struct sync *sy, const char *relay, const json_t *filter, char *err, size_t errlen);

/*
 * Starts a sync of `filter` (JSON text, checked with sync_check()) with `relay`, from `from` (zeroed for a new
 * sync, or the progress a run reported, to resume). Both strings are copied. The callbacks run on the loop, never
 * from within this call.
 */
struct sync_run *sync_start(struct sync *sy, const char *relay, const char *filter, const struct sync_progress *from,
                            sync_progress_fn on_progress, sync_done_fn on_done, void *ctx);

/* Stops a run: no callback follows. What it fetched stays stored. */
void sync_cancel(struct sync_run *r);

/* Connections open or closing; wait for 0 before the loop stops. */
size_t sync_open_count(const struct sync *sy);

void sync_stats(const struct sync *sy, struct sync_stats *out);

/*
 * Once every run is cancelled and the worker pool and ingest pipeline have handed their work back; the memory
 * goes when the last run's connection has closed.
 */
void sync_free(struct sync *sy);

/* For the fuzzer: a run with no connection, whose messages from the relay are handed in directly. */
struct sync_run *sync_start_detached(struct sync *sy, const char *filter);
void sync_receive(struct sync_run *r, const uint8_t *msg, size_t len);

#endif
