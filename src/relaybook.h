/*
 * relaybook.h -- what each relay found through the outbox model has done: answers, failures, the last error and
 * its time to EOSE, kept in LMDB across restarts; and the back-off that follows a failure, so that a dead relay
 * costs one attempt rather than one per lookup. Relays are named by their canonical URL (nip65_canonical()).
 */
#ifndef PFP_RELAYBOOK_H
#define PFP_RELAYBOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;
struct db_table_check;
struct relaybook;

/* The first failure keeps a relay out this long; each further one in a row doubles it, up to a day. */
#define RELAYBOOK_BACKOFF_BASE_S 60
#define RELAYBOOK_BACKOFF_MAX_S  86400
#define RELAYBOOK_ERR_LEN        128

/* One relay's record, copied out. Times are Unix seconds: they outlive the process. */
struct relaybook_record {
    uint64_t successes;       /* subscriptions it answered with EOSE */
    uint64_t failures;        /* connections that failed, or ended, or timed out while it was asked */
    uint32_t failures_in_row; /* since the last success: the back-off's exponent */
    uint32_t eose_ms;         /* time from REQ to EOSE, a moving average over its answers */
    int64_t last_success;     /* 0: never */
    int64_t retry_at;         /* it is skipped until then */
    char last_error[RELAYBOOK_ERR_LEN];
};

struct relaybook_options {
    size_t max_relays; /* records kept; past it the least recently touched goes */
};

struct relaybook_stats {
    uint64_t known;       /* relays with a record */
    uint64_t backing_off; /* ... skipped now for their record */
};

/* Opens (creating) the table of records on `db`, before db_start(). Returns 0 or a negative error. */
int relaybook_init(struct relaybook **out, struct db *db, const struct relaybook_options *o);

/* Reads the records kept, after db_start(). Returns 0 or a negative error (the book then starts empty). */
int relaybook_load(struct relaybook *rb);

/* Whether `url` failed recently enough to be skipped, at Unix time `now`. */
bool relaybook_backing_off(const struct relaybook *rb, const char *url, int64_t now);

/* Copies `url`'s record into `out`. Returns false (and zeroes it) when there is none. */
bool relaybook_get(const struct relaybook *rb, const char *url, struct relaybook_record *out);

/* `url` answered a subscription with EOSE after `eose_ms`: its back-off ends. */
void relaybook_success(struct relaybook *rb, const char *url, uint32_t eose_ms, int64_t now);

/* `url` failed (`why`, in words): it is skipped for the back-off that follows. */
void relaybook_failure(struct relaybook *rb, const char *url, const char *why, int64_t now);

/* Orders `urls` healthiest first: fewest failures for its answers, then fastest to EOSE; unknown relays between. */
void relaybook_rank(const struct relaybook *rb, const char **urls, size_t n);

void relaybook_stats(const struct relaybook *rb, int64_t now, struct relaybook_stats *out);

/* Releases the book, after db_shutdown() (its writes are then settled). NULL is allowed. */
void relaybook_free(struct relaybook *rb);

/* What the book's table holds, for db_check(). */
const struct db_table_check *relaybook_table_checks(size_t *n);

#endif
