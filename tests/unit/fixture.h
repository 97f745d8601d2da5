/*
 * fixture.h -- what the unit tests on a real loop and LMDB share: a temporary directory, a loop with its inbox, the
 * database on them, and the loop run until a condition holds; and synthetic events, for them and the filter tests.
 * Every function fails the test (cmocka) rather than return an error.
 */
#ifndef PFP_FIXTURE_H
#define PFP_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "db.h"
#include "inbox.h"

/*
 * How long fixture_run_until() waits. Far beyond what any wait takes, even under the sanitizers, and far below the
 * minute that the lookup tests use for "never".
 */
#define FIXTURE_WAIT_MS 5000

struct fixture {
    char dir[64]; /* the temporary directory */
    uv_loop_t loop;
    struct inbox inbox; /* the loop's, for the database and whatever the test adds */
    struct db *db;      /* NULL while closed */
    uv_timer_t _deadline;
    bool _late;
};

/* A test's usual start: a new temporary directory named after `name`, then the loop (fixture_loop_open()). */
void fixture_open(struct fixture *fx, const char *name);

/* The end of it: fixture_loop_close(), then the directory removed. */
void fixture_close(struct fixture *fx);

/* A cmocka test run between the setup() and teardown() of its file, which open and close its fixture. */
#define fixture_unit_test(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

/* Makes a new directory /tmp/pfp-test-NAME-XXXXXX, in fx->dir. */
void fixture_dir_make(struct fixture *fx, const char *name);

/* Removes fx->dir and everything in it. */
void fixture_dir_remove(struct fixture *fx);

/* Starts fx->loop and its inbox. */
void fixture_loop_open(struct fixture *fx);

/*
 * The relay's shutdown order: the writer commits what is queued and stops, the inbox runs what is left, the database
 * closes, and the loop runs until its handles have closed, then closes. A module on the database stops before this
 * and is freed after db_shutdown() and inbox_free(), which the test may thus call first (both are idempotent).
 */
void fixture_loop_close(struct fixture *fx);

/*
 * Opens (creating) the database `file` of fx->dir, with room for `max_mb`, its completions through fx->inbox. The
 * writer is not started: the test opens its tables, then calls db_start(fx->db).
 */
void fixture_db_open(struct fixture *fx, const char *file, uint64_t max_mb);

/* The writer commits what is queued and stops, then the database closes; its completions wait in the inbox. */
void fixture_db_close(struct fixture *fx);

/*
 * Runs fx's loop until `cond` holds, evaluated before each iteration; fails the test, naming `cond`, if
 * FIXTURE_WAIT_MS pass first.
 */
#define fixture_run_until(fx, cond)                                                                                    \
    do {                                                                                                               \
        fixture_wait_begin(fx);                                                                                        \
        while (!(cond)) {                                                                                              \
            if (!fixture_wait_step(fx))                                                                                \
                fail_msg("still not %s after %d ms", #cond, FIXTURE_WAIT_MS);                                          \
        }                                                                                                              \
        fixture_wait_end(fx);                                                                                          \
    } while (0)

/* fixture_run_until()'s steps: arm the deadline, run one iteration (false once the deadline passed), disarm. */
void fixture_wait_begin(struct fixture *fx);
bool fixture_wait_step(struct fixture *fx);
void fixture_wait_end(struct fixture *fx);

/*
 * The stored record of a synthetic event: its id, pubkey and signature are the bytes `id`, `pubkey` and 0x5a
 * repeated, which neither the store nor the filters check. `tags` is JSON text (NUL bytes allowed) and `content` is
 * `content_len` bytes. Returns a malloc()ed record of `*len` bytes; the caller frees it.
 */
uint8_t *fixture_record(uint8_t id, uint8_t pubkey, int64_t created_at, uint32_t kind, const char *tags,
                        const char *content, size_t content_len, size_t *len);

/* The JSON vectors at `path` (tests/vectors/..., made by their scripts there); fails the test if they do not load. */
json_t *fixture_vectors(const char *path, size_t flags);

#endif
