/* jobs.c -- batch jobs that cache pictures ahead of requests, and sync jobs, durable across restarts. */
#include "jobs.h"

#include <endian.h>
#include <errno.h>
#include <h2o/memory.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "err.h"
#include "hex.h"
#include "log.h"

/* Pubkeys being cached at once, across jobs: enough to fill the upstream lookups' batches. */
#define JOBS_INFLIGHT 256
/* Finished jobs kept for GET /jobs; older ones are deleted as new ones come. */
#define JOBS_KEEP 1000
/* Progress reaches the database at most this long after it is made. */
#define FLUSH_MS 250

struct job {
    uint64_t id;
    struct job_head h;
    uint8_t *bits;          /* h.total bits: the pubkeys done */
    uint8_t (*pubkeys)[32]; /* h.total of them */
    uint32_t next;          /* the next index to consider starting */
    uint32_t working;       /* its pubkeys being cached now */
    bool dirty;             /* progress not yet handed to the writer */
    h2o_linklist_t link;    /* in jobs._active */
    /* A sync's: */
    struct sync_progress prog;
    char *relay, *filter;
    struct sync_run *run; /* while it runs */
    struct jobs *js;      /* for the sync's callbacks */
};

/* One pubkey of a job being cached. */
struct job_work {
    struct pfp_watch w;
    struct jobs *js;
    struct job *job;
    uint32_t index;
    h2o_linklist_t link; /* in jobs._working */
};

/* A job's record as it stands, to store; once the job has ended, its pubkeys are deleted. */
struct job_progress_write {
    struct db_write w;
    struct jobs *js;
    uint8_t key[8];
    uint8_t *rec;
    size_t rec_len;
    bool finished;
};

/* A new job: its record and its pubkeys, stored before the job is acknowledged. */
struct job_create_write {
    struct db_write w;
    struct jobs *js;
    uint8_t key[8];
    uint8_t *rec;
    size_t rec_len;
    struct job *job; /* its pubkeys are stored; it runs once committed */
    jobs_created_fn created;
    void *ctx;
};

static void id_key(uint8_t k[8], uint64_t id)
{
    uint64_t be = htobe64(id);
    memcpy(k, &be, 8);
}

static uint64_t key_id(const uint8_t k[8])
{
    uint64_t be;
    memcpy(&be, k, 8);
    return be64toh(be);
}

static size_t bitmap_len(uint32_t total)
{
    return ((size_t)total + 7) / 8;
}

static bool bit_get(const uint8_t *bits, uint32_t i)
{
    return bits[i / 8] >> (i % 8) & 1;
}

static uint8_t *encode(const struct job *j, size_t *len)
{
    size_t relay_len, filter_len;
    uint8_t *rec;

    if (j->h.type != JOB_SYNC) {
        *len = sizeof(j->h) + bitmap_len(j->h.total);
        if ((rec = malloc(*len)) == NULL)
            abort();
        memcpy(rec, &j->h, sizeof(j->h));
        memcpy(rec + sizeof(j->h), j->bits, bitmap_len(j->h.total));
        return rec;
    }
    relay_len = strlen(j->relay) + 1;
    filter_len = strlen(j->filter) + 1;
    *len = sizeof(j->h) + sizeof(j->prog) + relay_len + filter_len;
    if ((rec = malloc(*len)) == NULL)
        abort();
    memcpy(rec, &j->h, sizeof(j->h));
    memcpy(rec + sizeof(j->h), &j->prog, sizeof(j->prog));
    memcpy(rec + sizeof(j->h) + sizeof(j->prog), j->relay, relay_len);
    memcpy(rec + sizeof(j->h) + sizeof(j->prog) + relay_len, j->filter, filter_len);
    return rec;
}

/* A sync's record past its header: its progress, and its two strings, pointing into the record. */
static int decode_sync(const MDB_val *v, struct sync_progress *p, const char **relay, const char **filter)
{
    const char *tail = (const char *)v->mv_data + sizeof(struct job_head) + sizeof(*p);
    size_t len = v->mv_size - sizeof(struct job_head) - sizeof(*p);
    const char *nul;

    if (v->mv_size < sizeof(struct job_head) + sizeof(*p) + 2 || tail[len - 1] != '\0' ||
        (nul = memchr(tail, '\0', len)) == tail + len - 1)
        return -EINVAL;
    memcpy(p, (const char *)v->mv_data + sizeof(struct job_head), sizeof(*p));
    p->error[sizeof(p->error) - 1] = '\0';
    *relay = tail;
    *filter = nul + 1;
    return 0;
}

static int decode_head(const MDB_val *v, struct job_head *h)
{
    struct sync_progress p;
    const char *relay, *filter;

    if (v->mv_size < sizeof(*h))
        return -EINVAL;
    memcpy(h, v->mv_data, sizeof(*h));
    if (h->type == JOB_SYNC)
        return h->total == 0 && decode_sync(v, &p, &relay, &filter) == 0 ? 0 : -EINVAL;
    return v->mv_size == sizeof(*h) + bitmap_len(h->total) ? 0 : -EINVAL;
}

/* --- checking --------------------------------------------------------------------------------------------------- */

static int check_head(const MDB_val *k, const MDB_val *v, char *why, size_t whylen)
{
    struct job_head h;

    if (k->mv_size != 8)
        return err_set(why, whylen, -EINVAL, "a key of %zu bytes, not a job id", k->mv_size);
    if (decode_head(v, &h) != 0 || h.type < JOB_BATCH || h.type > JOB_SYNC || h.state < JOB_QUEUED ||
        h.state > JOB_FAILED || h.done > h.total)
        return err_set(why, whylen, -EINVAL, "not a job record");
    return 0;
}

static int check_items(const MDB_val *k, const MDB_val *v, char *why, size_t whylen)
{
    if (k->mv_size != 8)
        return err_set(why, whylen, -EINVAL, "a key of %zu bytes, not a job id", k->mv_size);
    if (v->mv_size % 32 != 0)
        return err_set(why, whylen, -EINVAL, "%zu bytes, not a list of pubkeys", v->mv_size);
    return 0;
}

const struct db_table_check *jobs_table_checks(size_t *n)
{
    static const struct db_table_check checks[] = {{"jobs", check_head}, {"job_items", check_items}};

    *n = sizeof(checks) / sizeof(checks[0]);
    return checks;
}

/* --- writes ------------------------------------------------------------------------------------------------------- */

/* Deletes the oldest finished jobs beyond JOBS_KEEP. */
static int prune(struct jobs *js, MDB_txn *txn)
{
    MDB_stat st;
    MDB_cursor *cur;
    MDB_val k, v;
    size_t count;
    int rc;

    if ((rc = mdb_stat(txn, js->_heads, &st)) != 0 || (rc = mdb_cursor_open(txn, js->_heads, &cur)) != 0)
        return db_errno(rc);
    count = st.ms_entries;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && count > JOBS_KEEP;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct job_head h;
        if (decode_head(&v, &h) == 0 && (h.state == JOB_QUEUED || h.state == JOB_RUNNING))
            continue;
        if ((rc = mdb_del(txn, js->_items, &k, NULL)) != 0 && rc != MDB_NOTFOUND)
            break;
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
        count--;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : db_errno(rc);
}

static int apply_progress(MDB_txn *txn, struct db_write *w)
{
    struct job_progress_write *pw = H2O_STRUCT_FROM_MEMBER(struct job_progress_write, w, w);
    MDB_val k = {8, pw->key}, v = {pw->rec_len, pw->rec};
    int rc;

    if ((rc = mdb_put(txn, pw->js->_heads, &k, &v, 0)) != 0)
        return db_errno(rc);
    if (pw->finished && (rc = mdb_del(txn, pw->js->_items, &k, NULL)) != 0 && rc != MDB_NOTFOUND)
        return db_errno(rc);
    return 0;
}

static int apply_create(MDB_txn *txn, struct db_write *w)
{
    struct job_create_write *cw = H2O_STRUCT_FROM_MEMBER(struct job_create_write, w, w);
    struct jobs *js = cw->js;
    MDB_val k = {8, cw->key}, v = {cw->rec_len, cw->rec};
    MDB_val iv = {(size_t)cw->job->h.total * 32, cw->job->pubkeys};
    int rc;

    if ((rc = mdb_put(txn, js->_heads, &k, &v, 0)) != 0)
        return db_errno(rc);
    if (cw->job->h.type != JOB_SYNC && (rc = mdb_put(txn, js->_items, &k, &iv, 0)) != 0)
        return db_errno(rc);
    return prune(js, txn);
}

static void schedule_pump(struct jobs *js);

static void job_free(struct job *j)
{
    free(j->bits);
    free(j->pubkeys);
    free(j->relay);
    free(j->filter);
    free(j);
}

static void on_created(struct db_write *w)
{
    struct job_create_write *cw = H2O_STRUCT_FROM_MEMBER(struct job_create_write, w, w);
    struct jobs *js = cw->js;
    struct job *j = cw->job;
    uint64_t id = j->id;

    /* Unfinished jobs run oldest first. */
    if (w->status == 0 && !js->_closing) {
        h2o_linklist_insert(&js->_active, &j->link);
        js->_stats.created++;
        schedule_pump(js);
    } else {
        job_free(j);
    }
    cw->created(cw->ctx, w->status, w->status == 0 ? id : 0);
    free(cw->rec);
    free(cw);
}

static void on_progress_written(struct db_write *w)
{
    struct job_progress_write *pw = H2O_STRUCT_FROM_MEMBER(struct job_progress_write, w, w);

    /* After the writer has stopped, what is not written is done again after the restart. */
    if (w->status != 0 && w->status != -ESHUTDOWN)
        log_error("jobs: cannot store a job's progress: %s", strerror(-w->status));
    free(pw->rec);
    free(pw);
}

static void write_progress(struct jobs *js, struct job *j)
{
    struct job_progress_write *pw = calloc(1, sizeof(*pw));

    if (pw == NULL)
        abort();
    pw->js = js;
    id_key(pw->key, j->id);
    pw->rec = encode(j, &pw->rec_len);
    pw->finished = j->h.state == JOB_DONE || j->h.state == JOB_FAILED;
    pw->w.apply = apply_progress;
    pw->w.done = on_progress_written;
    j->dirty = false;
    db_submit(js->_db, &pw->w);
}

static struct job *job_of(h2o_linklist_t *l)
{
    return H2O_STRUCT_FROM_MEMBER(struct job, link, l);
}

static void on_flush_timer(uv_timer_t *t)
{
    struct jobs *js = t->data;

    for (h2o_linklist_t *l = js->_active.next; l != &js->_active; l = l->next) {
        if (job_of(l)->dirty)
            write_progress(js, job_of(l));
    }
}

/* --- running ------------------------------------------------------------------------------------------------------ */

static void on_item_done(struct pfp_watch *w, enum pfp_outcome outcome)
{
    struct job_work *jw = H2O_STRUCT_FROM_MEMBER(struct job_work, w, w);
    struct jobs *js = jw->js;
    struct job *j = jw->job;

    h2o_linklist_unlink(&jw->link);
    js->_inflight--;
    j->working--;
    /* Abandoned at shutdown: not counted, so it is done again after the restart. */
    if (outcome != PFP_ABANDONED || !js->_closing) {
        j->bits[jw->index / 8] |= (uint8_t)(1u << (jw->index % 8));
        j->h.done++;
        js->_stats.items_done++;
        switch (outcome) {
        case PFP_CACHED: j->h.cached++; break;
        case PFP_ALREADY_CACHED: j->h.already_cached++; break;
        case PFP_NOT_FOUND: j->h.not_found++; break;
        default: j->h.failed++; break;
        }
        j->dirty = true;
        /* Once stopping, no timer runs: what still ends is written at once. */
        if (js->_closing)
            write_progress(js, j);
        else if (!uv_is_active((uv_handle_t *)&js->_flush_timer))
            uv_timer_start(&js->_flush_timer, on_flush_timer, FLUSH_MS, 0);
    }
    free(jw);
    schedule_pump(js);
}

/* Jobs with every pubkey done are written as done and leave the active list. */
static void settle(struct jobs *js)
{
    for (h2o_linklist_t *l = js->_active.next, *next; l != &js->_active; l = next) {
        struct job *j = job_of(l);

        next = l->next;
        if (j->h.type == JOB_SYNC || j->h.done < j->h.total || j->working > 0)
            continue;
        h2o_linklist_unlink(&j->link);
        j->h.state = JOB_DONE;
        j->h.finished_at = (uint64_t)clock_now_s();
        if (j->h.started_at == 0)
            j->h.started_at = j->h.finished_at;
        js->_stats.finished++;
        write_progress(js, j);
        job_free(j);
    }
}

/* --- syncs ------------------------------------------------------------------------------------------------------ */

static void mark_dirty(struct jobs *js, struct job *j)
{
    j->dirty = true;
    if (!uv_is_active((uv_handle_t *)&js->_flush_timer))
        uv_timer_start(&js->_flush_timer, on_flush_timer, FLUSH_MS, 0);
}

static void on_sync_progress(void *ctx, const struct sync_progress *p)
{
    struct job *j = ctx;

    j->prog = *p;
    mark_dirty(j->js, j);
}

static void finish_sync(struct jobs *js, struct job *j, int status)
{
    h2o_linklist_unlink(&j->link);
    j->run = NULL;
    js->_syncing = NULL;
    j->h.state = status == 0 ? JOB_DONE : JOB_FAILED;
    j->h.finished_at = (uint64_t)clock_now_s();
    js->_stats.finished++;
    write_progress(js, j);
    job_free(j);
    schedule_pump(js);
}

static void on_sync_done(void *ctx, int status, const struct sync_progress *p)
{
    struct job *j = ctx;

    j->prog = *p;
    finish_sync(j->js, j, status);
}

/* The oldest unfinished sync, once none runs. */
static void start_sync(struct jobs *js)
{
    if (js->_syncing != NULL)
        return;
    for (h2o_linklist_t *l = js->_active.next; l != &js->_active; l = l->next) {
        struct job *j = job_of(l);

        if (j->h.type != JOB_SYNC)
            continue;
        if (j->h.state == JOB_QUEUED) {
            j->h.state = JOB_RUNNING;
            j->h.started_at = (uint64_t)clock_now_s();
        }
        js->_syncing = j;
        j->js = js;
        j->run = sync_start(js->_sync, j->relay, j->filter, &j->prog, on_sync_progress, on_sync_done, j);
        if (j->run == NULL) {
            snprintf(j->prog.error, sizeof(j->prog.error), "its relay or filter is no longer valid");
            finish_sync(js, j, -1);
            return;
        }
        mark_dirty(js, j);
        return;
    }
}

/* Starts pubkeys, oldest job first, while fewer than JOBS_INFLIGHT are under way. */
static void on_pump(uv_timer_t *t)
{
    struct jobs *js = t->data;

    if (js->_closing)
        return;
    settle(js);
    start_sync(js);
    for (h2o_linklist_t *l = js->_active.next; l != &js->_active && js->_inflight < JOBS_INFLIGHT;) {
        struct job *j = job_of(l);
        struct job_work *jw;
        uint32_t i;

        if (j->next >= j->h.total) {
            l = l->next;
            continue;
        }
        if (bit_get(j->bits, i = j->next++))
            continue;
        if (j->h.state == JOB_QUEUED) {
            j->h.state = JOB_RUNNING;
            j->h.started_at = (uint64_t)clock_now_s();
            j->dirty = true;
        }
        if ((jw = calloc(1, sizeof(*jw))) == NULL)
            abort();
        jw->w.cb = on_item_done;
        jw->js = js;
        jw->job = j;
        jw->index = i;
        h2o_linklist_insert(&js->_working, &jw->link);
        js->_inflight++;
        j->working++;
        /* May call on_item_done() before it returns; that only schedules another pump. */
        pfp_precache(js->_pfp, j->pubkeys[i], PICTURES_AVATAR, &jw->w);
    }
}

static void schedule_pump(struct jobs *js)
{
    if (!js->_closing)
        uv_timer_start(&js->_pump_timer, on_pump, 0, 0);
}

/* --- creating and reading ------------------------------------------------------------------------------------- */

/* A new job of `type`, with the next id. */
static struct job *job_new(struct jobs *js, enum job_type type)
{
    struct job *j = calloc(1, sizeof(*j));
    /* Ids grow with time, so the database lists jobs oldest first; 8 bits leave room for bursts. */
    uint64_t id = (uint64_t)clock_now_ms() << 8;

    if (j == NULL)
        abort();
    js->_last_id = id > js->_last_id ? id : js->_last_id + 1;
    j->id = js->_last_id;
    j->h.type = (uint8_t)type;
    j->h.state = JOB_QUEUED;
    j->h.created_at = (uint64_t)clock_now_s();
    return j;
}

/* Stores the new job `j`; it runs once committed. */
static void submit_create(struct jobs *js, struct job *j, jobs_created_fn done, void *ctx)
{
    struct job_create_write *cw = calloc(1, sizeof(*cw));

    if (cw == NULL)
        abort();
    cw->js = js;
    id_key(cw->key, j->id);
    cw->rec = encode(j, &cw->rec_len);
    cw->job = j;
    cw->created = done;
    cw->ctx = ctx;
    cw->w.apply = apply_create;
    cw->w.done = on_created;
    db_submit(js->_db, &cw->w);
}

void jobs_create(struct jobs *js, enum job_type type, const uint8_t (*pubkeys)[32], size_t n, const uint8_t *owner,
                 jobs_created_fn done, void *ctx)
{
    struct job *j = job_new(js, type);

    if ((j->bits = calloc(1, bitmap_len((uint32_t)n) + 1)) == NULL || (j->pubkeys = malloc(n * 32 + 1)) == NULL)
        abort();
    j->h.total = (uint32_t)n;
    if (owner != NULL) {
        j->h.has_owner = 1;
        memcpy(j->h.owner, owner, 32);
    }
    memcpy(j->pubkeys, pubkeys, n * 32);
    submit_create(js, j, done, ctx);
}

void jobs_create_sync(struct jobs *js, const char *relay, const char *filter, jobs_created_fn done, void *ctx)
{
    struct job *j = job_new(js, JOB_SYNC);

    if ((j->relay = strdup(relay)) == NULL || (j->filter = strdup(filter)) == NULL)
        abort();
    submit_create(js, j, done, ctx);
}

static const char *type_name(uint8_t t)
{
    return t == JOB_SYNC ? "sync" : t == JOB_FOLLOWS ? "follows" : "batch";
}

static const char *state_name(uint8_t s)
{
    switch (s) {
    case JOB_QUEUED: return "queued";
    case JOB_RUNNING: return "running";
    case JOB_DONE: return "done";
    default: return "failed";
    }
}

static json_t *time_or_null(uint64_t t)
{
    return t != 0 ? json_integer((json_int_t)t) : json_null();
}

static json_t *sync_json(uint64_t id, const struct job_head *h, const struct sync_progress *p, const char *relay,
                         const char *filter)
{
    char hex[17];
    json_t *o;

    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)id);
    o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}",
                  "id", hex, "type", "sync", "state", state_name(h->state), "relay", relay, "filter",
                  json_loads(filter, 0, NULL), "windows", (json_int_t)p->windows, "records_compared",
                  (json_int_t)p->records, "round_trips", (json_int_t)p->round_trips, "ids_needed",
                  (json_int_t)p->needed, "ids_fetched", (json_int_t)p->fetched, "ids_stored", (json_int_t)p->stored,
                  "ids_have", (json_int_t)p->have, "ids_sent", (json_int_t)p->sent, "ids_accepted",
                  (json_int_t)p->accepted, "bytes_sent", (json_int_t)p->bytes_out, "bytes_received",
                  (json_int_t)p->bytes_in, "created_at", (json_int_t)h->created_at, "started_at",
                  time_or_null(h->started_at), "finished_at", time_or_null(h->finished_at));
    if (o != NULL)
        json_object_set_new(o, "error", p->error[0] != '\0' ? json_string(p->error) : json_null());
    return o;
}

static json_t *job_json(uint64_t id, const struct job_head *h)
{
    char hex[17];
    json_t *o;

    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)id);
    o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "id", hex, "type", type_name(h->type),
                  "state", state_name(h->state), "total", (json_int_t)h->total, "done", (json_int_t)h->done, "cached",
                  (json_int_t)h->cached, "already_cached", (json_int_t)h->already_cached, "not_found",
                  (json_int_t)h->not_found, "failed", (json_int_t)h->failed, "created_at", (json_int_t)h->created_at,
                  "started_at", time_or_null(h->started_at), "finished_at", time_or_null(h->finished_at));
    if (h->has_owner) {
        char owner[65];
        hex_encode(h->owner, 32, owner);
        owner[64] = '\0';
        json_object_set_new(o, "pubkey", json_string(owner));
    }
    return o;
}

static const struct job *find_active(const struct jobs *js, uint64_t id)
{
    for (const h2o_linklist_t *l = js->_active.next; l != &js->_active; l = l->next) {
        const struct job *j = H2O_STRUCT_FROM_MEMBER(struct job, link, l);
        if (j->id == id)
            return j;
    }
    return NULL;
}

/* The job as it stands: from memory while it runs (ahead of what is written), else from the database. */
static json_t *job_json_from(struct jobs *js, uint64_t id, const MDB_val *v)
{
    const struct job *j = find_active(js, id);
    struct job_head h;
    struct sync_progress p;
    const char *relay, *filter;

    if (j != NULL && j->h.type == JOB_SYNC)
        return sync_json(id, &j->h, &j->prog, j->relay, j->filter);
    if (j != NULL)
        return job_json(id, &j->h);
    if (decode_head(v, &h) != 0)
        return NULL;
    if (h.type == JOB_SYNC && decode_sync(v, &p, &relay, &filter) == 0)
        return sync_json(id, &h, &p, relay, filter);
    return job_json(id, &h);
}

int jobs_get(struct jobs *js, uint64_t id, json_t **out)
{
    uint8_t key[8];
    MDB_val k = {8, key}, v;
    MDB_txn *txn;
    int rc;

    *out = NULL;
    id_key(key, id);
    if ((rc = db_read_begin(js->_db, &txn)) != 0)
        return rc;
    if ((rc = db_errno(mdb_get(txn, js->_heads, &k, &v))) == 0 && (*out = job_json_from(js, id, &v)) == NULL)
        rc = -EIO;
    db_read_end(js->_db, txn);
    return rc;
}

json_t *jobs_list(struct jobs *js, size_t limit)
{
    json_t *a = json_array();
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;

    if (db_read_begin(js->_db, &txn) != 0)
        return a;
    if (mdb_cursor_open(txn, js->_heads, &cur) == 0) {
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_LAST); rc == 0 && json_array_size(a) < limit;
             rc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
            json_t *o = k.mv_size == 8 ? job_json_from(js, key_id(k.mv_data), &v) : NULL;
            if (o != NULL)
                json_array_append_new(a, o);
        }
        mdb_cursor_close(cur);
    }
    db_read_end(js->_db, txn);
    return a;
}

void jobs_count(struct jobs *js, uint64_t counts[JOB_FAILED + 1])
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;

    memset(counts, 0, (JOB_FAILED + 1) * sizeof(*counts));
    if (db_read_begin(js->_db, &txn) != 0)
        return;
    if (mdb_cursor_open(txn, js->_heads, &cur) == 0) {
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            const struct job *j = k.mv_size == 8 ? find_active(js, key_id(k.mv_data)) : NULL;
            struct job_head h;
            if (j != NULL)
                counts[j->h.state]++;
            else if (decode_head(&v, &h) == 0 && h.state <= JOB_FAILED)
                counts[h.state]++;
        }
        mdb_cursor_close(cur);
    }
    db_read_end(js->_db, txn);
}

int jobs_parse_id(const char *s, size_t len, uint64_t *id)
{
    uint8_t b[8];

    if (len != 16 || hex_decode(s, len, b, 8) != 0)
        return -EINVAL;
    *id = key_id(b);
    return 0;
}

/* --- life cycle ----------------------------------------------------------------------------------------------- */

int jobs_init(struct jobs *js, uv_loop_t *loop, struct db *db, struct pfp *pfp, struct sync *sync)
{
    int r;

    memset(js, 0, sizeof(*js));
    js->_loop = loop;
    js->_db = db;
    js->_pfp = pfp;
    js->_sync = sync;
    h2o_linklist_init_anchor(&js->_active);
    h2o_linklist_init_anchor(&js->_working);
    if ((r = db_open_table(db, "jobs", 0, &js->_heads)) != 0 ||
        (r = db_open_table(db, "job_items", 0, &js->_items)) != 0)
        return r;
    uv_timer_init(loop, &js->_pump_timer);
    uv_timer_init(loop, &js->_flush_timer);
    uv_timer_init(loop, &js->_sync_timer);
    js->_pump_timer.data = js->_flush_timer.data = js->_sync_timer.data = js;
    return 0;
}

void jobs_sync_every(struct jobs *js, const char *const *relays, size_t n, const char *filter, uint64_t every_ms)
{
    js->_sync_relays = relays;
    js->_nsync_relays = n;
    js->_sync_filter = filter;
    js->_sync_every = every_ms;
}

static void on_scheduled(void *ctx, int status, uint64_t id)
{
    (void)ctx;
    if (status != 0 && status != -ESHUTDOWN)
        log_error("jobs: cannot create a scheduled sync: %s", strerror(-status));
    else if (status == 0)
        log_info("jobs: sync job %016llx scheduled", (unsigned long long)id);
}

/* A sync with each configured relay that has none unfinished. */
static void on_sync_timer(uv_timer_t *t)
{
    struct jobs *js = t->data;

    if (js->_closing)
        return;
    for (size_t i = 0; i < js->_nsync_relays; i++) {
        if (!jobs_sync_unfinished(js, js->_sync_relays[i]))
            jobs_create_sync(js, js->_sync_relays[i], js->_sync_filter, on_scheduled, js);
    }
}

bool jobs_sync_unfinished(const struct jobs *js, const char *relay)
{
    for (const h2o_linklist_t *l = js->_active.next; l != &js->_active; l = l->next) {
        const struct job *j = H2O_STRUCT_FROM_MEMBER(struct job, link, l);
        if (j->h.type == JOB_SYNC && strcmp(j->relay, relay) == 0)
            return true;
    }
    return false;
}

void jobs_stats(const struct jobs *js, struct jobs_stats *out)
{
    *out = js->_stats;
}

/* Reads an unfinished job back; NULL when its pubkeys are gone or do not fit its record. */
static struct job *load(struct jobs *js, MDB_txn *txn, const MDB_val *k, const MDB_val *v)
{
    struct job *j = calloc(1, sizeof(*j));
    MDB_val iv;

    if (j == NULL)
        abort();
    if (decode_head(v, &j->h) != 0) {
        free(j);
        return NULL;
    }
    j->id = key_id(k->mv_data);
    if (j->h.type == JOB_SYNC) {
        const char *relay, *filter;
        decode_sync(v, &j->prog, &relay, &filter);
        if ((j->relay = strdup(relay)) == NULL || (j->filter = strdup(filter)) == NULL)
            abort();
        return j;
    }
    if (mdb_get(txn, js->_items, (MDB_val *)k, &iv) != 0 || iv.mv_size != (size_t)j->h.total * 32) {
        free(j);
        return NULL;
    }
    if ((j->bits = malloc(bitmap_len(j->h.total) + 1)) == NULL || (j->pubkeys = malloc(iv.mv_size + 1)) == NULL)
        abort();
    memcpy(j->bits, (const uint8_t *)v->mv_data + sizeof(j->h), bitmap_len(j->h.total));
    memcpy(j->pubkeys, iv.mv_data, iv.mv_size);
    return j;
}

/* Marks a job that cannot be resumed as failed, so that it does not stay "running" forever. */
static void fail_unloadable(struct jobs *js, uint64_t id, const struct job_head *h)
{
    struct job *j = calloc(1, sizeof(*j));

    if (j == NULL || (j->bits = calloc(1, bitmap_len(h->total) + 1)) == NULL)
        abort();
    j->id = id;
    j->h = *h;
    j->h.state = JOB_FAILED;
    j->h.finished_at = (uint64_t)clock_now_s();
    write_progress(js, j);
    job_free(j);
}

int jobs_start(struct jobs *js)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    if ((rc = db_read_begin(js->_db, &txn)) != 0)
        return rc;
    if ((rc = mdb_cursor_open(txn, js->_heads, &cur)) != 0) {
        db_read_end(js->_db, txn);
        return db_errno(rc);
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct job_head h;
        struct job *j;

        if (k.mv_size != 8)
            continue;
        js->_last_id = key_id(k.mv_data);
        if (decode_head(&v, &h) != 0 || (h.state != JOB_QUEUED && h.state != JOB_RUNNING))
            continue;
        if ((j = load(js, txn, &k, &v)) == NULL) {
            log_warn("jobs: job %016llx cannot be resumed: its pubkeys are missing",
                     (unsigned long long)key_id(k.mv_data));
            fail_unloadable(js, key_id(k.mv_data), &h);
            continue;
        }
        h2o_linklist_insert(&js->_active, &j->link);
        js->_stats.resumed++;
    }
    mdb_cursor_close(cur);
    db_read_end(js->_db, txn);
    if (js->_stats.resumed > 0)
        log_info("jobs: resuming %llu unfinished job(s)", (unsigned long long)js->_stats.resumed);
    schedule_pump(js);
    if (js->_nsync_relays > 0)
        uv_timer_start(&js->_sync_timer, on_sync_timer, 0, js->_sync_every);
    return 0;
}

void jobs_shutdown(struct jobs *js)
{
    if (js->_closing)
        return;
    js->_closing = true;
    uv_timer_stop(&js->_pump_timer);
    uv_timer_stop(&js->_flush_timer);
    uv_timer_stop(&js->_sync_timer);
    /* A sync stopped now resumes after the restart from the window it was in. */
    if (js->_syncing != NULL) {
        sync_cancel(js->_syncing->run);
        js->_syncing->run = NULL;
        js->_syncing = NULL;
    }
    for (h2o_linklist_t *l = js->_active.next; l != &js->_active; l = l->next) {
        if (job_of(l)->dirty)
            write_progress(js, job_of(l));
    }
}

void jobs_free(struct jobs *js)
{
    while (!h2o_linklist_is_empty(&js->_working)) {
        struct job_work *jw = H2O_STRUCT_FROM_MEMBER(struct job_work, link, js->_working.next);
        h2o_linklist_unlink(&jw->link);
        free(jw);
    }
    while (!h2o_linklist_is_empty(&js->_active)) {
        struct job *j = job_of(js->_active.next);
        h2o_linklist_unlink(&j->link);
        job_free(j);
    }
    if (js->_pump_timer.loop != NULL) {
        uv_close((uv_handle_t *)&js->_pump_timer, NULL);
        uv_close((uv_handle_t *)&js->_flush_timer, NULL);
        uv_close((uv_handle_t *)&js->_sync_timer, NULL);
    }
}
