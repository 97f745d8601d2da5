/* pictures.c -- the picture index and its files kept in step: the file thread, batched writes, eviction. */
#include "pictures.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <h2o/memory.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "hex.h"
#include "keymap.h"
#include "log.h"
#include "picindex.h"

/* Last-served times still in memory are written at least this often. */
#define TOUCH_FLUSH_MS 30000
/*
 * Picture writes nobody waits for gather this long, or up to this many, before
 * the file thread takes them: each batch costs two filesystem syncs and a
 * commit however many pictures it holds.
 */
#define PUT_GATHER_MS 50
#define PUT_BATCH_MAX 64
/* Times a picture write that found the disk full waits for an eviction and tries again. */
#define SPACE_TRIES 8

/* --- writes ----------------------------------------------------------------------------------------------------- */

/*
 * What every write to the index shares. Each operation has its own struct
 * around it, with its own apply (writer thread) and completion (loop thread).
 * `work` carries it through the file thread when it needs file work before
 * (a picture's file checked) or after (files removed) the commit.
 */
struct px {
    struct db_write w;
    struct work work;
    struct pictures *x;
    struct picindex_change ch;
};

/* A file a write names: checked on the file thread before the write, and written from its bytes when missing. */
struct put_file {
    uint8_t hash[32];
    uint64_t bytes;           /* its size, as the write records it */
    struct blob_ref *content; /* NULL when the write has none: the file must be there */
    bool on_disk;             /* found (or written) before the write */
    uint64_t disk_bytes;      /* ... and its size */
    bool staged;              /* being written from `content`, in the batch's blob_batch */
    int write_err;            /* it was missing and could not be written from `content` */
};

struct put_variant {
    struct pictures_vkey key;
    struct variant_rec rec;
    struct put_file file;
};

/* A picture record (with variants of its picture), or one variant of a master alone. */
struct px_put {
    struct px b;
    bool variant_only;  /* no record: `variants` holds one variant of `master` */
    uint8_t master[32]; /* ... */
    uint8_t pubkey[32];
    uint8_t *value; /* the encoded record, NULL to delete it */
    size_t len;
    bool put_url;
    uint8_t url_key[32];
    struct url_rec url;
    bool has_file;        /* the record names a picture: `file` */
    struct put_file file; /* the record's picture */
    struct put_variant *variants;
    size_t nvariants;
    unsigned space_tries; /* evictions waited for after the disk was full */
    pictures_done_fn done;
    void *ctx;
    h2o_linklist_t link; /* in the loop's queue, then in its put_batch */
};

/*
 * Picture writes handed to the file thread together: their missing files are
 * written and made durable with one round of syncs (blob_batch), then their
 * records are submitted together, so that the writer commits them at once.
 */
struct put_batch {
    struct work work;
    struct pictures *x;
    h2o_linklist_t puts; /* px_put.link */
};

struct px_touch {
    struct px b;
    struct picindex_touch *touches;
    size_t ntouches;
};

/*
 * A chunk of an eviction. The file thread submits the next chunk as soon as
 * this one has committed and removes this one's files while the next commits.
 */
struct px_evict {
    struct px b;
    struct picindex_touch *touches; /* written first */
    size_t ntouches;
    uint64_t target; /* bytes to come down to */
    bool more;       /* stopped at a chunk's worth of files, above the target */
    /* The file thread's: */
    bool submitted; /* queued to the writer */
    bool removed;   /* settled, and its files removed once committed */
    struct px_evict *next;
    /* Set by the loop before it hands the chunk to the file thread: */
    bool go_on;                          /* the next chunk may start */
    struct picindex_touch *next_touches; /* last-served times for the next chunk to write first */
    size_t next_ntouches;
};

struct px_purge {
    struct px b;
    enum pictures_scope scope;
    uint8_t pubkey[32];
    pictures_purged_fn purged;
    void *ctx;
    struct pictures_purged result;
};

struct px_forget {
    struct px b;
    uint8_t hash[32]; /* the file, or the master of the variant */
    bool variant;
    struct pictures_vkey key;
};

struct px_reconcile {
    struct px b;
    time_t cutoff;                   /* files written since are not orphans: their records may be on the way */
    struct picindex_disk_file *disk; /* listed on the file thread, sorted by hash */
    size_t ndisk;
    struct picindex_reconciled found;
};

/* Every picture file on disk, sorted by hash. Temporary files were removed by blobs_init(). File thread. */
static struct picindex_disk_file *list_disk(struct pictures *x, size_t *n)
{
    struct picindex_disk_file *v = NULL;
    size_t cap = 0;
    DIR *top = opendir(x->_blobs->dir);
    struct dirent *e;

    *n = 0;
    while (top != NULL && (e = readdir(top)) != NULL) {
        char sub[4096];
        DIR *d;
        struct dirent *f;

        if (strlen(e->d_name) != 2 || e->d_name[0] == '.')
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", x->_blobs->dir, e->d_name);
        if ((d = opendir(sub)) == NULL)
            continue;
        while ((f = readdir(d)) != NULL) {
            struct stat st;
            uint8_t hash[32];
            if (strlen(f->d_name) != 64 || hex_decode(f->d_name, 64, hash, 32) != 0 ||
                fstatat(dirfd(d), f->d_name, &st, 0) != 0 || !S_ISREG(st.st_mode))
                continue;
            if (*n == cap) {
                cap = cap ? 2 * cap : 1024;
                if ((v = realloc(v, cap * sizeof(*v))) == NULL)
                    abort();
            }
            memcpy(v[*n].hash, hash, 32);
            v[*n].bytes = (uint64_t)st.st_size;
            v[*n].mtime = st.st_mtime;
            (*n)++;
        }
        closedir(d);
    }
    if (top != NULL)
        closedir(top);
    picindex_sort_disk(v, *n);
    return v;
}

/* --- writes, one type per operation, on the writer thread ------------------------------------------------------ */

static int apply_put(MDB_txn *txn, struct db_write *w)
{
    struct px_put *p = H2O_STRUCT_FROM_MEMBER(struct px_put, b.w, w);
    struct picindex_variant v[PICTURES_MAX_VARIANTS];
    size_t n = p->nvariants < PICTURES_MAX_VARIANTS ? p->nvariants : PICTURES_MAX_VARIANTS;
    const struct put_file *main = p->variant_only ? &p->variants[0].file : &p->file;
    int rc;

    for (size_t i = 0; i < n; i++) {
        const struct put_file *f = &p->variants[i].file;
        v[i] = (struct picindex_variant){&p->variants[i].key, &p->variants[i].rec, f->on_disk ? &f->disk_bytes : NULL};
    }
    if (p->variant_only)
        rc = picindex_put_variant(p->b.x->_index, txn, &p->b.ch, p->master, &v[0]);
    else
        rc = picindex_put(p->b.x->_index, txn, &p->b.ch, p->pubkey, p->value, p->len,
                          p->file.on_disk ? &p->file.disk_bytes : NULL, p->url_key, p->put_url ? &p->url : NULL, v, n);
    /* Its file is missing because it could not be written, not because it went. */
    return rc == -ENOENT && main->write_err != 0 ? main->write_err : rc;
}

static int apply_touch(MDB_txn *txn, struct db_write *w)
{
    struct px_touch *t = H2O_STRUCT_FROM_MEMBER(struct px_touch, b.w, w);

    return picindex_touch(t->b.x->_index, txn, &t->b.ch, t->touches, t->ntouches);
}

static int apply_evict(MDB_txn *txn, struct db_write *w)
{
    struct px_evict *e = H2O_STRUCT_FROM_MEMBER(struct px_evict, b.w, w);

    return picindex_evict(e->b.x->_index, txn, &e->b.ch, e->touches, e->ntouches, e->target, &e->more);
}

static int apply_purge(MDB_txn *txn, struct db_write *w)
{
    struct px_purge *p = H2O_STRUCT_FROM_MEMBER(struct px_purge, b.w, w);

    return picindex_purge(p->b.x->_index, txn, &p->b.ch, p->scope, p->pubkey, &p->result.found);
}

static int apply_forget(MDB_txn *txn, struct db_write *w)
{
    struct px_forget *f = H2O_STRUCT_FROM_MEMBER(struct px_forget, b.w, w);

    if (f->variant)
        return picindex_forget_variant(f->b.x->_index, txn, &f->b.ch, f->hash, &f->key);
    return picindex_forget(f->b.x->_index, txn, &f->b.ch, f->hash);
}

static int apply_reconcile(MDB_txn *txn, struct db_write *w)
{
    struct px_reconcile *r = H2O_STRUCT_FROM_MEMBER(struct px_reconcile, b.w, w);

    return picindex_reconcile(r->b.x->_index, txn, &r->b.ch, r->disk, r->ndisk, r->cutoff, &r->found);
}

/* --- the file thread ---------------------------------------------------------------------------------------------- */

static void remove_files(struct px *pw)
{
    for (size_t i = 0; i < pw->ch.ngone; i++) {
        int r = blob_remove(pw->x->_blobs, pw->ch.gone[i]);
        if (r != 0 && r != -ENOENT)
            log_warn("pictures: cannot remove a cached file: %s", strerror(-r));
    }
}

/* Waits for an eviction chunk's commit and removes its files, once. */
static void evict_finish(struct pictures *x, struct px_evict *e)
{
    if (x->_evict_committing == e)
        x->_evict_committing = NULL;
    if (e->removed)
        return;
    e->removed = true;
    if (db_wait(x->_db, &e->b.w) == 0)
        remove_files(&e->b);
}

/*
 * Every other file work begins here: the eviction chunk still committing has
 * its files removed first, so that what follows finds the disk as the index
 * will be, and writes a file again if it needs one that went.
 */
static void settle_eviction(struct pictures *x)
{
    if (x->_evict_committing != NULL)
        evict_finish(x, x->_evict_committing);
}

/*
 * A write that removes files: committed first, then its files go. Waiting for
 * the commit here keeps the file thread's order: a later write that needs one
 * of these files checks for it only once it is gone, and writes it again.
 */
static void run_removal(struct work *work)
{
    struct px *pw = H2O_STRUCT_FROM_MEMBER(struct px, work, work);

    settle_eviction(pw->x);
    if (db_submit_wait(pw->x->_db, &pw->w) == 0)
        remove_files(pw);
}

static void run_reconcile(struct work *work)
{
    struct px_reconcile *r = H2O_STRUCT_FROM_MEMBER(struct px_reconcile, b.work, work);

    r->disk = list_disk(r->b.x, &r->ndisk);
    run_removal(work);
}

static struct px_evict *evict_new(struct pictures *x, uint64_t now_ms, uint64_t target);

/*
 * An eviction chunk: the first is submitted here, the others were by the
 * chunk before. Once it has committed, the next one is submitted before this
 * one's files are removed, so that the writer and this thread work at once.
 * A write queued meanwhile waits for the next one's files to go
 * (settle_eviction), so the order of removals and writes holds.
 */
static void run_evict(struct work *work)
{
    struct px_evict *e = H2O_STRUCT_FROM_MEMBER(struct px_evict, b.work, work);
    struct pictures *x = e->b.x;

    if (x->_evict_committing == e)
        x->_evict_committing = NULL;
    if (!e->submitted) {
        settle_eviction(x);
        e->submitted = true;
        db_submit_nowait(x->_db, &e->b.w);
    }
    if (db_wait(x->_db, &e->b.w) == 0 && e->more && e->go_on) {
        struct px_evict *n = evict_new(x, e->b.ch.now_ms, e->target);

        n->touches = e->next_touches;
        n->ntouches = e->next_ntouches;
        e->next_touches = NULL;
        e->next_ntouches = 0;
        n->submitted = true;
        db_submit_nowait(x->_db, &n->b.w);
        e->next = n;
        x->_evict_committing = n;
    }
    evict_finish(x, e);
}

/*
 * A file must be there before a record names it: when it is not (a new
 * picture, or one evicted or purged meanwhile) it joins `bb`, to be written
 * from its bytes. Returns whether it did.
 */
static bool put_check_file(struct pictures *x, struct put_file *f, struct blob_batch *bb)
{
    char path[4096];
    struct stat st;

    blob_path(x->_blobs, f->hash, path, sizeof(path));
    f->on_disk = stat(path, &st) == 0;
    if (f->on_disk && (uint64_t)st.st_size == f->bytes) {
        f->disk_bytes = (uint64_t)st.st_size;
        return false;
    }
    if (f->content == NULL || memcmp(f->content->hash, f->hash, 32) != 0) {
        /* A file of the wrong size is damaged: no record names it, and the request is served as a miss again. */
        f->on_disk = false;
        return false;
    }
    /* Damaged (not its record's size): written again from the bytes, which replace it at the batch's rename. */
    f->write_err = blob_batch_add(bb, f->hash, f->content->data, f->content->len);
    return f->staged = f->write_err == 0;
}

/* After the batch's commit: the size of a file it wrote, or the reason it is not there. */
static void put_written(struct pictures *x, struct put_file *f, int commit_err)
{
    char path[4096];
    struct stat st;

    if (!f->staged)
        return;
    blob_path(x->_blobs, f->hash, path, sizeof(path));
    if ((f->on_disk = stat(path, &st) == 0))
        f->disk_bytes = (uint64_t)st.st_size;
    else
        f->write_err = commit_err != 0 ? commit_err : -errno;
}

/* Every file a write names, in turn. */
static bool put_files_next(struct px_put *p, size_t *i, struct put_file **f)
{
    if (*i == 0 && p->has_file) {
        *f = &p->file;
        *i = 1;
        return true;
    }
    if (*i == 0)
        *i = 1;
    if (*i - 1 >= p->nvariants)
        return false;
    *f = &p->variants[*i - 1].file;
    (*i)++;
    return true;
}

/*
 * Writes the batch's missing files, makes them durable, then submits the
 * records: a record is committed only once its file is durable.
 */
static void run_puts(struct work *work)
{
    struct put_batch *pb = H2O_STRUCT_FROM_MEMBER(struct put_batch, work, work);
    struct blob_batch bb;
    h2o_linklist_t *l, *next;
    bool any = false;
    int commit_err = 0;

    settle_eviction(pb->x);
    blob_batch_init(&bb, pb->x->_blobs);
    for (l = pb->puts.next; l != &pb->puts; l = l->next) {
        struct px_put *p = H2O_STRUCT_FROM_MEMBER(struct px_put, link, l);
        struct put_file *f;
        for (size_t i = 0; put_files_next(p, &i, &f);)
            any = put_check_file(pb->x, f, &bb) || any;
    }
    if (any)
        commit_err = blob_batch_commit(&bb);
    blob_batch_free(&bb);
    for (l = pb->puts.next; l != &pb->puts; l = l->next) {
        struct px_put *p = H2O_STRUCT_FROM_MEMBER(struct px_put, link, l);
        struct put_file *f;
        for (size_t i = 0; put_files_next(p, &i, &f);)
            put_written(pb->x, f, commit_err);
    }
    /* A put may be freed on the loop as soon as it is submitted: the next one is found first. */
    for (l = pb->puts.next; l != &pb->puts; l = next) {
        next = l->next;
        db_submit(pb->x->_db, &H2O_STRUCT_FROM_MEMBER(struct px_put, link, l)->b.w);
    }
}

static void on_puts_done(struct work *work);
static void flush_puts(struct pictures *x);

static void on_put_timer(uv_timer_t *t)
{
    struct pictures *x = H2O_STRUCT_FROM_MEMBER(struct pictures, _put_timer, t);

    /* With a batch on the file thread, the writes gathered go once it is back. */
    if (x->_put_batches == 0)
        flush_puts(x);
}

/* Hands the picture writes queued on the loop to the file thread as one batch (or runs it here once stopped). */
static void flush_puts(struct pictures *x)
{
    struct put_batch *pb;

    if (h2o_linklist_is_empty(&x->_puts))
        return;
    if ((pb = calloc(1, sizeof(*pb))) == NULL)
        abort();
    pb->x = x;
    h2o_linklist_init_anchor(&pb->puts);
    h2o_linklist_insert_list(&pb->puts, &x->_puts);
    x->_nputs = 0;
    uv_timer_stop(&x->_put_timer);
    pb->work.run = run_puts;
    pb->work.done = on_puts_done;
    x->_put_batches++;
    if (!x->_file_thread_stopped) {
        workpool_submit(&x->_file_thread, &pb->work);
        return;
    }
    run_puts(&pb->work);
    on_puts_done(&pb->work);
}

/* A batch's records are submitted: the picture writes queued meanwhile go as the next batch. */
static void on_puts_done(struct work *work)
{
    struct put_batch *pb = H2O_STRUCT_FROM_MEMBER(struct put_batch, work, work);
    struct pictures *x = pb->x;

    free(pb);
    if (--x->_put_batches == 0)
        flush_puts(x);
}

/*
 * Hands `pw` to the file thread, or runs its file work here once that thread
 * has stopped. The picture writes queued before it go first, in their order.
 */
static void file_work(struct pictures *x, struct px *pw, void (*run)(struct work *), void (*done)(struct work *))
{
    flush_puts(x);
    pw->work.run = run;
    pw->work.done = done;
    if (!x->_file_thread_stopped) {
        workpool_submit(&x->_file_thread, &pw->work);
        return;
    }
    run(&pw->work);
    if (done != NULL)
        done(&pw->work);
}

/* --- completions, on the loop thread ----------------------------------------------------------------------------- */

static void check_limit(struct pictures *x);
static void take_touches(struct pictures *x, struct picindex_touch **touches, size_t *n);

static void px_free(struct px *pw)
{
    picindex_change_free(&pw->ch);
}

/* What every committed write tells the loop: the new totals, and which files' bytes to forget. */
static void px_settled(struct px *pw)
{
    struct pictures *x = pw->x;

    if (pw->w.status != 0) {
        if (pw->w.status == -EFBIG)
            log_error("pictures: cannot update the picture index: the database is full; raise database_max_size_mb");
        else if (pw->w.status == -ENOSPC)
            log_error("pictures: cannot update the picture index: the disk of database_path is full");
        else if (pw->w.status != -ESHUTDOWN)
            log_error("pictures: cannot update the picture index: %s", strerror(-pw->w.status));
        return;
    }
    /* Writes report out of their commit order (an eviction chunk after the writes that followed it). */
    if (pw->ch.seq > x->_settled) {
        x->_settled = pw->ch.seq;
        x->_stats.pictures = pw->ch.totals.pictures;
        x->_stats.files = pw->ch.totals.files;
        x->_stats.bytes = pw->ch.totals.bytes;
    }
    for (size_t i = 0; i < pw->ch.ngone; i++)
        blobcache_drop(x->_memory, pw->ch.gone[i]);
}

static void evict_start(struct pictures *x, uint64_t target);
static void on_put_done(struct db_write *w);

/*
 * The disk under the media directory is full: no record was written, and the
 * failure is no failed download. An eviction down to the low-water share of
 * what is on disk makes room, and the write waits for it to try again.
 * Returns false when nothing can be evicted, or the write has waited enough.
 */
static bool wait_for_space(struct px_put *p)
{
    struct pictures *x = p->b.x;

    x->_stats.disk_full++;
    if (x->_closing || !x->_stats.ready || x->_stats.bytes == 0 || p->space_tries++ >= SPACE_TRIES)
        return false;
    /* Its batch's list no longer counts it once it was submitted: the link is free. */
    p->link = (h2o_linklist_t){NULL, NULL};
    h2o_linklist_insert(&x->_need_space, &p->link);
    if (!x->_stats.evicting) {
        uint64_t target = x->_stats.bytes / 100 * x->_low_percent;
        log_warn("pictures: the disk of media_cache_path is full (%s); evicting the least recently served pictures "
                 "down to %u%% of the %llu bytes cached",
                 strerror(ENOSPC), x->_low_percent, (unsigned long long)x->_stats.bytes);
        x->_stats.evictions++;
        x->_stats.disk_full_evictions++;
        evict_start(x, target);
    }
    return true;
}

/* An eviction has ended: the writes that waited for space go again, or fail when it freed nothing. */
static void retry_need_space(struct pictures *x, bool freed)
{
    h2o_linklist_t waiting;

    h2o_linklist_init_anchor(&waiting);
    h2o_linklist_insert_list(&waiting, &x->_need_space);
    while (!h2o_linklist_is_empty(&waiting)) {
        struct px_put *p = H2O_STRUCT_FROM_MEMBER(struct px_put, link, waiting.next);
        h2o_linklist_unlink(&p->link);
        if (!freed || x->_closing) {
            p->space_tries = SPACE_TRIES;
            on_put_done(&p->b.w);
            continue;
        }
        struct put_file *f;
        for (size_t i = 0; put_files_next(p, &i, &f);) {
            f->on_disk = f->staged = false;
            f->write_err = 0;
        }
        p->b.w.status = 0;
        h2o_linklist_insert(&x->_puts, &p->link);
        x->_nputs++;
    }
    pictures_flush(x);
}

static void on_put_done(struct db_write *w)
{
    struct px_put *p = H2O_STRUCT_FROM_MEMBER(struct px_put, b.w, w);
    struct pictures *x = p->b.x;

    if (w->status == -ENOSPC && (p->variant_only ? &p->variants[0].file : &p->file)->write_err == -ENOSPC) {
        if (wait_for_space(p))
            return;
        /* Not the database: its own error stays for its own disk. */
        if (!x->_closing)
            log_error("pictures: cannot store a picture: the disk of media_cache_path is full, and evicting pictures "
                      "did not make room; free space on it");
    } else {
        px_settled(&p->b);
    }
    x->_stats.writes_pending--;
    if (p->done != NULL)
        p->done(p->ctx, w->status);
    check_limit(x);
    if (p->file.content != NULL)
        blob_release(p->file.content);
    for (size_t i = 0; i < p->nvariants; i++) {
        if (p->variants[i].file.content != NULL)
            blob_release(p->variants[i].file.content);
    }
    free(p->variants);
    free(p->value);
    px_free(&p->b);
    free(p);
}

static void on_touch_done(struct db_write *w)
{
    struct px_touch *t = H2O_STRUCT_FROM_MEMBER(struct px_touch, b.w, w);

    px_settled(&t->b);
    if (w->status == 0)
        t->b.x->_stats.recency_flushes++;
    free(t->touches);
    px_free(&t->b);
    free(t);
}

static void on_evicted(struct work *work)
{
    struct px_evict *e = H2O_STRUCT_FROM_MEMBER(struct px_evict, b.work, work);
    struct pictures *x = e->b.x;
    int status = e->b.w.status;

    px_settled(&e->b);
    if (status == 0) {
        x->_stats.recency_flushes += e->ntouches > 0;
        x->_stats.evicted_files += e->b.ch.removed_files;
        x->_stats.evicted_bytes += e->b.ch.removed_bytes;
        x->_stats.evicted_pictures += e->b.ch.removed_pictures;
        x->_run_files += e->b.ch.removed_files;
        x->_run_bytes += e->b.ch.removed_bytes;
    }
    if (e->next != NULL) {
        /* Already committing: its files are to go, and the next chunk takes what was served meanwhile. */
        e->next->go_on = !x->_closing;
        take_touches(x, &e->next->next_touches, &e->next->next_ntouches);
        file_work(x, &e->next->b, run_evict, on_evicted);
    } else {
        bool freed = x->_run_files > 0;
        x->_stats.evicting = false;
        if (x->_run_files > 0)
            log_info("pictures: evicted %llu file(s), %llu bytes; the cache holds %llu bytes",
                     (unsigned long long)x->_run_files, (unsigned long long)x->_run_bytes,
                     (unsigned long long)x->_stats.bytes);
        x->_run_files = x->_run_bytes = 0;
        retry_need_space(x, freed);
    }
    free(e->touches);
    free(e->next_touches);
    px_free(&e->b);
    free(e);
}

static void on_purged(struct work *work)
{
    struct px_purge *p = H2O_STRUCT_FROM_MEMBER(struct px_purge, b.work, work);

    px_settled(&p->b);
    p->result.status = p->b.w.status;
    p->result.pictures = p->b.ch.removed_pictures;
    p->result.files = p->b.ch.removed_files;
    p->result.bytes = p->b.ch.removed_bytes;
    if (p->b.w.status == 0)
        p->b.x->_stats.purges++;
    p->purged(p->ctx, &p->result);
    px_free(&p->b);
    free(p);
}

static void on_forgotten(struct work *work)
{
    struct px_forget *f = H2O_STRUCT_FROM_MEMBER(struct px_forget, b.work, work);

    px_settled(&f->b);
    px_free(&f->b);
    free(f);
}

static void on_reconciled(struct work *work)
{
    struct px_reconcile *r = H2O_STRUCT_FROM_MEMBER(struct px_reconcile, b.work, work);
    struct pictures *x = r->b.x;

    px_settled(&r->b);
    if (r->b.w.status == 0) {
        log_info("pictures: %llu cached in %llu file(s), %llu bytes%s; %llu dropped because their file was "
                 "missing or damaged (%llu file(s) of the wrong size removed), %llu stray file(s) removed",
                 (unsigned long long)r->b.ch.totals.pictures, (unsigned long long)r->b.ch.totals.files,
                 (unsigned long long)r->b.ch.totals.bytes, r->found.rebuilt ? " (counted from the records)" : "",
                 (unsigned long long)r->found.dropped, (unsigned long long)r->found.damaged,
                 (unsigned long long)r->found.orphans);
        x->_stats.damaged_files += r->found.damaged;
        x->_stats.ready = true;
        check_limit(x);
    }
    free(r->disk);
    px_free(&r->b);
    free(r);
}

/* A zeroed operation of `size` bytes around its `struct px`, at the front. Any thread. */
static void *px_alloc(struct pictures *x, size_t size, int (*apply)(MDB_txn *, struct db_write *), uint64_t now_ms)
{
    struct px *pw = calloc(1, size);

    if (pw == NULL)
        abort();
    pw->x = x;
    pw->ch.now_ms = now_ms;
    pw->w.apply = apply;
    return pw;
}

/* The same, made on the loop thread, now. */
static void *px_new(struct pictures *x, size_t size, int (*apply)(MDB_txn *, struct db_write *))
{
    return px_alloc(x, size, apply, x->_wall_base_ms + (uv_now(x->_loop) - x->_mono_base_ms));
}

/*
 * An eviction chunk. Its commit is not flushed to disk: should a crash lose it
 * after its files went, start-up drops the entries whose file is missing.
 */
static struct px_evict *evict_new(struct pictures *x, uint64_t now_ms, uint64_t target)
{
    struct px_evict *e = px_alloc(x, sizeof(*e), apply_evict, now_ms);

    e->target = target;
    e->b.w.nosync = true;
    return e;
}

/* Hands the last-served times gathered so far to a write. */
static void take_touches(struct pictures *x, struct picindex_touch **touches, size_t *n)
{
    *touches = x->_touches;
    *n = x->_ntouches;
    x->_touches = NULL;
    x->_ntouches = x->_touches_cap = 0;
    keymap_free(x->_touched, NULL);
    x->_touched = keymap_new(32);
}

static void flush_touches(struct pictures *x)
{
    struct px_touch *t;

    if (x->_ntouches == 0)
        return;
    t = px_new(x, sizeof(*t), apply_touch);
    t->b.w.done = on_touch_done;
    take_touches(x, &t->touches, &t->ntouches);
    db_submit(x->_db, &t->b.w);
}

/* Starts an eviction down to `target` bytes with its first chunk, the last-served times gathered so far written first.
 */
static void evict_start(struct pictures *x, uint64_t target)
{
    struct px_evict *e = evict_new(x, x->_wall_base_ms + (uv_now(x->_loop) - x->_mono_base_ms), target);

    e->go_on = true;
    take_touches(x, &e->touches, &e->ntouches);
    x->_stats.evicting = true;
    file_work(x, &e->b, run_evict, on_evicted);
}

/* Starts an eviction when the files exceed the limit; it goes on, a chunk at a time, down to the low-water mark. */
static void check_limit(struct pictures *x)
{
    if (!x->_stats.ready || x->_stats.evicting || x->_closing || x->_stats.bytes <= x->_limit_bytes)
        return;
    x->_stats.evictions++;
    evict_start(x, x->_low_bytes);
}

/* --- the loop thread's side ------------------------------------------------------------------------------------ */

static void put_variants(struct px_put *p, const struct pictures_variant *v, size_t n)
{
    if (n == 0)
        return;
    if ((p->variants = calloc(n, sizeof(*p->variants))) == NULL)
        abort();
    p->nvariants = n;
    for (size_t i = 0; i < n; i++) {
        struct put_variant *pv = &p->variants[i];
        pv->key = v[i].key;
        pv->rec = v[i].rec;
        memcpy(pv->file.hash, v[i].rec.blob, 32);
        pv->file.bytes = v[i].rec.bytes;
        if ((pv->file.content = v[i].bytes) != NULL)
            blob_retain(v[i].bytes);
    }
}

/* Queues a write for the next batch. */
static void put_queue(struct pictures *x, struct px_put *p)
{
    /* Writes gather for the next batch while one is on the file thread, and for PUT_GATHER_MS at most. */
    h2o_linklist_insert(&x->_puts, &p->link);
    x->_nputs++;
    x->_stats.writes_pending++;
    if (x->_file_thread_stopped || (x->_nputs >= PUT_BATCH_MAX && x->_put_batches == 0))
        flush_puts(x);
    else if (!uv_is_active((uv_handle_t *)&x->_put_timer))
        uv_timer_start(&x->_put_timer, on_put_timer, PUT_GATHER_MS, 0);
}

void pictures_put(struct pictures *x, const uint8_t pubkey[32], const struct pic *pic, const struct url_rec *url,
                  const uint8_t url_key[32], struct blob_ref *bytes, const struct pictures_variant *variants,
                  size_t nvariants, pictures_done_fn done, void *ctx)
{
    struct px_put *p = px_new(x, sizeof(*p), apply_put);

    p->b.w.done = on_put_done;
    memcpy(p->pubkey, pubkey, 32);
    if (pic != NULL) {
        p->value = picindex_encode(pic, &p->len);
        if ((p->has_file = pic->h.state == PIC_OK)) {
            memcpy(p->file.hash, pic->h.blob, 32);
            p->file.bytes = pic->h.bytes;
            if ((p->file.content = bytes) != NULL)
                blob_retain(bytes);
        }
        if (p->has_file)
            put_variants(p, variants, nvariants);
    }
    if (url != NULL) {
        p->put_url = true;
        p->url = *url;
        memcpy(p->url_key, url_key, 32);
    }
    p->done = done;
    p->ctx = ctx;
    put_queue(x, p);
}

void pictures_put_variant(struct pictures *x, const uint8_t master[32], const struct pictures_variant *v,
                          pictures_done_fn done, void *ctx)
{
    struct px_put *p = px_new(x, sizeof(*p), apply_put);

    p->b.w.done = on_put_done;
    p->variant_only = true;
    memcpy(p->master, master, 32);
    put_variants(p, v, 1);
    p->done = done;
    p->ctx = ctx;
    put_queue(x, p);
}

void pictures_flush(struct pictures *x)
{
    if (x->_put_batches == 0)
        flush_puts(x);
}

void pictures_purge(struct pictures *x, enum pictures_scope scope, const uint8_t pubkey[32], pictures_purged_fn done,
                    void *ctx)
{
    struct px_purge *p = px_new(x, sizeof(*p), apply_purge);

    p->scope = scope;
    if (pubkey != NULL)
        memcpy(p->pubkey, pubkey, 32);
    p->purged = done;
    p->ctx = ctx;
    file_work(x, &p->b, run_removal, on_purged);
}

void pictures_forget_file(struct pictures *x, const uint8_t hash[32])
{
    struct px_forget *f = px_new(x, sizeof(*f), apply_forget);

    memcpy(f->hash, hash, 32);
    file_work(x, &f->b, run_removal, on_forgotten);
}

void pictures_forget_variant(struct pictures *x, const uint8_t master[32], const struct pictures_vkey *key)
{
    struct px_forget *f = px_new(x, sizeof(*f), apply_forget);

    memcpy(f->hash, master, 32);
    f->variant = true;
    f->key = *key;
    file_work(x, &f->b, run_removal, on_forgotten);
}

void pictures_record_key(const uint8_t pubkey[32], enum pictures_slot slot, uint8_t key[32])
{
    /* Prefixes of one length, so that no two slots' keys can meet. */
    const char *prefix = slot == PICTURES_BANNER ? "banner:" : "source:";
    size_t plen = strlen(prefix);
    uint8_t in[sizeof("source:") - 1 + 32];

    if (slot == PICTURES_AVATAR) {
        memcpy(key, pubkey, 32);
        return;
    }
    /* A hash, so that the key has a record's size and cannot be any pubkey anyone holds the secret key of. */
    memcpy(in, prefix, plen);
    memcpy(in + plen, pubkey, 32);
    blob_hash(in, plen + 32, key);
}

void pictures_variant_key(struct pictures_vkey *key, int size, int type, bool animated, bool width_only, int width,
                          int height)
{
    int own = width_only || width >= height ? width : height;

    if (own > 0 && size > own)
        size = own;
    memset(key, 0, sizeof(*key));
    key->len = PICTURES_VARIANT_KEY;
    key->b[0] = (uint8_t)((unsigned)size >> 8);
    key->b[1] = (uint8_t)size;
    key->b[2] = (uint8_t)type;
    key->b[3] = (uint8_t)((animated ? 1 : 0) | (width_only ? 2 : 0));
}

void pictures_box_key(struct pictures_vkey *key, const struct image_box *box, int type, int quality, bool animated)
{
    const int sides[] = {box->scale_w, box->scale_h, box->crop_w, box->crop_h, box->canvas_w, box->canvas_h};
    size_t n = 0;

    memset(key, 0, sizeof(*key));
    for (size_t i = 0; i < sizeof(sides) / sizeof(sides[0]); i++) {
        key->b[n++] = (uint8_t)((unsigned)sides[i] >> 8);
        key->b[n++] = (uint8_t)sides[i];
    }
    key->b[n++] = (uint8_t)box->gravity;
    key->b[n++] = (uint8_t)type;
    key->b[n++] = (uint8_t)quality;
    key->b[n++] = animated ? 1 : 0;
    key->len = (uint8_t)n;
}

int pictures_get_variant(struct pictures *x, const uint8_t master[32], const struct pictures_vkey *key,
                         struct variant_rec *out)
{
    MDB_txn *txn;
    int r;

    if ((r = db_read_begin(x->_db, &txn)) != 0)
        return r;
    r = picindex_get_variant(x->_index, txn, master, key, out);
    db_read_end(x->_db, txn);
    return r;
}

void pictures_touch(struct pictures *x, const uint8_t hash[32])
{
    uintptr_t slot = (uintptr_t)keymap_get(x->_touched, hash);
    uint64_t ms = x->_wall_base_ms + (uv_now(x->_loop) - x->_mono_base_ms);

    if (slot == 0) {
        if (x->_ntouches == x->_touches_cap) {
            x->_touches_cap = x->_touches_cap ? 2 * x->_touches_cap : 256;
            if ((x->_touches = realloc(x->_touches, x->_touches_cap * sizeof(*x->_touches))) == NULL)
                abort();
        }
        memcpy(x->_touches[x->_ntouches].hash, hash, 32);
        slot = ++x->_ntouches;
        keymap_put(x->_touched, hash, (void *)slot);
    }
    x->_touches[slot - 1].ms = ms;
}

/* What the index's lookups read, each in a read transaction of its own. */
enum px_read { READ_PIC, READ_FILE, READ_URL };

static int read_index(struct pictures *x, enum px_read what, const uint8_t key[32], void *out)
{
    MDB_txn *txn;
    int r;

    if ((r = db_read_begin(x->_db, &txn)) != 0)
        return r;
    switch (what) {
    case READ_PIC: r = picindex_get(x->_index, txn, key, out); break;
    case READ_FILE: r = picindex_get_file(x->_index, txn, key, out); break;
    case READ_URL: r = picindex_get_url(x->_index, txn, key, out); break;
    }
    db_read_end(x->_db, txn);
    return r;
}

int pictures_get(struct pictures *x, const uint8_t pubkey[32], struct pic *out)
{
    return read_index(x, READ_PIC, pubkey, out);
}

int pictures_get_file(struct pictures *x, const uint8_t hash[32], uint64_t *bytes)
{
    return read_index(x, READ_FILE, hash, bytes);
}

int pictures_get_url(struct pictures *x, const uint8_t url_key[32], struct url_rec *out)
{
    return read_index(x, READ_URL, url_key, out);
}

const struct db_table_check *pictures_table_checks(size_t *n)
{
    return picindex_table_checks(n);
}

void pictures_stats(const struct pictures *x, struct pictures_stats *out)
{
    *out = x->_stats;
}

static void on_timer(uv_timer_t *t)
{
    struct pictures *x = t->data;
    uint64_t now = uv_now(x->_loop);

    if (now >= x->_next_check_ms) {
        x->_next_check_ms = now + x->_check_ms;
        check_limit(x);
    }
    flush_touches(x);
}

int pictures_init(struct pictures *x, uv_loop_t *loop, const struct pictures_options *opt, struct db *db,
                  struct blobs *blobs, struct blobcache *memory, struct inbox *inbox)
{
    int r;

    memset(x, 0, sizeof(*x));
    x->_loop = loop;
    x->_db = db;
    x->_blobs = blobs;
    x->_memory = memory;
    if ((r = picindex_open(db, &x->_index)) != 0)
        return r;
    /* One thread, so that file work keeps the order of the writes it goes with. */
    if ((r = workpool_init(&x->_file_thread, 1, inbox)) != 0) {
        picindex_free(x->_index);
        x->_index = NULL;
        return r;
    }
    x->_limit_bytes = opt->max_bytes;
    x->_low_bytes = opt->max_bytes / 100 * opt->low_water_percent;
    x->_low_percent = opt->low_water_percent;
    h2o_linklist_init_anchor(&x->_need_space);
    x->_check_ms = opt->check_interval_ms;
    x->_stats.max_bytes = opt->max_bytes;
    x->_touched = keymap_new(32);
    h2o_linklist_init_anchor(&x->_puts);
    uv_update_time(loop);
    x->_wall_base_ms = (uint64_t)clock_now_ms();
    x->_mono_base_ms = uv_now(loop);
    uv_timer_init(loop, &x->_timer);
    x->_timer.data = x;
    uv_timer_init(loop, &x->_put_timer);
    return 0;
}

void pictures_start(struct pictures *x)
{
    struct px_reconcile *r = px_new(x, sizeof(*r), apply_reconcile);

    r->cutoff = (time_t)(x->_wall_base_ms / 1000);
    file_work(x, &r->b, run_reconcile, on_reconciled);
    x->_next_check_ms = uv_now(x->_loop) + x->_check_ms;
    uv_timer_start(&x->_timer, on_timer, TOUCH_FLUSH_MS, TOUCH_FLUSH_MS);
}

void pictures_shutdown(struct pictures *x)
{
    if (x->_closing)
        return;
    x->_closing = true;
    uv_timer_stop(&x->_timer);
    flush_touches(x);
    flush_puts(x);
    workpool_shutdown(&x->_file_thread);
    x->_file_thread_stopped = true;
}

void pictures_free(struct pictures *x)
{
    workpool_free(&x->_file_thread);
    if (x->_touched != NULL)
        keymap_free(x->_touched, NULL);
    x->_touched = NULL;
    free(x->_touches);
    x->_touches = NULL;
    picindex_free(x->_index);
    x->_index = NULL;
    if (x->_timer.loop != NULL) {
        uv_close((uv_handle_t *)&x->_timer, NULL);
        uv_close((uv_handle_t *)&x->_put_timer, NULL);
    }
}
