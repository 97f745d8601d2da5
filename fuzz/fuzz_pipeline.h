/*
 * fuzz_pipeline.h -- for the drivers that run real services: a loop, and the ingest pipeline (one verify
 * thread) on a store in a temporary directory, removed at exit.
 */
#ifndef PFP_FUZZ_PIPELINE_H
#define PFP_FUZZ_PIPELINE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "db.h"
#include "inbox.h"
#include "ingest.h"
#include "store.h"
#include "workpool.h"

struct fuzz_pipeline {
    uv_loop_t loop;
    struct inbox inbox;
    struct db *db;
    struct store st;
    struct workpool pool;
    struct ingest *ig;
};

static char fuzz_dir[64];

static void fuzz_remove_dir(void)
{
    char path[128];

    snprintf(path, sizeof(path), "%s/events.db", fuzz_dir);
    remove(path);
    snprintf(path, sizeof(path), "%s/events.db-lock", fuzz_dir);
    remove(path);
    rmdir(fuzz_dir);
}

/* Sets `p` up for the driver `name`; aborts on failure. */
static void fuzz_pipeline_init(struct fuzz_pipeline *p, const char *name)
{
    char path[128], err[256];

    snprintf(fuzz_dir, sizeof(fuzz_dir), "/tmp/pfp-%s-XXXXXX", name);
    if (mkdtemp(fuzz_dir) == NULL)
        abort();
    atexit(fuzz_remove_dir);
    snprintf(path, sizeof(path), "%s/events.db", fuzz_dir);
    if (uv_loop_init(&p->loop) != 0 || inbox_init(&p->inbox, &p->loop) != 0 ||
        db_init(&p->db, &(struct db_options){path, 256}, &p->inbox, err, sizeof(err)) != 0 ||
        store_init(&p->st, p->db) != 0 || db_start(p->db) != 0 || workpool_init(&p->pool, 1, &p->inbox) != 0 ||
        ingest_init(&p->ig, &(struct ingest_options){.max_future_seconds = 900}, &p->st, &p->pool) != 0)
        abort();
}

#endif
