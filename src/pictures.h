/*
 * pictures.h -- the picture index in LMDB and the files it counts: pubkey ->
 * picture, each file's users and last use, the cache's total size, and the
 * evictions and purges that keep index and files in step.
 */
#ifndef PFP_PICTURES_H
#define PFP_PICTURES_H

#include <h2o/linklist.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "blob.h"
#include "blobcache.h"
#include "db.h"
#include "image.h"
#include "inbox.h"
#include "workpool.h"

#define PICTURES_MAX_URL 4096

enum { PIC_OK = 1, PIC_NEGATIVE = 2 };

/* pic_head.flags and url_rec.flags. Records from before masters have neither: their picture is a 200 px JPEG. */
enum {
    PIC_MASTER = 1,   /* the file is a master, which variants are made from, not an answer itself */
    PIC_ANIMATED = 2, /* ... and it has more than one frame */
};

/* The picture record of a pubkey, as stored (followed by url_len bytes of URL). */
struct pic_head {
    uint8_t state;
    uint8_t type;        /* enum image_type of the stored bytes */
    uint8_t reason;      /* enum pfp_negative */
    uint8_t flags;       /* PIC_MASTER, PIC_ANIMATED */
    uint32_t failures;   /* failures in a row, for the back-off */
    uint64_t fetched_at; /* unix time the picture was stored or last confirmed */
    uint64_t retry_at;   /* unix time a failure may be tried again */
    int64_t kind0_at;    /* created_at of the kind 0 the picture came from */
    uint8_t event_id[32];
    uint8_t blob[32];
    uint32_t bytes;
    uint16_t width, height;
    uint16_t url_len;
};

struct pic {
    struct pic_head h;
    char url[PICTURES_MAX_URL + 1];
};

/* What a picture URL gave, so that another pubkey with the same URL needs no download. */
struct url_rec {
    uint8_t blob[32];
    uint8_t type;
    uint8_t flags; /* as pic_head.flags */
    uint8_t unused[2];
    uint32_t bytes;
    uint16_t width, height;
    uint64_t fetched_at;
};

/*
 * What names one variant of a master: PICTURES_VARIANT_KEY bytes for a size on a ladder (pictures_variant_key()),
 * more for an exact geometry (imgproxy's); the lengths keep the two apart.
 */
#define PICTURES_VARIANT_KEY     4
#define PICTURES_VARIANT_KEY_MAX 20

struct pictures_vkey {
    uint8_t len; /* PICTURES_VARIANT_KEY to PICTURES_VARIANT_KEY_MAX */
    uint8_t b[PICTURES_VARIANT_KEY_MAX];
};

/* One variant of a master, as stored: its file and what it is. */
struct variant_rec {
    uint8_t blob[32];
    uint32_t bytes;
    uint16_t width, height; /* of one frame */
    uint8_t type;           /* enum image_type */
    uint8_t frames;         /* 1 for a still picture; at most 255 counted */
    uint8_t unused[2];
};

/* Variants stored with a picture's record at most (those made when it was downloaded). */
#define PICTURES_MAX_VARIANTS 4

/* A variant to store with its bytes (retained until the write is done). */
struct pictures_variant {
    struct pictures_vkey key;
    struct variant_rec rec;
    struct blob_ref *bytes;
};

/*
 * The key of a variant of a master of `width` x `height`: the `size` asked for (after the ladder), cut to the
 * master's own, since nothing is enlarged; its `type` (enum image_type); whether it moves; and whether `size` is a
 * width (banners) rather than the longer side.
 */
void pictures_variant_key(struct pictures_vkey *key, int size, int type, bool animated, bool width_only, int width,
                          int height);

/*
 * The key of a variant of exact geometry (imgproxy's): the box, the `type` (enum image_type), the `quality`
 * (1 to 100) and whether it moves.
 */
void pictures_box_key(struct pictures_vkey *key, const struct image_box *box, int type, int quality, bool animated);

/* Which of a pubkey's pictures a record is for. */
enum pictures_slot {
    PICTURES_AVATAR, /* its "picture": the record's key is the pubkey */
    PICTURES_BANNER, /* its "banner": the record's key is derived from the pubkey (pictures_record_key()) */
    PICTURES_SOURCE, /* a picture asked for by its URL (imgproxy's): the key is derived from the URL's SHA-256 */
};

/* The key of the record of `pubkey`'s picture in `slot`: the pubkey itself for avatars. */
void pictures_record_key(const uint8_t pubkey[32], enum pictures_slot slot, uint8_t key[32]);

enum pictures_scope {
    PURGE_PUBKEY,   /* one pubkey's records (avatar and banner), pictures or remembered failures */
    PURGE_PICTURES, /* every cached picture; remembered failures stay */
    PURGE_ALL,      /* everything the picture cache holds */
};

struct pictures_purged {
    int status;        /* 0, or a negative error: nothing was removed */
    bool found;        /* PURGE_PUBKEY: the pubkey had a record */
    uint64_t pictures; /* picture records removed */
    uint64_t files, bytes;
};

struct pictures_stats {
    uint64_t pictures;  /* pubkeys with a cached picture */
    uint64_t files;     /* distinct files, each counted once however many pubkeys share it */
    uint64_t bytes;     /* the files' total size */
    uint64_t max_bytes; /* the limit */
    uint64_t evictions, evicted_files, evicted_bytes, evicted_pictures;
    uint64_t purges;
    uint64_t recency_flushes;     /* batches of last-served times written */
    uint64_t damaged_files;       /* files of the wrong size found at start-up, dropped and removed */
    uint64_t disk_full;           /* picture files that could not be written: the disk was full (ENOSPC) */
    uint64_t disk_full_evictions; /* evictions started because the disk was full */
    uint64_t writes_pending;      /* picture and variant writes not yet committed */
    bool ready;                   /* start-up reconciliation done: the totals are known */
    bool evicting;                /* an eviction is under way, its files not all removed yet */
};

struct pictures_options {
    uint64_t max_bytes;         /* evict beyond this */
    unsigned low_water_percent; /* ... down to this share of max_bytes */
    uint64_t check_interval_ms; /* how often the size is checked besides after each write */
};

struct picindex;
struct picindex_touch;
struct keymap;
struct px_evict;

/*
 * The fields are private. File work (reading the media directory, writing
 * pictures' files, removing files) runs on a thread of its own, in order with
 * the index writes it goes with: a file is removed only after the commit that
 * dropped its entries, a write that needs a file checks for it after every
 * earlier removal, and a file is durable before the record naming it.
 */
struct pictures {
    uv_loop_t *_loop;
    struct db *_db;
    struct blobs *_blobs;
    struct blobcache *_memory;             /* bytes of removed files are dropped from it */
    struct picindex *_index;               /* the tables, and the changes to them */
    uint64_t _limit_bytes, _low_bytes;     /* where eviction starts, and where it stops */
    unsigned _low_percent;                 /* ... as a share: also of what is on disk when the disk fills */
    h2o_linklist_t _need_space;            /* picture writes that found the disk full, until an eviction ends */
    uint64_t _check_ms, _next_check_ms;    /* the size check's interval, and when the next is due (uv_now) */
    uint64_t _wall_base_ms, _mono_base_ms; /* wall-clock ms = wall_base + (uv_now - mono_base) */
    struct keymap *_touched;               /* file hash -> index into `touches` */
    struct picindex_touch *_touches;
    size_t _ntouches, _touches_cap;
    uv_timer_t _timer;
    struct workpool _file_thread;       /* one thread: the file work, in order */
    struct px_evict *_evict_committing; /* file thread: an eviction chunk submitted, its files not yet removed */
    h2o_linklist_t _puts;               /* picture writes waiting for the file thread, handed over together */
    size_t _nputs;                      /* ... how many */
    uv_timer_t _put_timer;              /* ... until they have waited long enough */
    unsigned _put_batches;              /* batches of them handed over and not back yet */
    bool _file_thread_stopped;          /* after pictures_shutdown(): file work runs on the caller's thread */
    uint64_t _run_files, _run_bytes;    /* evicted so far by the eviction under way, for its log line */
    uint64_t _settled;                  /* the number of the write whose totals the stats show */
    bool _closing;
    struct pictures_stats _stats;
};

/*
 * Opens the index's tables (between db_init() and db_start()) and starts its
 * file thread, whose results come back through `inbox`. `blobs` and `memory`
 * must outlive the index. Returns 0 or a negative error.
 */
int pictures_init(struct pictures *x, uv_loop_t *loop, const struct pictures_options *opt, struct db *db,
                  struct blobs *blobs, struct blobcache *memory, struct inbox *inbox);

/*
 * After db_start(): reconciles index and files (entries whose file is gone
 * are dropped, files no entry names are removed), learns the totals, then
 * checks the size limit every check_interval_ms.
 */
void pictures_start(struct pictures *x);

/*
 * The record under `key` (a pubkey, or a banner's pictures_record_key()). Returns 0, -ENOENT, or -EIO (or -EBUSY
 * inside a read transaction). Loop thread.
 */
int pictures_get(struct pictures *x, const uint8_t key[32], struct pic *out);

/* What `url_key` (the URL's SHA-256) gave, if its file is still cached. Returns 0, -ENOENT or -EIO. */
int pictures_get_url(struct pictures *x, const uint8_t url_key[32], struct url_rec *out);

/* The size of the cached file `hash`: 0, or -ENOENT when the cache holds no such file. Loop thread. */
int pictures_get_file(struct pictures *x, const uint8_t hash[32], uint64_t *bytes);

/*
 * The variant `key` of the master `master`, if it and its file are in the index. Returns 0, -ENOENT or -EIO.
 * Loop thread.
 */
int pictures_get_variant(struct pictures *x, const uint8_t master[32], const struct pictures_vkey *key,
                         struct variant_rec *out);

/* Notes that the file `hash` was served now. Memory only; written in batches. */
void pictures_touch(struct pictures *x, const uint8_t hash[32]);

typedef void (*pictures_done_fn)(void *ctx, int status);

/*
 * Stores `pic` for `pubkey`, or deletes its record when `pic` is NULL; with
 * `url`, also what `url_key` gave. A picture's file must exist: if it is not
 * there (a new picture, or one evicted or purged meanwhile), it is written
 * from `bytes` when given, and made durable before the record is committed;
 * else the write fails with -ENOENT and nothing changes. When the disk is full
 * (ENOSPC writing the file), the least recently served pictures are evicted
 * down to low_water_percent of what is on disk and the write is tried again
 * after each eviction that freed space (a few times at most); -ENOSPC when it
 * still does not fit. `variants` (`nvariants` of them, copied) are stored in
 * the same commit as variants of the record's master, their files written as
 * the master's is. Writes gather for up
 * to PUT_GATHER_MS (pictures.c) and go in batches; pictures_flush() when
 * someone waits. `done` (may be NULL) hears 0 or a negative error (-ENOENT,
 * -ENOSPC, -EIO, -ESHUTDOWN, or the error writing the file) once committed.
 * `bytes` is retained until then. Loop thread.
 */
void pictures_put(struct pictures *x, const uint8_t pubkey[32], const struct pic *pic, const struct url_rec *url,
                  const uint8_t url_key[32], struct blob_ref *bytes, const struct pictures_variant *variants,
                  size_t nvariants, pictures_done_fn done, void *ctx);

/*
 * Stores one variant of `master` (`v` copied, its bytes retained until done), its file written first as a
 * picture's is. It counts against the cache's size, and goes when its master goes (eviction, purge). `done`
 * (may be NULL) hears 0, -ENOENT when the master is no longer in the index (nothing is stored), -EEXIST when
 * its bytes are a file the index holds as something else, or another negative error. Loop thread.
 */
void pictures_put_variant(struct pictures *x, const uint8_t master[32], const struct pictures_variant *v,
                          pictures_done_fn done, void *ctx);

/* The file of the variant `key` of `master` was found missing or damaged: the variant is dropped. */
void pictures_forget_variant(struct pictures *x, const uint8_t master[32], const struct pictures_vkey *key);

/*
 * Someone waits for the writes queued: they go to the file thread now rather
 * than after gathering with others (or as soon as the batch there is back).
 */
void pictures_flush(struct pictures *x);

typedef void (*pictures_purged_fn)(void *ctx, const struct pictures_purged *r);

/*
 * Removes records and then their files; `done` hears what went once the files
 * are gone (`r` valid during the call). `pubkey` only for PURGE_PUBKEY.
 */
void pictures_purge(struct pictures *x, enum pictures_scope scope, const uint8_t pubkey[32], pictures_purged_fn done,
                    void *ctx);

/* The file `hash` was found missing: its entries, and the records naming it, are dropped. */
void pictures_forget_file(struct pictures *x, const uint8_t hash[32]);

/* What each of the index's tables holds, for db_check(): `*n` of them, static. */
const struct db_table_check *pictures_table_checks(size_t *n);

/* What the index holds and has done. */
void pictures_stats(const struct pictures *x, struct pictures_stats *out);

/*
 * Writes the last-served times still in memory, starts no more evictions and
 * waits for the file work queued (before db_shutdown(); the writer must still
 * run). Later writes still work, their file work done on the caller's thread.
 * Idempotent.
 */
void pictures_shutdown(struct pictures *x);

/* After pictures_shutdown() and db_shutdown(); the timer closes with the loop's next iteration. */
void pictures_free(struct pictures *x);

#endif
