/*
 * fuzz_sync.c -- libFuzzer driver for what a relay sends a sync: each line of the input is one message from the
 * relay, handed to sync_receive() as if it had come off the sync's connection, and through it to the negentropy
 * reconciliation, the batched fetches, the ingest pipeline and the store, all real. Each input is one run of the
 * filter {"kinds":[0]}; its first reconciliation is "sync-neg-1" and its first fetch "sync-ids-1". After each
 * line the work it started on the pool (a window read, a reply reconciled) is waited for, so that the next line
 * meets the run in its next state.
 */
#include <h2o/memory.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_pipeline.h"
#include "sync.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fuzz_pipeline pl;
static struct sync *sy;

struct fence {
    struct work work;
    bool passed;
};

static void fence_run(struct work *w)
{
    (void)w;
}

static void fence_done(struct work *w)
{
    H2O_STRUCT_FROM_MEMBER(struct fence, work, w)->passed = true;
}

/* One pool thread runs work in order: once a fence queued behind the run's work is back, that work is too. */
static void settle(void)
{
    struct fence f = {.work = {.run = fence_run, .done = fence_done}};

    workpool_submit(&pl.pool, &f.work);
    while (!f.passed)
        uv_run(&pl.loop, UV_RUN_ONCE);
    uv_run(&pl.loop, UV_RUN_NOWAIT);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_pipeline_init(&pl, "fuzz-sync");
    sy = sync_init(&pl.loop, &pl.st, pl.ig, &pl.pool,
                   &(struct sync_options){.timeout_ms = 600000, .push = true, .max_limit = 5000});
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sync_run *r = sync_start_detached(sy, "{\"kinds\":[0]}");

    if (r == NULL)
        abort();
    settle(); /* the window is read and NEG-OPEN is "sent" */
    for (size_t at = 0; at <= size;) {
        const uint8_t *end = memchr(data + at, '\n', size - at);
        size_t n = end != NULL ? (size_t)(end - (data + at)) : size - at;
        /* An exact copy, so that a read past the line is caught. */
        uint8_t *line = malloc(n ? n : 1);

        memcpy(line, data + at, n);
        sync_receive(r, line, n);
        free(line);
        settle();
        at += n + 1;
    }
    sync_cancel(r);
    settle();
    return 0;
}
