/* sync.c -- NIP-77 syncs with other relays: windows reconciled off the loop, the difference fetched and sent. */
#include "sync.h"

#include <errno.h>
#include <h2o/linklist.h>
#include <h2o/memory.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "clock.h"
#include "filter.h"
#include "hex.h"
#include "ingest.h"
#include "log.h"
#include "negentropy.h"
#include "store.h"
#include "url.h"
#include "workpool.h"
#include "ws.h"
#include "wsdial.h"

/* Local records reconciled at once: bounds what a sync holds (40 bytes each), whatever the set's size. */
#define WINDOW_MAX 100000
/* Index entries a window's read may examine, for filters the indexes serve badly. */
#define WINDOW_SCAN (20 * WINDOW_MAX)
/* The largest negentropy message this side sends, before hex: as the relay side's. */
#define FRAME_LIMIT (256 * 1024)
/* Ids per REQ, and REQs open at once: within what common relays allow a filter and a connection. */
#define BATCH_IDS    500
#define BATCHES_OPEN 4
/* Ids waiting to be fetched or sent past which the reconciliation waits for them. */
#define QUEUE_HIGH 10000
/* Events being verified and stored past which the connection stops being read. */
#define INGEST_HIGH 1000
/* Events sent and not yet answered with OK. */
#define OKS_OPEN 256
/* Bytes queued for the relay past which no more events are sent until it reads. */
#define SEND_HIGH (1024 * 1024)
/* Messages from the relay: id lists and events, never more. */
#define MAX_MESSAGE (32 * 1024 * 1024)
#define CHECK_MS    1000

struct batch {
    h2o_linklist_t link;
    char sub[32];
    uint8_t (*ids)[32]; /* sorted */
    uint8_t *got;       /* one flag per id, so a repeated event counts once */
    size_t n;
};

struct arrival {
    struct ingest_job job;
    struct sync_run *r;
};

struct sync_run {
    h2o_linklist_t link; /* in sync.runs */
    struct sync *sy;
    char *relay;
    struct ws_url url;
    json_t *filter_json; /* as given */
    struct filter filter;
    struct sync_progress p;
    sync_progress_fn on_progress;
    sync_done_fn on_done;
    void *ctx;
    struct wsdial *dial;
    struct ws_conn *ws;
    bool detached;  /* the fuzzer's: nothing is sent, and it stays until cancelled */
    bool over;      /* ended: failed, done or cancelled; nothing more is started */
    bool cancelled; /* ... by its owner, who hears nothing more */
    bool paused;
    /* The window being reconciled. */
    int64_t win_since;
    uint64_t session;
    char sub[32];
    bool neg_open;     /* NEG-OPEN sent, NEG-CLOSE not yet */
    bool neg_waiting;  /* an answer from the relay is due */
    bool neg_heard;    /* the relay has answered a NEG-OPEN of this run */
    bool neg_complete; /* the window's difference is known */
    struct neg_storage storage;
    struct neg neg;
    /* Work on the pool: the window's read (then the first message), or one answer. */
    struct work work;
    bool busy, reading;
    uint8_t *in;
    size_t in_len;
    struct buf out, have_out, need_out;
    int rc;
    char err[200];
    /* The next message, held while the ids found so far wait to be fetched or sent. */
    struct buf held;
    bool holding;
    /* Ids to fetch and to send, 32 bytes each, consumed from *_pos. */
    struct buf need, have;
    size_t need_pos, have_pos;
    h2o_linklist_t batches;
    size_t nbatches;
    uint64_t next_batch;
    size_t ingesting, oks;
    uint64_t heard_ms; /* when the relay last sent anything */
};

struct sync {
    uv_loop_t *loop;
    struct store *store;
    struct ingest *ingest;
    struct workpool *pool;
    struct sync_options o;
    h2o_linklist_t runs;
    size_t open; /* connections open or closing */
    uv_timer_t timer;
    bool freeing;
    struct sync_stats stats;
};

#define COUNT(r, field, n) ((r)->p.field += (n), (r)->sy->stats.field += (n))

static uint64_t now_ms(void)
{
    return clock_mono_ns() / 1000000u;
}

static void pump(struct sync_run *r);
static void start_window(struct sync_run *r);

/* --- the end of a run ------------------------------------------------------------------------------------------- */

static void sync_destroy(struct sync *sy);

static void run_free(struct sync_run *r)
{
    struct sync *sy = r->sy;

    while (!h2o_linklist_is_empty(&r->batches)) {
        struct batch *b = H2O_STRUCT_FROM_MEMBER(struct batch, link, r->batches.next);
        h2o_linklist_unlink(&b->link);
        free(b->ids);
        free(b->got);
        free(b);
    }
    h2o_linklist_unlink(&r->link);
    json_decref(r->filter_json);
    filter_free(&r->filter);
    neg_storage_free(&r->storage);
    free(r->in);
    buf_free(&r->out);
    buf_free(&r->have_out);
    buf_free(&r->need_out);
    buf_free(&r->held);
    buf_free(&r->need);
    buf_free(&r->have);
    free(r->relay);
    free(r);
    if (sy->freeing && h2o_linklist_is_empty(&sy->runs))
        sync_destroy(sy);
}

/* A run that has ended goes once nothing it started can call back. */
static void maybe_free(struct sync_run *r)
{
    if (r->over && !r->busy && r->ingesting == 0 && r->ws == NULL && r->dial == NULL && (!r->detached || r->cancelled))
        run_free(r);
}

static void close_connection(struct sync_run *r)
{
    if (r->dial != NULL) {
        wsdial_cancel(r->dial);
        r->dial = NULL;
    }
    if (r->ws != NULL)
        ws_close(r->ws, 1000, "sync over");
    if (r->paused && r->ws != NULL)
        ws_pause(r->ws, false);
}

/* The run ends; its owner hears how unless it cancelled it. `r` may be gone after this. */
static void end(struct sync_run *r, int status)
{
    if (r->over)
        return;
    r->over = true;
    r->sy->stats.running--;
    if (!r->cancelled)
        status == 0 ? r->sy->stats.done++ : r->sy->stats.failed++;
    close_connection(r);
    if (!r->cancelled && r->on_done != NULL)
        r->on_done(r->ctx, status, &r->p);
    maybe_free(r);
}

static void fail(struct sync_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct sync_run *r, const char *fmt, ...)
{
    va_list ap;

    if (r->over)
        return;
    va_start(ap, fmt);
    vsnprintf(r->p.error, sizeof(r->p.error), fmt, ap);
    va_end(ap);
    log_warn("sync %s: %s", r->relay, r->p.error);
    end(r, -1);
}

void sync_cancel(struct sync_run *r)
{
    r->cancelled = true;
    if (r->over)
        maybe_free(r);
    else
        end(r, 0);
}

static void progress(struct sync_run *r)
{
    if (!r->over && !r->detached)
        r->on_progress(r->ctx, &r->p);
}

/* --- sending ---------------------------------------------------------------------------------------------------- */

static void send_buf(struct sync_run *r, const struct buf *b)
{
    COUNT(r, bytes_out, b->len);
    if (r->ws != NULL)
        ws_send_text(r->ws, b->data, b->len);
}

/* ["NEG-MSG", sub, hex] or ["NEG-OPEN", sub, filter, hex] with the window's bounds in the filter. */
static void send_neg(struct sync_run *r, const struct buf *hex)
{
    struct buf b = BUF_INIT;

    buf_appends(&b, r->neg_open ? "[\"NEG-MSG\",\"" : "[\"NEG-OPEN\",\"");
    buf_appends(&b, r->sub);
    buf_appends(&b, "\",");
    if (!r->neg_open) {
        json_t *f = json_deep_copy(r->filter_json);
        char *text;

        json_object_del(f, "limit");
        json_object_del(f, "since");
        json_object_del(f, "until");
        if (r->win_since > 0)
            json_object_set_new(f, "since", json_integer(r->win_since));
        if (r->p.until != INT64_MAX)
            json_object_set_new(f, "until", json_integer(r->p.until));
        if ((text = json_dumps(f, JSON_COMPACT)) == NULL)
            abort();
        buf_appends(&b, text);
        buf_appendc(&b, ',');
        free(text);
        json_decref(f);
    }
    buf_appendc(&b, '"');
    buf_append(&b, hex->data, hex->len);
    buf_appends(&b, "\"]");
    r->neg_open = r->neg_waiting = true;
    r->heard_ms = now_ms();
    send_buf(r, &b);
    buf_free(&b);
}

static void close_neg(struct sync_run *r)
{
    struct buf b = BUF_INIT;

    if (!r->neg_open)
        return;
    buf_appendf(&b, "[\"NEG-CLOSE\",\"%s\"]", r->sub);
    send_buf(r, &b);
    buf_free(&b);
    r->neg_open = r->neg_waiting = false;
}

/* --- work on the pool ------------------------------------------------------------------------------------------- */

static void hex_into(struct buf *dst, const struct buf *bytes)
{
    dst->len = 0;
    buf_reserve(dst, 2 * bytes->len + 1);
    hex_encode((const uint8_t *)bytes->data, bytes->len, dst->data);
    dst->len = 2 * bytes->len;
}

/*
 * The window's records, then the first message; or the answer to the relay's message. Both are linear in the
 * window's records, which is why they are not the loop's.
 */
static void work_run(struct work *w)
{
    struct sync_run *r = H2O_STRUCT_FROM_MEMBER(struct sync_run, work, w);
    struct buf msg = BUF_INIT;

    r->have_out.len = r->need_out.len = 0;
    if (r->reading) {
        struct filter f = r->filter;
        struct store_hit *hits = NULL;
        size_t n = 0;

        f.until = r->p.until;
        if (r->p.span > 0 && r->p.until != INT64_MAX && r->p.until - r->p.span > f.since)
            f.since = r->p.until - r->p.span;
        else if (r->p.span > 0 && r->p.until == INT64_MAX && (int64_t)clock_now_s() - r->p.span > f.since)
            f.since = (int64_t)clock_now_s() - r->p.span;
        r->rc = store_window(r->sy->store, &f, WINDOW_MAX, WINDOW_SCAN, &hits, &n, &r->win_since);
        neg_storage_free(&r->storage);
        for (size_t i = 0; r->rc == 0 && i < n; i++)
            neg_storage_add(&r->storage, hits[i].created_at < 0 ? 0 : (uint64_t)hits[i].created_at, hits[i].id);
        free(hits);
        if (r->rc == 0 && (r->rc = neg_storage_seal(&r->storage)) == 0) {
            neg_init(&r->neg, &r->storage, FRAME_LIMIT);
            neg_initiate(&r->neg, &msg);
        }
    } else {
        r->rc = neg_reconcile(&r->neg, r->in, r->in_len, &msg, &r->have_out, &r->need_out, r->err, sizeof(r->err));
    }
    if (r->rc == 0)
        hex_into(&r->out, &msg);
    buf_free(&msg);
}

static void after_reply(struct sync_run *r);

static void work_done(struct work *w)
{
    struct sync_run *r = H2O_STRUCT_FROM_MEMBER(struct sync_run, work, w);

    r->busy = false;
    free(r->in);
    r->in = NULL;
    if (r->over) {
        maybe_free(r);
        return;
    }
    if (r->reading) {
        r->reading = false;
        switch (r->rc) {
        case 0:
            COUNT(r, records, r->storage.n);
            send_neg(r, &r->out);
            break;
        case -EMSGSIZE:
            fail(r, "more than %d local events share one second at or below %lld: the window cannot be split",
                 WINDOW_MAX, (long long)r->p.until);
            break;
        case -E2BIG: fail(r, "the filter reads too much of the database for its records; narrow it"); break;
        default: fail(r, "cannot read the local records: %s", strerror(-r->rc)); break;
        }
        return;
    }
    if (r->rc != 0) {
        fail(r, "the relay's negentropy message is invalid: %s", r->err);
        return;
    }
    after_reply(r);
}

static void submit(struct sync_run *r)
{
    r->busy = true;
    r->work.run = work_run;
    r->work.done = work_done;
    workpool_submit(r->sy->pool, &r->work);
}

/* --- windows ---------------------------------------------------------------------------------------------------- */

static void start_window(struct sync_run *r)
{
    snprintf(r->sub, sizeof(r->sub), "sync-neg-%llu", (unsigned long long)++r->session);
    r->neg_open = r->neg_waiting = r->neg_complete = false;
    r->reading = true;
    submit(r);
}

static bool window_settled(const struct sync_run *r)
{
    return r->neg_complete && !r->busy && r->need_pos == r->need.len && r->nbatches == 0 && r->ingesting == 0 &&
           r->have_pos == r->have.len && r->oks == 0;
}

/* The window's difference is fetched and sent: the next window, below it, or the end. */
static void check_window(struct sync_run *r)
{
    if (r->over || !window_settled(r))
        return;
    COUNT(r, windows, 1);
    r->need.len = r->need_pos = r->have.len = r->have_pos = 0;
    if (r->win_since <= r->filter.since) {
        end(r, 0);
        return;
    }
    r->p.until = r->win_since - 1;
    progress(r);
    start_window(r);
}

/* The next message goes once the ids found so far are mostly fetched and sent. */
static bool must_hold(const struct sync_run *r)
{
    return (r->need.len - r->need_pos) / 32 > QUEUE_HIGH || (r->have.len - r->have_pos) / 32 > QUEUE_HIGH;
}

static void release_held(struct sync_run *r)
{
    if (!r->holding || must_hold(r))
        return;
    r->holding = false;
    send_neg(r, &r->held);
    r->held.len = 0;
}

static void after_reply(struct sync_run *r)
{
    COUNT(r, round_trips, 1);
    COUNT(r, needed, r->need_out.len / 32);
    COUNT(r, have, r->have_out.len / 32);
    buf_append(&r->need, r->need_out.data, r->need_out.len);
    if (r->sy->o.push)
        buf_append(&r->have, r->have_out.data, r->have_out.len);
    if (r->out.len == 0) {
        close_neg(r);
        r->neg_complete = true;
    } else if (must_hold(r)) {
        buf_append(&r->held, r->out.data, r->out.len);
        r->holding = true;
    } else {
        send_neg(r, &r->out);
    }
    progress(r);
    pump(r);
    check_window(r);
}

/* A message is over the frame limit or the window is too wide: narrower windows, down to one second. */
static void shrink(struct sync_run *r, const char *reason)
{
    int64_t top = r->p.until != INT64_MAX ? r->p.until : (int64_t)clock_now_s();
    int64_t low = r->win_since > r->filter.since ? r->win_since : r->filter.since;

    r->neg_open = r->neg_waiting = false;
    if (top - low < 2) {
        fail(r, "the relay refused even a window of one second: %s", reason);
        return;
    }
    r->p.span = (top - low) / 2;
    log_info("sync %s: the relay refused a window (%s); trying %lld seconds", r->relay, reason, (long long)r->p.span);
    start_window(r);
}

/* --- fetching and sending the difference ------------------------------------------------------------------------ */

static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

static void send_batch(struct sync_run *r)
{
    struct batch *b = calloc(1, sizeof(*b));
    size_t n = (r->need.len - r->need_pos) / 32;
    struct buf m = BUF_INIT;
    char hex[65];

    if (b == NULL)
        abort();
    b->n = n < BATCH_IDS ? n : BATCH_IDS;
    if ((b->ids = malloc(b->n * 32)) == NULL || (b->got = calloc(1, b->n)) == NULL)
        abort();
    memcpy(b->ids, r->need.data + r->need_pos, b->n * 32);
    r->need_pos += b->n * 32;
    qsort(b->ids, b->n, 32, cmp_id);
    snprintf(b->sub, sizeof(b->sub), "sync-ids-%llu", (unsigned long long)++r->next_batch);
    buf_appendf(&m, "[\"REQ\",\"%s\",{\"ids\":[", b->sub);
    for (size_t i = 0; i < b->n; i++) {
        hex_encode(b->ids[i], 32, hex);
        hex[64] = '\0';
        buf_appendf(&m, "%s\"%s\"", i ? "," : "", hex);
    }
    buf_appendf(&m, "],\"limit\":%zu}]", b->n);
    h2o_linklist_insert(&r->batches, &b->link);
    r->nbatches++;
    r->heard_ms = now_ms();
    send_buf(r, &m);
    buf_free(&m);
}

static void send_event(struct sync_run *r, const uint8_t id[32])
{
    struct event_view v;
    MDB_txn *txn;
    struct buf m = BUF_INIT;

    if (store_read_begin(r->sy->store, &txn) != 0)
        return;
    if (store_get_event(r->sy->store, txn, id, &v) == 0) {
        buf_appends(&m, "[\"EVENT\",");
        buf_append(&m, v.json, v.json_len);
        buf_appendc(&m, ']');
    }
    store_read_end(r->sy->store, txn);
    /* An event replaced since the window was read is not sent: its successor is in a later sync. */
    if (m.len == 0)
        return;
    COUNT(r, sent, 1);
    r->oks++;
    r->heard_ms = now_ms();
    send_buf(r, &m);
    buf_free(&m);
}

static void pump(struct sync_run *r)
{
    if (r->over)
        return;
    while (r->need_pos < r->need.len && r->nbatches < BATCHES_OPEN)
        send_batch(r);
    while (r->have_pos < r->have.len && r->oks < OKS_OPEN && (r->ws == NULL || ws_queued(r->ws) < SEND_HIGH)) {
        send_event(r, (const uint8_t *)r->have.data + r->have_pos);
        r->have_pos += 32;
    }
    release_held(r);
}

static void on_arrived(struct ingest_job *job, int status, const struct event_view *ev)
{
    struct arrival *a = H2O_STRUCT_FROM_MEMBER(struct arrival, job, job);
    struct sync_run *r = a->r;

    (void)ev;
    free(a);
    r->ingesting--;
    if (status == INGEST_STORED)
        COUNT(r, stored, 1);
    else if (status < 0)
        log_debug("sync %s: an event was not stored: %s", r->relay, strerror(-status));
    if (r->paused && r->ingesting <= INGEST_HIGH / 2) {
        r->paused = false;
        if (r->ws != NULL)
            ws_pause(r->ws, false);
    }
    if (r->over) {
        maybe_free(r);
        return;
    }
    /* The job shows, and keeps across a restart, what is stored, not only what has arrived. */
    progress(r);
    check_window(r);
}

static struct batch *find_batch(struct sync_run *r, const char *sub)
{
    for (h2o_linklist_t *l = r->batches.next; l != &r->batches; l = l->next) {
        struct batch *b = H2O_STRUCT_FROM_MEMBER(struct batch, link, l);
        if (strcmp(b->sub, sub) == 0)
            return b;
    }
    return NULL;
}

static void on_event(struct sync_run *r, json_t *msg)
{
    struct batch *b =
        json_is_string(json_array_get(msg, 1)) ? find_batch(r, json_string_value(json_array_get(msg, 1))) : NULL;
    struct event ev;
    struct arrival *a;
    uint8_t *at;
    char reason[200];

    if (b == NULL || json_array_size(msg) != 3)
        return;
    if (ingest_check(r->sy->ingest, json_array_get(msg, 2), &ev, reason, sizeof(reason)) != 0) {
        log_debug("sync %s: an invalid event: %s", r->relay, reason);
        return;
    }
    /* Only what was asked for: a relay cannot fill the database with events of its choosing. */
    if ((at = bsearch(ev.id, b->ids, b->n, 32, cmp_id)) == NULL || b->got[(size_t)(at - b->ids[0]) / 32]) {
        event_free(&ev);
        return;
    }
    b->got[(size_t)(at - b->ids[0]) / 32] = 1;
    COUNT(r, fetched, 1);
    if ((a = calloc(1, sizeof(*a))) == NULL)
        abort();
    a->r = r;
    a->job.done = on_arrived;
    if (ingest_submit(r->sy->ingest, &ev, &a->job) == INGEST_DUPLICATE) {
        free(a);
    } else if (++r->ingesting >= INGEST_HIGH && !r->paused) {
        r->paused = true;
        if (r->ws != NULL)
            ws_pause(r->ws, true);
    }
    event_free(&ev);
}

/* EOSE or CLOSED: the batch has all it will get. */
static void on_batch_end(struct sync_run *r, json_t *msg, bool eose)
{
    struct batch *b =
        json_is_string(json_array_get(msg, 1)) ? find_batch(r, json_string_value(json_array_get(msg, 1))) : NULL;
    struct buf m = BUF_INIT;

    if (b == NULL)
        return;
    if (eose) {
        buf_appendf(&m, "[\"CLOSE\",\"%s\"]", b->sub);
        send_buf(r, &m);
        buf_free(&m);
    }
    h2o_linklist_unlink(&b->link);
    r->nbatches--;
    free(b->ids);
    free(b->got);
    free(b);
    progress(r);
    pump(r);
    check_window(r);
}

static void on_ok(struct sync_run *r, json_t *msg)
{
    if (r->oks == 0 || json_array_size(msg) < 3)
        return;
    r->oks--;
    if (json_is_true(json_array_get(msg, 2)))
        COUNT(r, accepted, 1);
    pump(r);
    check_window(r);
}

/* --- the relay's messages --------------------------------------------------------------------------------------- */

static bool for_session(const struct sync_run *r, json_t *msg)
{
    return r->neg_waiting && json_is_string(json_array_get(msg, 1)) &&
           strcmp(json_string_value(json_array_get(msg, 1)), r->sub) == 0;
}

static void on_neg_msg(struct sync_run *r, json_t *msg)
{
    const json_t *hex = json_array_get(msg, 2);
    size_t n = json_string_length(hex);

    if (!for_session(r, msg) || r->busy)
        return;
    if (json_array_size(msg) != 3 || !json_is_string(hex) || n % 2 != 0 || n == 0) {
        fail(r, "the relay's NEG-MSG is malformed");
        return;
    }
    if ((r->in = malloc(n / 2)) == NULL)
        abort();
    if (hex_decode_any_case(json_string_value(hex), n, r->in, n / 2) != 0) {
        fail(r, "the relay's NEG-MSG is not hex");
        return;
    }
    r->in_len = n / 2;
    r->neg_waiting = false;
    r->neg_heard = true;
    submit(r);
}

static void on_neg_err(struct sync_run *r, json_t *msg)
{
    const char *reason = json_is_string(json_array_get(msg, 2)) ? json_string_value(json_array_get(msg, 2)) : "";

    if (!for_session(r, msg))
        return;
    r->neg_heard = true;
    if (strncmp(reason, "blocked", 7) == 0)
        shrink(r, reason);
    else
        fail(r, "the relay ended the reconciliation: NEG-ERR \"%.100s\"", reason);
}

static void on_notice(struct sync_run *r, json_t *msg)
{
    const char *text = json_is_string(json_array_get(msg, 1)) ? json_string_value(json_array_get(msg, 1)) : "";

    /* A relay without NIP-77 answers NEG-OPEN, a command it does not know, with a notice. */
    if (r->neg_waiting && !r->neg_heard)
        fail(r, "the relay does not support NIP-77: it answered NEG-OPEN with NOTICE \"%.80s\"", text);
}

void sync_receive(struct sync_run *r, const uint8_t *data, size_t len)
{
    json_error_t jerr;
    json_t *msg;
    const char *verb;

    if (r->over)
        return;
    COUNT(r, bytes_in, len);
    r->heard_ms = now_ms();
    msg = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (msg == NULL || !json_is_array(msg) || !json_is_string(json_array_get(msg, 0))) {
        json_decref(msg);
        return;
    }
    verb = json_string_value(json_array_get(msg, 0));
    if (strcmp(verb, "EVENT") == 0)
        on_event(r, msg);
    else if (strcmp(verb, "EOSE") == 0)
        on_batch_end(r, msg, true);
    else if (strcmp(verb, "CLOSED") == 0)
        on_batch_end(r, msg, false);
    else if (strcmp(verb, "OK") == 0)
        on_ok(r, msg);
    else if (strcmp(verb, "NEG-MSG") == 0)
        on_neg_msg(r, msg);
    else if (strcmp(verb, "NEG-ERR") == 0)
        on_neg_err(r, msg);
    else if (strcmp(verb, "NOTICE") == 0)
        on_notice(r, msg);
    json_decref(msg);
}

/* --- the connection --------------------------------------------------------------------------------------------- */

static void on_ws_message(struct ws_conn *ws, const uint8_t *msg, size_t len, bool binary)
{
    if (!binary)
        sync_receive(ws_data(ws), msg, len);
}

static void on_ws_drain(struct ws_conn *ws)
{
    pump(ws_data(ws));
}

static void on_ws_close(struct ws_conn *ws)
{
    struct sync_run *r = ws_data(ws);

    r->ws = NULL;
    r->sy->open--;
    if (r->over)
        maybe_free(r);
    else
        fail(r, "the connection to the relay closed");
}

static const struct ws_handler sync_ws_handler = {
    .on_message = on_ws_message,
    .on_drain = on_ws_drain,
    .on_close = on_ws_close,
};

static void on_dialed(void *data, h2o_socket_t *sock, const char *err)
{
    struct sync_run *r = data;
    struct ws_options opt = {
        .max_message = MAX_MESSAGE, .low_water = SEND_HIGH / 2, .ping_interval = 30000, .max_queue = 16 * SEND_HIGH};

    r->dial = NULL;
    if (sock == NULL) {
        r->sy->open--;
        fail(r, "cannot connect: %s", err);
        return;
    }
    r->ws = ws_client(sock, &sync_ws_handler, r, &opt);
    log_info("sync %s: connected", r->relay);
    start_window(r);
}

/* Answers due and none heard for timeout_ms: the relay is not playing its part. */
static void on_check(uv_timer_t *t)
{
    struct sync *sy = t->data;
    uint64_t now = now_ms();
    h2o_linklist_t *l, *next;

    for (l = sy->runs.next; l != &sy->runs; l = next) {
        struct sync_run *r = H2O_STRUCT_FROM_MEMBER(struct sync_run, link, l);
        bool waiting = r->neg_waiting || r->nbatches > 0 || r->oks > 0;

        next = l->next;
        if (r->over || r->detached || !waiting || now - r->heard_ms < sy->o.timeout_ms)
            continue;
        if (r->neg_waiting && !r->neg_heard)
            fail(r, "no answer to NEG-OPEN in %llu s: the relay may not support NIP-77",
                 (unsigned long long)(sy->o.timeout_ms / 1000));
        else
            fail(r, "the relay stopped answering for %llu s", (unsigned long long)(sy->o.timeout_ms / 1000));
    }
}

/* --- runs --------------------------------------------------------------------------------------------------------- */

int sync_check(const struct sync *sy, const char *relay, const json_t *filter, char *err, size_t errlen)
{
    struct ws_url u;
    struct filter f;
    char reason[200];

    if (relay == NULL || url_parse_ws(relay, &u) != 0) {
        snprintf(err, errlen, "\"relay\" must be a ws:// or wss:// URL");
        return -EINVAL;
    }
    if (!json_is_object(filter)) {
        snprintf(err, errlen, "\"filter\" must be a NIP-01 filter object");
        return -EINVAL;
    }
    if (filter_parse(filter, sy->o.max_limit, &f, reason, sizeof(reason)) != 0) {
        snprintf(err, errlen, "\"filter\": %s", reason);
        return -EINVAL;
    }
    filter_free(&f);
    return 0;
}

static struct sync_run *run_new(struct sync *sy, const char *filter, const struct sync_progress *from)
{
    struct sync_run *r = calloc(1, sizeof(*r));
    json_error_t jerr;
    char reason[200];

    if (r == NULL)
        abort();
    r->sy = sy;
    h2o_linklist_init_anchor(&r->batches);
    if ((r->filter_json = json_loads(filter, 0, &jerr)) == NULL || !json_is_object(r->filter_json) ||
        filter_parse(r->filter_json, sy->o.max_limit, &r->filter, reason, sizeof(reason)) != 0) {
        json_decref(r->filter_json);
        free(r);
        return NULL;
    }
    if (from != NULL)
        r->p = *from;
    r->p.error[0] = '\0';
    /* A new sync starts below the filter's own until; a resumed one redoes the window it was in. */
    if (r->p.windows == 0)
        r->p.until = r->filter.until;
    h2o_linklist_insert(&sy->runs, &r->link);
    sy->stats.runs++;
    sy->stats.running++;
    return r;
}

struct sync_run *sync_start(struct sync *sy, const char *relay, const char *filter, const struct sync_progress *from,
                            sync_progress_fn on_progress, sync_done_fn on_done, void *ctx)
{
    struct ws_url url;
    struct sync_run *r;

    if (url_parse_ws(relay, &url) != 0 || (r = run_new(sy, filter, from)) == NULL)
        return NULL;
    if ((r->relay = strdup(relay)) == NULL)
        abort();
    r->url = url;
    r->on_progress = on_progress;
    r->on_done = on_done;
    r->ctx = ctx;
    sy->open++;
    r->dial = wsdial_start(sy->loop, &r->url, sy->o.ssl_ctx, NULL, sy->o.timeout_ms, on_dialed, r);
    return r;
}

struct sync_run *sync_start_detached(struct sync *sy, const char *filter)
{
    struct sync_run *r = run_new(sy, filter, NULL);

    if (r == NULL)
        return NULL;
    if ((r->relay = strdup("fuzz")) == NULL)
        abort();
    r->detached = true;
    start_window(r);
    return r;
}

size_t sync_open_count(const struct sync *sy)
{
    return sy->open;
}

void sync_stats(const struct sync *sy, struct sync_stats *out)
{
    *out = sy->stats;
}

struct sync *sync_init(uv_loop_t *loop, struct store *store, struct ingest *ingest, struct workpool *pool,
                       const struct sync_options *o)
{
    struct sync *sy = calloc(1, sizeof(*sy));

    if (sy == NULL)
        abort();
    sy->loop = loop;
    sy->store = store;
    sy->ingest = ingest;
    sy->pool = pool;
    sy->o = *o;
    h2o_linklist_init_anchor(&sy->runs);
    uv_timer_init(loop, &sy->timer);
    sy->timer.data = sy;
    uv_timer_start(&sy->timer, on_check, CHECK_MS, CHECK_MS);
    uv_unref((uv_handle_t *)&sy->timer);
    return sy;
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sync_destroy(struct sync *sy)
{
    uv_close((uv_handle_t *)&sy->timer, on_timer_closed);
}

void sync_free(struct sync *sy)
{
    h2o_linklist_t *l, *next;

    if (sy == NULL)
        return;
    sy->freeing = true;
    uv_timer_stop(&sy->timer);
    for (l = sy->runs.next; l != &sy->runs; l = next) {
        struct sync_run *r = H2O_STRUCT_FROM_MEMBER(struct sync_run, link, l);
        next = l->next;
        if (!r->over)
            sync_cancel(r);
    }
    if (h2o_linklist_is_empty(&sy->runs))
        sync_destroy(sy);
}
