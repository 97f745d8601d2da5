/*
 * jobs.h -- long work done in the background: batch jobs that cache many
 * pubkeys' pictures ahead of requests, and NIP-77 syncs with other relays.
 * Stored in LMDB before they are acknowledged, their progress written as it
 * goes, resumed where they stopped after a restart.
 */
#ifndef PFP_JOBS_H
#define PFP_JOBS_H

#include <h2o/linklist.h>
#include <jansson.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "db.h"
#include "pfp.h"
#include "sync.h"

enum job_type { JOB_BATCH = 1, JOB_FOLLOWS = 2, JOB_SYNC = 3 };
enum job_state { JOB_QUEUED = 1, JOB_RUNNING, JOB_DONE, JOB_FAILED };

/*
 * A job as stored: this header, then a bit per pubkey, set once that pubkey is
 * done; or, for a sync (whose total is 0), its struct sync_progress, then the
 * relay's URL and the filter's JSON, each ending with a NUL.
 */
struct job_head {
    uint8_t type, state;
    uint8_t has_owner; /* JOB_FOLLOWS: `owner` is whose follows these are */
    uint8_t unused;
    uint32_t total, done, cached, already_cached, not_found, failed;
    uint64_t created_at, started_at, finished_at; /* unix seconds; 0 until it happens */
    uint8_t owner[32];
};

struct job;
struct job_work;

struct jobs_stats {
    uint64_t created, finished, resumed;
    uint64_t items_done;
};

/* The fields are private. */
struct jobs {
    uv_loop_t *_loop;
    struct db *_db;
    struct pfp *_pfp;
    struct sync *_sync;
    struct job *_syncing; /* the sync job running: one at a time */
    /* Syncs made every _sync_every ms with each of _sync_relays (jobs_sync_every()). */
    const char *const *_sync_relays;
    size_t _nsync_relays;
    const char *_sync_filter;
    uint64_t _sync_every;
    uv_timer_t _sync_timer;
    MDB_dbi _heads;          /* big-endian id -> job_head + bitmap */
    MDB_dbi _items;          /* big-endian id -> its pubkeys, 32 bytes each (deleted once the job ends) */
    h2o_linklist_t _active;  /* unfinished jobs, oldest first */
    h2o_linklist_t _working; /* pubkeys being cached now, across jobs */
    size_t _inflight;
    uint64_t _last_id;
    uv_timer_t _pump_timer, _flush_timer;
    bool _closing;
    struct jobs_stats _stats;
};

/* Opens the job tables (between db_init() and db_start()); syncs run on `sync`. Returns 0 or a negative error. */
int jobs_init(struct jobs *js, uv_loop_t *loop, struct db *db, struct pfp *pfp, struct sync *sync);

/*
 * Before jobs_start(): a sync job with each of `relays` for `filter` (JSON text) at start-up and every
 * `every_ms`, unless one with that relay is unfinished. The strings must outlive the jobs.
 */
void jobs_sync_every(struct jobs *js, const char *const *relays, size_t n, const char *filter, uint64_t every_ms);

/* After db_start(): loads the unfinished jobs and runs them. Returns 0, or -EIO when the jobs cannot be read. */
int jobs_start(struct jobs *js);

typedef void (*jobs_created_fn)(void *ctx, int status, uint64_t id);

/*
 * Creates a job over `n` distinct pubkeys (JOB_FOLLOWS: `owner`'s follows).
 * `done` hears the new id once the job is committed, so an acknowledged job
 * survives a crash; it then runs. `status` is 0, -EFBIG, -ENOSPC, -EIO or -ESHUTDOWN.
 * `pubkeys` and `owner` are copied.
 */
void jobs_create(struct jobs *js, enum job_type type, const uint8_t (*pubkeys)[32], size_t n, const uint8_t *owner,
                 jobs_created_fn done, void *ctx);

/*
 * Creates a sync job with `relay` for `filter` (JSON text; both checked with sync_check(), and copied). `done`
 * hears as for jobs_create(). Syncs run one at a time, oldest first.
 */
void jobs_create_sync(struct jobs *js, const char *relay, const char *filter, jobs_created_fn done, void *ctx);

/* Whether a sync with `relay` is queued or running. */
bool jobs_sync_unfinished(const struct jobs *js, const char *relay);

/*
 * The job `id` as JSON ({id, type, state, total, done, cached, ...}) in `*out`,
 * the caller's reference (json_decref() it). Returns 0, -ENOENT when there is
 * no such job, or -EIO (or -EBUSY) when the database cannot be read.
 */
int jobs_get(struct jobs *js, uint64_t id, json_t **out);

/* The `limit` most recent jobs, newest first, as a new JSON array (empty when the database cannot be read). */
json_t *jobs_list(struct jobs *js, size_t limit);

/* How many jobs are in each state (indexed by enum job_state): those kept, the unfinished as they stand. */
void jobs_count(struct jobs *js, uint64_t counts[JOB_FAILED + 1]);

/* "0123456789abcdef": the id as clients see it. Returns 0, or -EINVAL for anything but 16 hex digits. */
int jobs_parse_id(const char *s, size_t len, uint64_t *id);

void jobs_stats(const struct jobs *js, struct jobs_stats *out);

/* What each of the job tables holds, for db_check(): `*n` of them, static. */
const struct db_table_check *jobs_table_checks(size_t *n);

/*
 * Writes the progress still in memory and starts no more work, before the
 * picture service shuts down (and db_shutdown()): pubkeys it abandons from
 * then on stay undone and are cached after a restart; those that still end
 * are written at once. Idempotent.
 */
void jobs_shutdown(struct jobs *js);

/* After the picture service has let go of every watch; the timers close with the loop's next iteration. */
void jobs_free(struct jobs *js);

#endif
