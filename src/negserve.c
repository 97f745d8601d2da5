/* negserve.c -- NIP-77 sessions on the relay's connections, answered from the stored events. */
#include "negserve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "filter.h"
#include "hex.h"
#include "log.h"
#include "negentropy.h"
#include "store.h"
#include "workpool.h"

#include <h2o/linklist.h>
#include <h2o/memory.h>

/* The largest message a session sends (before hex), so that clients' message limits are not exceeded. */
#define FRAME_LIMIT (256 * 1024)
/* Index entries one session's read may examine, beyond one per record it may hold. */
#define SCAN_SLACK 100000
/* Sessions' worth of max_records all connections together may hold, so that many connections cannot add up. */
#define HELD_SESSIONS 4

struct session {
    h2o_linklist_t link;     /* in its peer's sessions */
    h2o_linklist_t all_link; /* in negserve.sessions */
    struct negserve *ns;
    struct negserve_peer *peer; /* NULL once the connection or the session has ended, while its read is out */
    char *id;
    size_t id_len;
    struct filter filter;
    /* The client's message being answered on the thread: NEG-OPEN's first, once the records are read, then each
     * NEG-MSG's; the answer comes back in `reply`, or the reason it is malformed in `err`. */
    uint8_t *in;
    size_t in_len;
    struct buf reply;
    char err[200];
    int rc;
    struct work work;
    bool busy;    /* its work is on the thread */
    bool loaded;  /* its records are read */
    bool counted; /* ... and counted in negserve.held, or refused for it */
    int read_rc;
    struct neg_storage storage;
    size_t held; /* of its records, those counted in negserve.held */
    struct neg neg;
    uint64_t last_ms; /* when it last heard from its client */
};

struct negserve_peer {
    struct negserve *ns;
    negserve_send_fn send;
    void *ctx;
    h2o_linklist_t sessions;
    size_t nsessions;
};

struct negserve {
    struct negserve_options o;
    struct store *store;
    struct workpool *reads;
    h2o_linklist_t sessions; /* every session, busy or not */
    uv_timer_t idle;
    size_t npeers;
    size_t held; /* records the sessions hold */
    struct negserve_stats stats;
};

static uint64_t now_ms(void)
{
    return clock_mono_ns() / 1000000u;
}

static void send_notice(struct negserve_peer *p, const char *text)
{
    struct buf b = BUF_INIT;

    buf_appends(&b, "[\"NOTICE\",");
    buf_json_string(&b, text, strlen(text), BUF_JSON_WIRE);
    buf_appendc(&b, ']');
    p->send(p->ctx, &b);
    buf_free(&b);
}

static void send_err(struct negserve_peer *p, const char *id, size_t id_len, const char *reason)
{
    struct buf b = BUF_INIT;

    p->ns->stats.errors++;
    buf_appends(&b, "[\"NEG-ERR\",");
    buf_json_string(&b, id, id_len, BUF_JSON_WIRE);
    buf_appendc(&b, ',');
    buf_json_string(&b, reason, strlen(reason), BUF_JSON_WIRE);
    buf_appendc(&b, ']');
    p->send(p->ctx, &b);
    buf_free(&b);
}

static void session_free(struct session *s)
{
    s->ns->held -= s->held;
    h2o_linklist_unlink(&s->all_link);
    s->ns->stats.sessions_open--;
    filter_free(&s->filter);
    neg_storage_free(&s->storage);
    free(s->in);
    buf_free(&s->reply);
    free(s->id);
    free(s);
}

/* The session ends: at once, or when its read comes back. */
static void session_end(struct session *s)
{
    h2o_linklist_unlink(&s->link);
    s->peer->nsessions--;
    s->peer = NULL;
    if (!s->busy)
        session_free(s);
}

static struct session *find_session(struct negserve_peer *p, const char *id, size_t len)
{
    for (h2o_linklist_t *l = p->sessions.next; l != &p->sessions; l = l->next) {
        struct session *s = H2O_STRUCT_FROM_MEMBER(struct session, link, l);
        if (s->id_len == len && memcmp(s->id, id, len) == 0)
            return s;
    }
    return NULL;
}

/* --- a session's work, off the loop: its records read once, and every message answered ------------------------- */

/*
 * Reads the records the first time; then answers `in`. Answering is linear in the records (each round sums
 * their ids for the fingerprints), so with a million of them it is not for the loop either.
 */
static void work_run(struct work *w)
{
    struct session *s = H2O_STRUCT_FROM_MEMBER(struct session, work, w);
    struct buf out = BUF_INIT, have = BUF_INIT, need = BUF_INIT;

    if (!s->loaded) {
        struct store_hit *hits = NULL;
        size_t n = 0;

        s->read_rc = store_records(s->ns->store, &s->filter, 1, s->ns->o.max_records, s->ns->o.max_records + SCAN_SLACK,
                                   &hits, &n);
        for (size_t i = 0; s->read_rc == 0 && i < n; i++)
            neg_storage_add(&s->storage, hits[i].created_at < 0 ? 0 : (uint64_t)hits[i].created_at, hits[i].id);
        if (s->read_rc == 0)
            s->read_rc = neg_storage_seal(&s->storage);
        free(hits);
        if (s->read_rc != 0)
            return;
        s->loaded = true;
        /* A frame limit of this size is valid. */
        neg_init(&s->neg, &s->storage, FRAME_LIMIT);
    }
    s->rc = neg_reconcile(&s->neg, s->in, s->in_len, &out, &have, &need, s->err, sizeof(s->err));
    if (s->rc == 0) {
        buf_reserve(&s->reply, 2 * out.len + 1);
        hex_encode((const uint8_t *)out.data, out.len, s->reply.data);
        s->reply.len = 2 * out.len;
    }
    buf_free(&out);
    buf_free(&have);
    buf_free(&need);
}

static void work_done(struct work *w);

/* Hands the session's message `in` (malloc()ed, taken over) to the thread. */
static void work_start(struct session *s, uint8_t *in, size_t len)
{
    s->ns->stats.bytes_in += len;
    s->in = in;
    s->in_len = len;
    s->busy = true;
    s->reply.len = 0;
    s->work.run = work_run;
    s->work.done = work_done;
    workpool_submit(s->ns->reads, &s->work);
}

/* The records could not be had: the reason, and the session ends. */
static void refuse_records(struct session *s)
{
    struct negserve_peer *p = s->peer;

    switch (s->read_rc) {
    case -EMSGSIZE: send_err(p, s->id, s->id_len, "blocked: too many records"); break;
    case -EBUSY:
        send_err(p, s->id, s->id_len, "blocked: the relay holds too many records for other sessions; try again later");
        break;
    case -E2BIG:
        send_err(p, s->id, s->id_len, "blocked: the filter reads too much of the database for its records; narrow it");
        break;
    default:
        log_warn("negentropy: cannot read the records of a session: %s", strerror(-s->read_rc));
        send_err(p, s->id, s->id_len, "error: could not read the database");
        break;
    }
    session_end(s);
}

static void work_done(struct work *w)
{
    struct session *s = H2O_STRUCT_FROM_MEMBER(struct session, work, w);
    struct negserve *ns = s->ns;
    struct negserve_peer *p = s->peer;
    struct buf b = BUF_INIT;
    char reason[240];

    s->busy = false;
    free(s->in);
    s->in = NULL;
    if (p == NULL) {
        session_free(s);
        return;
    }
    s->last_ms = now_ms();
    if (s->loaded && !s->counted) {
        s->counted = true;
        ns->stats.records += s->storage.n;
        if (ns->held + s->storage.n > HELD_SESSIONS * ns->o.max_records)
            s->read_rc = -EBUSY;
        else
            ns->held += (s->held = s->storage.n);
    }
    if (s->read_rc != 0) {
        refuse_records(s);
    } else if (s->rc != 0) {
        snprintf(reason, sizeof(reason), "invalid: %s", s->err);
        send_err(p, s->id, s->id_len, reason);
        session_end(s);
    } else {
        ns->stats.bytes_out += s->reply.len / 2;
        ns->stats.round_trips++;
        buf_appends(&b, "[\"NEG-MSG\",");
        buf_json_string(&b, s->id, s->id_len, BUF_JSON_WIRE);
        buf_appends(&b, ",\"");
        buf_append(&b, s->reply.data, s->reply.len);
        buf_appends(&b, "\"]");
        p->send(p->ctx, &b);
        buf_free(&b);
    }
}

/* --- messages --------------------------------------------------------------------------------------------------- */

/* The subscription id of `msg`, or false with NOTICE or NEG-ERR sent. */
static bool message_id(struct negserve_peer *p, const char *verb, const json_t *msg, size_t nargs, const char **id,
                       size_t *len)
{
    const json_t *jid = json_array_get(msg, 1);
    char text[200];

    if (!json_is_string(jid)) {
        snprintf(text, sizeof(text), "invalid: %s needs a subscription id string", verb);
        send_notice(p, text);
        return false;
    }
    *id = json_string_value(jid);
    *len = json_string_length(jid);
    if (*len == 0 || *len > p->ns->o.max_subid_length) {
        snprintf(text, sizeof(text), "invalid: subscription id must be 1 to %zu characters", p->ns->o.max_subid_length);
        send_err(p, *id, *len, text);
        return false;
    }
    if (json_array_size(msg) != nargs) {
        snprintf(text, sizeof(text), "invalid: %s takes %zu elements", verb, nargs);
        send_err(p, *id, *len, text);
        return false;
    }
    return true;
}

/* The binary message of a hex string, or NULL with NEG-ERR sent. */
static uint8_t *message_bytes(struct negserve_peer *p, const char *id, size_t id_len, const json_t *hex, size_t *len)
{
    const char *h = json_string_value(hex);
    size_t n = json_string_length(hex);
    uint8_t *bytes;

    if (!json_is_string(hex) || n % 2 != 0 || n == 0) {
        send_err(p, id, id_len, "invalid: the negentropy message must be a non-empty string of hex digits");
        return NULL;
    }
    if ((bytes = malloc(n / 2)) == NULL)
        abort();
    if (hex_decode(h, n, bytes, n / 2) != 0) {
        free(bytes);
        send_err(p, id, id_len, "invalid: the negentropy message must be lowercase hex");
        return NULL;
    }
    *len = n / 2;
    return bytes;
}

static void handle_open(struct negserve_peer *p, const json_t *msg)
{
    struct negserve *ns = p->ns;
    const char *id;
    size_t id_len, len;
    struct session *s, *old;
    struct filter f;
    char reason[256], text[320];
    uint8_t *first;

    if (!message_id(p, "NEG-OPEN", msg, 4, &id, &id_len))
        return;
    if (filter_parse(json_array_get(msg, 2), ns->o.max_limit, &f, reason, sizeof(reason)) != 0) {
        snprintf(text, sizeof(text), "invalid: filter: %s", reason);
        send_err(p, id, id_len, text);
        return;
    }
    if ((first = message_bytes(p, id, id_len, json_array_get(msg, 3), &len)) == NULL) {
        filter_free(&f);
        return;
    }
    /* A NEG-OPEN with the id of an open session replaces it. */
    if ((old = find_session(p, id, id_len)) != NULL)
        session_end(old);
    if (p->nsessions >= ns->o.max_sessions) {
        snprintf(text, sizeof(text), "blocked: too many negentropy sessions (at most %zu per connection)",
                 ns->o.max_sessions);
        send_err(p, id, id_len, text);
        filter_free(&f);
        free(first);
        return;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL || (s->id = malloc(id_len + 1)) == NULL)
        abort();
    memcpy(s->id, id, id_len + 1);
    s->id_len = id_len;
    s->ns = ns;
    s->peer = p;
    s->filter = f;
    s->last_ms = now_ms();
    h2o_linklist_insert(&p->sessions, &s->link);
    h2o_linklist_insert(&ns->sessions, &s->all_link);
    p->nsessions++;
    ns->stats.sessions_total++;
    ns->stats.sessions_open++;
    work_start(s, first, len);
}

static void handle_msg(struct negserve_peer *p, const json_t *msg)
{
    const char *id;
    size_t id_len, len;
    struct session *s;
    uint8_t *bytes;

    if (!message_id(p, "NEG-MSG", msg, 3, &id, &id_len))
        return;
    if ((s = find_session(p, id, id_len)) == NULL) {
        send_err(p, id, id_len, "closed: no such negentropy session (it has ended, or was never opened)");
        return;
    }
    if ((bytes = message_bytes(p, id, id_len, json_array_get(msg, 2), &len)) == NULL) {
        session_end(s);
        return;
    }
    if (s->busy) {
        send_err(p, id, id_len, "invalid: NEG-MSG before the answer to the last message");
        session_end(s);
        free(bytes);
    } else {
        s->last_ms = now_ms();
        work_start(s, bytes, len);
    }
}

static void handle_close(struct negserve_peer *p, const json_t *msg)
{
    const char *id;
    size_t id_len;
    struct session *s;

    if (message_id(p, "NEG-CLOSE", msg, 2, &id, &id_len) && (s = find_session(p, id, id_len)) != NULL)
        session_end(s);
}

bool negserve_handle(struct negserve_peer *p, const char *verb, const json_t *msg)
{
    if (strcmp(verb, "NEG-OPEN") == 0)
        handle_open(p, msg);
    else if (strcmp(verb, "NEG-MSG") == 0)
        handle_msg(p, msg);
    else if (strcmp(verb, "NEG-CLOSE") == 0)
        handle_close(p, msg);
    else
        return false;
    return true;
}

/* --- peers and life cycle --------------------------------------------------------------------------------------- */

struct negserve_peer *negserve_peer_new(struct negserve *ns, negserve_send_fn send, void *ctx)
{
    struct negserve_peer *p = calloc(1, sizeof(*p));

    if (p == NULL)
        abort();
    ns->npeers++;
    p->ns = ns;
    p->send = send;
    p->ctx = ctx;
    h2o_linklist_init_anchor(&p->sessions);
    return p;
}

void negserve_peer_free(struct negserve_peer *p)
{
    if (p == NULL)
        return;
    while (!h2o_linklist_is_empty(&p->sessions))
        session_end(H2O_STRUCT_FROM_MEMBER(struct session, link, p->sessions.next));
    p->ns->npeers--;
    free(p);
}

/* Sessions that have heard nothing for idle_ms are closed; those at work are not idle. */
static void on_idle_check(uv_timer_t *t)
{
    struct negserve *ns = t->data;
    uint64_t now = now_ms();
    h2o_linklist_t *l, *next;
    char text[120];

    snprintf(text, sizeof(text), "closed: no message for %u s", (unsigned)(ns->o.idle_ms / 1000));
    for (l = ns->sessions.next; l != &ns->sessions; l = next) {
        struct session *s = H2O_STRUCT_FROM_MEMBER(struct session, all_link, l);
        next = l->next;
        if (s->peer != NULL && !s->busy && now - s->last_ms >= ns->o.idle_ms) {
            send_err(s->peer, s->id, s->id_len, text);
            session_end(s);
        }
    }
}

int negserve_init(struct negserve **out, uv_loop_t *loop, struct store *store, struct workpool *reads,
                  const struct negserve_options *o)
{
    struct negserve *ns = calloc(1, sizeof(*ns));
    uint64_t every;

    if (ns == NULL)
        abort();
    ns->o = *o;
    ns->store = store;
    ns->reads = reads;
    h2o_linklist_init_anchor(&ns->sessions);
    uv_timer_init(loop, &ns->idle);
    ns->idle.data = ns;
    /* Checked a few times per timeout, so that a session lasts at most a quarter longer than it. */
    every = o->idle_ms / 4 > 0 ? o->idle_ms / 4 : 1;
    uv_timer_start(&ns->idle, on_idle_check, every, every);
    uv_unref((uv_handle_t *)&ns->idle);
    *out = ns;
    return 0;
}

void negserve_shutdown(struct negserve *ns)
{
    uv_timer_stop(&ns->idle);
}

static void on_idle_closed(uv_handle_t *h)
{
    struct negserve *ns = h->data;

    while (!h2o_linklist_is_empty(&ns->sessions))
        session_free(H2O_STRUCT_FROM_MEMBER(struct session, all_link, ns->sessions.next));
    free(ns);
}

void negserve_free(struct negserve *ns)
{
    /* A connection still closing (shutdown's deadline passed) will call back: keep it then, as the relay does. */
    if (ns == NULL || ns->npeers > 0)
        return;
    uv_close((uv_handle_t *)&ns->idle, on_idle_closed);
}

void negserve_stats(const struct negserve *ns, struct negserve_stats *out)
{
    *out = ns->stats;
}
