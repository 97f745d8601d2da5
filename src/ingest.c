/*
 * ingest.c -- the one path of every incoming event: checked on the loop, its signature on the verify pool,
 * stored by the store's writer, answered back on the loop.
 */
#include "ingest.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <h2o/memory.h>

#include "clock.h"

struct ingest {
    struct ingest_options opt;
    struct store *store;
    struct workpool *verify;
    struct ingest_stats stats;
};

int ingest_init(struct ingest **out, const struct ingest_options *opt, struct store *st, struct workpool *verify)
{
    struct ingest *ig = calloc(1, sizeof(*ig));

    if (ig == NULL)
        abort();
    ig->opt = *opt;
    ig->store = st;
    ig->verify = verify;
    *out = ig;
    return 0;
}

void ingest_free(struct ingest *ig)
{
    free(ig);
}

void ingest_stats(const struct ingest *ig, struct ingest_stats *out)
{
    *out = ig->stats;
}

int ingest_check(const struct ingest *ig, json_t *obj, struct event *ev, char *reason, size_t len)
{
    int rc = 0;

    if (event_parse(obj, ev, reason, len) != 0)
        return -EINVAL;
    if (!event_id_valid(ev)) {
        snprintf(reason, len, "the id is not the hash of the event");
        rc = -EBADMSG;
    } else if (ev->created_at > clock_now_s() + ig->opt.max_future_seconds) {
        snprintf(reason, len, "created_at is more than %lld seconds in the future",
                 (long long)ig->opt.max_future_seconds);
        rc = -ERANGE;
    }
    if (rc != 0) {
        uint8_t id[32];
        memcpy(id, ev->id, 32);
        event_free(ev);
        memcpy(ev->id, id, 32);
    }
    return rc;
}

/* Hands the outcome to the caller, who may free the job: nothing of it is touched after. */
static void finish(struct ingest_job *job, int status)
{
    uint8_t *rec = job->_ew.rec;
    struct event_view ev;

    event_view_decode(job->_ew.id, rec, job->_ew.rec_len, &ev);
    job->done(job, status, &ev);
    free(rec);
}

static void on_stored(struct store_event_write *ew)
{
    struct ingest_job *job = H2O_STRUCT_FROM_MEMBER(struct ingest_job, _ew, ew);

    if (ew->w.status != 0)
        finish(job, ew->w.status);
    else if (ew->result == STORE_DUPLICATE)
        finish(job, INGEST_DUPLICATE);
    else if (ew->result == STORE_SUPERSEDED)
        finish(job, INGEST_SUPERSEDED);
    else
        finish(job, INGEST_STORED);
}

static void verify_run(struct work *w)
{
    struct ingest_job *job = H2O_STRUCT_FROM_MEMBER(struct ingest_job, _work, w);
    job->_sig_ok = event_verify_sig(job->_ew.id, job->_pubkey, job->_sig);
}

static void verify_done(struct work *w)
{
    struct ingest_job *job = H2O_STRUCT_FROM_MEMBER(struct ingest_job, _work, w);
    struct ingest *ig = job->_ig;

    ig->stats.verified++;
    if (!job->_sig_ok) {
        ig->stats.bad_signatures++;
        finish(job, -EKEYREJECTED);
        return;
    }
    if (event_kind_class(job->_kind) == EVENT_EPHEMERAL) {
        finish(job, INGEST_EPHEMERAL);
        return;
    }
    job->_ew.done = on_stored;
    store_put_event(ig->store, &job->_ew);
}

/* Whether `id` is stored. A database that cannot be read says no: the writer decides then. */
static bool is_stored(struct ingest *ig, const uint8_t id[32])
{
    struct event_view stored;
    MDB_txn *txn;
    bool known;

    if (store_read_begin(ig->store, &txn) != 0)
        return false;
    known = store_get_event(ig->store, txn, id, &stored) == 0;
    store_read_end(ig->store, txn);
    return known;
}

int ingest_submit(struct ingest *ig, const struct event *ev, struct ingest_job *job)
{
    assert(job->done != NULL);
    /* A known event skips the signature check: its answer is already decided. */
    if (is_stored(ig, ev->id)) {
        ig->stats.known++;
        return INGEST_DUPLICATE;
    }
    job->_ig = ig;
    memcpy(job->_ew.id, ev->id, 32);
    memcpy(job->_pubkey, ev->pubkey, 32);
    memcpy(job->_sig, ev->sig, 64);
    job->_kind = ev->kind;
    job->_ew.rec = event_record_build(ev, &job->_ew.rec_len);
    job->_work.run = verify_run;
    job->_work.done = verify_done;
    workpool_submit(ig->verify, &job->_work);
    return 0;
}
