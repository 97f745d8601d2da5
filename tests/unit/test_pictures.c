/*
 * test_pictures.c -- the picture index on a real loop and LMDB: users per file, eviction order, reconciliation,
 * purges, and picture files made durable before the records that name them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "db.h"

/*
 * The file thread's disk work, in order: 's' a sync of the filesystem and 'r'
 * a rename as blob.c makes them, 'p' a write submitted to the database.
 */
static char io_log[64];
static size_t io_len;
static bool io_logging;

static void io_note(char c)
{
    if (io_logging && io_len < sizeof(io_log) - 1)
        io_log[io_len++] = c;
}

static int logged_syncfs(int fd)
{
    io_note('s');
    return syncfs(fd);
}

static int logged_rename(const char *from, const char *to)
{
    io_note('r');
    return rename(from, to);
}

static void logged_submit(struct db *db, struct db_write *w)
{
    io_note('p');
    db_submit(db, w);
}

#define syncfs logged_syncfs
#define rename logged_rename
#include "../../src/blob.c"
#undef syncfs
#undef rename

#include "../../src/picindex.c"
#define db_submit logged_submit
#include "../../src/pictures.c"
#undef db_submit
#include "../../src/fsutil.h"
#include "fixture.h"

#define FILE_BYTES 1000

static struct fixture fx;
static struct blobs blobs;
static struct blobcache memory;
static struct pictures x;
static uint64_t limit_bytes;
static unsigned low_water_percent;
static int pending;

/* A start of the relay: a new loop, the database and the index on it, the index's start-up check done. */
static void open_index(void)
{
    char media[128], err[256];
    struct pictures_options opt = {limit_bytes, low_water_percent, 3600000};

    snprintf(media, sizeof(media), "%s/media", fx.dir);
    fixture_loop_open(&fx);
    fixture_db_open(&fx, "pictures.db", 64);
    if (blobs_init(&blobs, media, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    blobcache_init(&memory, 0);
    assert_int_equal(pictures_init(&x, &fx.loop, &opt, fx.db, &blobs, &memory, &fx.inbox), 0);
    assert_int_equal(db_start(fx.db), 0);
    pictures_start(&x);
    fixture_run_until(&fx, x._stats.ready);
}

/* The relay's order: index, writer, inbox, then the loop's handles. */
static void close_index(void)
{
    pictures_shutdown(&x);
    db_shutdown(fx.db);
    inbox_free(&fx.inbox);
    pictures_free(&x);
    blobcache_free(&memory);
    blobs_free(&blobs);
    fixture_loop_close(&fx);
}

static int setup(void **state)
{
    (void)state;
    fixture_dir_make(&fx, "pictures");
    limit_bytes = 1 << 30;
    low_water_percent = 50;
    pending = 0;
    open_index();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    close_index();
    fixture_dir_remove(&fx);
    return 0;
}

/* Steps the index's clock, so that what is stored or served next is more recent. */
static void later(void)
{
    x._wall_base_ms += 1000;
}

static void file_hash(uint8_t n, uint8_t hash[32])
{
    uint8_t data[FILE_BYTES];

    memset(data, n, sizeof(data));
    blob_hash(data, sizeof(data), hash);
}

/* Writes file `n` (FILE_BYTES bytes of n) as the picture pipeline does. */
static void write_file(uint8_t n)
{
    uint8_t data[FILE_BYTES], hash[32];

    memset(data, n, sizeof(data));
    blob_hash(data, sizeof(data), hash);
    assert_int_equal(blob_write(&blobs, hash, data, sizeof(data)), 0);
}

static bool file_there(uint8_t n)
{
    uint8_t hash[32];

    file_hash(n, hash);
    return blob_exists(&blobs, hash) == 1;
}

static void on_put(void *ctx, int status)
{
    *(int *)ctx = status;
    pending--;
}

/* Queues `pic` as pubkey `pk`'s record, its file written from `bytes` unless NULL; `status` hears the write. */
static void queue_pic(uint8_t pk, const struct pic *pic, struct blob_ref *bytes, int *status)
{
    uint8_t pubkey[32];

    memset(pubkey, pk, 32);
    *status = 1;
    pending++;
    pictures_put(&x, pubkey, pic, NULL, NULL, bytes, NULL, 0, on_put, status);
}

/* Stores pubkey `pk`'s picture as file `n`, already on disk, and returns the write's status. */
static int put(uint8_t pk, uint8_t n)
{
    struct pic pic = {0};
    int status;

    pic.h.state = PIC_OK;
    pic.h.bytes = FILE_BYTES;
    pic.h.fetched_at = (uint64_t)time(NULL);
    file_hash(n, pic.h.blob);
    queue_pic(pk, &pic, NULL, &status);
    fixture_run_until(&fx, pending == 0);
    return status;
}

static void put_negative(uint8_t pk)
{
    struct pic pic = {0};
    int status;

    pic.h.state = PIC_NEGATIVE;
    pic.h.retry_at = (uint64_t)time(NULL) + 3600;
    queue_pic(pk, &pic, NULL, &status);
    fixture_run_until(&fx, pending == 0);
    assert_int_equal(status, 0);
}

/* Queues pubkey `pk`'s picture as file `n`, with its bytes, as a fresh download does; `status` hears the write. */
static void put_with_bytes(uint8_t pk, uint8_t n, int *status)
{
    struct blob_ref *ref;
    struct pic pic = {0};
    uint8_t data[FILE_BYTES];

    memset(data, n, sizeof(data));
    pic.h.state = PIC_OK;
    pic.h.bytes = FILE_BYTES;
    blob_hash(data, sizeof(data), pic.h.blob);
    ref = blobcache_put(&memory, pic.h.blob, data, sizeof(data));
    assert_non_null(ref);
    queue_pic(pk, &pic, ref, status);
    blob_release(ref);
}

static bool has_record(uint8_t pk)
{
    uint8_t pubkey[32];
    struct pic pic;
    int r;

    memset(pubkey, pk, 32);
    r = pictures_get(&x, pubkey, &pic);
    assert_true(r == 0 || r == -ENOENT);
    return r == 0;
}

static void served(uint8_t n)
{
    uint8_t hash[32];

    file_hash(n, hash);
    pictures_touch(&x, hash);
}

static void on_purged_cb(void *ctx, const struct pictures_purged *r)
{
    *(struct pictures_purged *)ctx = *r;
    pending--;
}

static struct pictures_purged purge_scope(enum pictures_scope scope, int pk)
{
    struct pictures_purged r = {.status = 1};
    uint8_t pubkey[32];

    memset(pubkey, pk, 32);
    pending++;
    pictures_purge(&x, scope, pk >= 0 ? pubkey : NULL, on_purged_cb, &r);
    fixture_run_until(&fx, pending == 0);
    assert_int_equal(r.status, 0);
    return r;
}

static void a_file_shared_by_pubkeys_is_counted_once(void **state)
{
    struct pictures_stats s;
    (void)state;

    write_file(1);
    write_file(2);
    assert_int_equal(put(0xa1, 1), 0);
    assert_int_equal(put(0xa2, 1), 0);
    pictures_stats(&x, &s);
    assert_int_equal(s.pictures, 2);
    assert_int_equal(s.files, 1);
    assert_int_equal(s.bytes, FILE_BYTES);

    /* A pubkey that moves to another picture leaves the shared file to the other. */
    assert_int_equal(put(0xa2, 2), 0);
    pictures_stats(&x, &s);
    assert_int_equal(s.pictures, 2);
    assert_int_equal(s.files, 2);
    assert_int_equal(s.bytes, 2 * FILE_BYTES);

    /* A file whose users have all moved on stays, counted, until it is evicted or purged. */
    assert_int_equal(put(0xa1, 2), 0);
    pictures_stats(&x, &s);
    assert_int_equal(s.files, 2);
    assert_true(file_there(1));
}

static void a_record_naming_a_missing_file_is_refused(void **state)
{
    struct pictures_stats s;
    (void)state;

    assert_int_equal(put(0xa1, 7), -ENOENT);
    assert_false(has_record(0xa1));
    pictures_stats(&x, &s);
    assert_int_equal(s.pictures, 0);
    assert_int_equal(s.files, 0);
}

static void a_vanished_file_is_written_again_from_the_bytes(void **state)
{
    int status;
    (void)state;

    put_with_bytes(0xa1, 9, &status);
    fixture_run_until(&fx, pending == 0);
    assert_int_equal(status, 0);
    assert_true(file_there(9));
    assert_true(has_record(0xa1));
}

static void a_write_queued_behind_the_removal_of_its_file_writes_it_again(void **state)
{
    struct pictures_purged r = {.status = 1};
    uint8_t a[32];
    int status;
    (void)state;

    write_file(1);
    assert_int_equal(put(0xa1, 1), 0);
    memset(a, 0xa1, 32);
    /* Both queued at once: the file goes with the purge, then comes back for the new record. */
    pending++;
    pictures_purge(&x, PURGE_PUBKEY, a, on_purged_cb, &r);
    put_with_bytes(0xa2, 1, &status);
    fixture_run_until(&fx, pending == 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.files, 1);
    assert_int_equal(status, 0);
    assert_true(file_there(1));
    assert_false(has_record(0xa1));
    assert_true(has_record(0xa2));
}

static void eviction_removes_the_least_recently_served_down_to_the_low_water_mark(void **state)
{
    struct pictures_stats s;
    (void)state;

    close_index();
    /* Room for four files; the low water (50%) for two. */
    limit_bytes = 4 * FILE_BYTES;
    open_index();
    for (uint8_t n = 1; n <= 4; n++) {
        write_file(n);
        assert_int_equal(put((uint8_t)(0xa0 + n), n), 0);
        later();
    }
    /* Served since: 1, then 3. The order is now 2, 4, 1, 3, least recent first. */
    served(1);
    later();
    served(3);
    later();

    write_file(5);
    assert_int_equal(put(0xa5, 5), 0);
    fixture_run_until(&fx, !x._stats.evicting);
    pictures_stats(&x, &s);
    assert_int_equal(s.evictions, 1);
    assert_int_equal(s.evicted_files, 3);
    assert_int_equal(s.files, 2);
    assert_int_equal(s.bytes, 2 * FILE_BYTES);
    assert_false(file_there(2));
    assert_false(file_there(4));
    assert_false(file_there(1));
    assert_true(file_there(3));
    assert_true(file_there(5));
    /* The records of the pubkeys that used them went too. */
    assert_false(has_record(0xa2));
    assert_false(has_record(0xa1));
    assert_true(has_record(0xa3));
    assert_true(has_record(0xa5));
}

static void startup_drops_entries_without_a_file_and_removes_files_without_an_entry(void **state)
{
    struct pictures_stats s;
    struct timeval old[2] = {{1000000000, 0}, {1000000000, 0}};
    struct timeval recent[2] = {{time(NULL) + 3600, 0}, {time(NULL) + 3600, 0}};
    char stray_old[256], stray_new[256];
    uint8_t hash[32];
    (void)state;

    write_file(1);
    write_file(2);
    assert_int_equal(put(0xa1, 1), 0);
    assert_int_equal(put(0xa2, 2), 0);
    assert_int_equal(put(0xa3, 2), 0);
    close_index();

    /* File 2 disappears; files 3 and 4 appear with no entry, 3 from long ago, 4 as if written after start-up. */
    open_index();
    file_hash(2, hash);
    assert_int_equal(blob_remove(&blobs, hash), 0);
    write_file(3);
    file_hash(3, hash);
    blob_path(&blobs, hash, stray_old, sizeof(stray_old));
    assert_int_equal(utimes(stray_old, old), 0);
    write_file(4);
    file_hash(4, hash);
    blob_path(&blobs, hash, stray_new, sizeof(stray_new));
    assert_int_equal(utimes(stray_new, recent), 0);
    close_index();
    open_index();

    pictures_stats(&x, &s);
    assert_int_equal(s.pictures, 1);
    assert_int_equal(s.files, 1);
    assert_true(has_record(0xa1));
    assert_false(has_record(0xa2));
    assert_false(has_record(0xa3));
    assert_false(file_there(3));
    /* Written since the relay started, by its time: its record may still be on the way. */
    assert_true(file_there(4));
}

static void startup_drops_the_entries_and_the_file_of_a_picture_of_the_wrong_size(void **state)
{
    struct pictures_stats s;
    char path[4096];
    uint8_t hash[32];
    (void)state;

    write_file(1);
    write_file(2);
    assert_int_equal(put(0xa1, 1), 0);
    assert_int_equal(put(0xa2, 2), 0);
    file_hash(2, hash);
    blob_path(&blobs, hash, path, sizeof(path));
    close_index();

    /* File 2 loses its second half while the relay is stopped. */
    assert_int_equal(truncate(path, FILE_BYTES / 2), 0);
    open_index();

    pictures_stats(&x, &s);
    assert_int_equal(s.pictures, 1);
    assert_int_equal(s.files, 1);
    assert_int_equal(s.damaged_files, 1);
    assert_true(has_record(0xa1));
    assert_false(has_record(0xa2));
    assert_false(file_there(2));
}

static void purging_a_pubkey_removes_a_shared_file_only_with_its_last_user(void **state)
{
    struct pictures_purged r;
    struct pictures_stats s;
    (void)state;

    write_file(1);
    assert_int_equal(put(0xa1, 1), 0);
    assert_int_equal(put(0xa2, 1), 0);

    r = purge_scope(PURGE_PUBKEY, 0xa1);
    assert_true(r.found);
    assert_int_equal(r.pictures, 1);
    assert_int_equal(r.files, 0);
    assert_true(file_there(1));

    r = purge_scope(PURGE_PUBKEY, 0xa2);
    assert_true(r.found);
    assert_int_equal(r.files, 1);
    assert_int_equal(r.bytes, FILE_BYTES);
    assert_false(file_there(1));
    pictures_stats(&x, &s);
    assert_int_equal(s.pictures, 0);
    assert_int_equal(s.files, 0);
    assert_int_equal(s.bytes, 0);

    r = purge_scope(PURGE_PUBKEY, 0xa3);
    assert_false(r.found);
}

static void purging_the_pictures_keeps_remembered_failures_and_purging_all_does_not(void **state)
{
    struct pictures_purged r;
    struct pictures_stats s;
    (void)state;

    write_file(1);
    write_file(2);
    assert_int_equal(put(0xa1, 1), 0);
    assert_int_equal(put(0xa2, 2), 0);
    put_negative(0xb1);

    r = purge_scope(PURGE_PICTURES, -1);
    assert_int_equal(r.pictures, 2);
    assert_int_equal(r.files, 2);
    assert_false(file_there(1));
    assert_false(file_there(2));
    assert_false(has_record(0xa1));
    assert_true(has_record(0xb1));
    pictures_stats(&x, &s);
    assert_int_equal(s.files, 0);
    assert_int_equal(s.purges, 1);

    write_file(3);
    assert_int_equal(put(0xa3, 3), 0);
    r = purge_scope(PURGE_ALL, -1);
    assert_int_equal(r.files, 1);
    assert_false(has_record(0xb1));
    assert_false(has_record(0xa3));
    assert_false(file_there(3));
}

static void a_forgotten_file_takes_its_records_with_it(void **state)
{
    struct pictures_stats s;
    uint8_t hash[32];
    (void)state;

    write_file(1);
    assert_int_equal(put(0xa1, 1), 0);
    assert_int_equal(put(0xa2, 1), 0);
    file_hash(1, hash);
    assert_int_equal(blob_remove(&blobs, hash), 0);
    pictures_forget_file(&x, hash);
    /* The forget goes ahead of this write on the file thread, and the writer keeps their order. */
    put_negative(0xb1);
    pictures_stats(&x, &s);
    assert_int_equal(s.pictures, 0);
    assert_int_equal(s.files, 0);
    assert_false(has_record(0xa1));
    assert_false(has_record(0xa2));
}

static void new_files_are_durable_under_their_names_before_their_records_are_submitted(void **state)
{
    int a, b;
    (void)state;

    io_len = 0;
    io_logging = true;
    put_with_bytes(0xa1, 5, &a);
    put_with_bytes(0xa2, 6, &b);
    fixture_run_until(&fx, pending == 0);
    io_logging = false;
    io_log[io_len] = '\0';
    /* Both written in one batch: contents synced, renamed, names synced, and only then the two records. */
    assert_string_equal(io_log, "srrspp");
    assert_int_equal(a, 0);
    assert_int_equal(b, 0);
    assert_true(file_there(5));
    assert_true(file_there(6));
    assert_true(has_record(0xa1));
    assert_true(has_record(0xa2));
}

static void a_crash_in_the_middle_of_a_batch_leaves_nothing_that_start_up_keeps(void **state)
{
    struct pictures_stats s;
    struct timeval old[2] = {{1000000000, 0}, {1000000000, 0}};
    char path[256], tmp[300];
    uint8_t hash[32];
    FILE *f;
    int status;
    (void)state;

    put_with_bytes(0xa1, 1, &status);
    fixture_run_until(&fx, pending == 0);
    assert_int_equal(status, 0);
    close_index();
    open_index();

    /*
     * Killed during a batch: file 5 still under its temporary name, half written (before the first sync or the
     * rename); file 6 whole under its name but its record never committed (after the renames).
     */
    file_hash(5, hash);
    blob_path(&blobs, hash, path, sizeof(path));
    assert_int_equal(fs_mkdir_parent(path, 0755), 0);
    snprintf(tmp, sizeof(tmp), "%s" TMP_MARK "%d.%u", path, 99999, 7u);
    assert_non_null(f = fopen(tmp, "w"));
    fputs("half", f);
    fclose(f);
    write_file(6);
    file_hash(6, hash);
    blob_path(&blobs, hash, path, sizeof(path));
    assert_int_equal(utimes(path, old), 0);
    close_index();
    open_index();

    assert_int_equal(access(tmp, F_OK), -1);
    assert_false(file_there(5));
    assert_false(file_there(6));
    pictures_stats(&x, &s);
    assert_int_equal(s.pictures, 1);
    assert_int_equal(s.files, 1);
    assert_true(has_record(0xa1));
    assert_true(file_there(1));
}

/* Many files, many pictures: file and pubkey `i` of a large cache, written without a flush. */
static void many_bytes(uint32_t i, uint8_t data[FILE_BYTES], uint8_t hash[32])
{
    for (size_t j = 0; j < FILE_BYTES; j += 4)
        memcpy(data + j, &(uint32_t){i * 2654435761u + (uint32_t)j}, 4);
    blob_hash(data, FILE_BYTES, hash);
}

static void many_pubkey(uint32_t i, uint8_t pubkey[32])
{
    memset(pubkey, 0xc0, 32);
    memcpy(pubkey, &i, sizeof(i));
}

static void many_put(uint32_t pk, uint32_t file, struct blob_ref *bytes, int *status)
{
    uint8_t data[FILE_BYTES], pubkey[32];
    struct pic pic = {0};
    char path[256];
    FILE *f;

    many_bytes(file, data, pic.h.blob);
    blob_path(&blobs, pic.h.blob, path, sizeof(path));
    if (bytes == NULL) {
        assert_int_equal(fs_mkdir_parent(path, 0755), 0);
        assert_non_null(f = fopen(path, "wb"));
        assert_int_equal(fwrite(data, 1, sizeof(data), f), sizeof(data));
        assert_int_equal(fclose(f), 0);
    }
    many_pubkey(pk, pubkey);
    pic.h.state = PIC_OK;
    pic.h.bytes = FILE_BYTES;
    pending++;
    pictures_put(&x, pubkey, &pic, NULL, NULL, bytes, NULL, 0, on_put, status);
}

static bool many_there(uint32_t file)
{
    uint8_t data[FILE_BYTES], hash[32];

    many_bytes(file, data, hash);
    return blob_exists(&blobs, hash) == 1;
}

static bool many_record(uint32_t pk)
{
    uint8_t pubkey[32];
    struct pic pic;

    many_pubkey(pk, pubkey);
    return pictures_get(&x, pubkey, &pic) == 0;
}

static size_t count_table(MDB_txn *txn, MDB_dbi dbi, uint64_t *bytes)
{
    MDB_cursor *cur;
    MDB_val k, v;
    size_t n = 0;

    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct file_rec f;
        n++;
        if (bytes != NULL && v.mv_size == sizeof(f)) {
            memcpy(&f, v.mv_data, sizeof(f));
            *bytes += f.bytes;
        }
    }
    mdb_cursor_close(cur);
    return n;
}

/* The stats, the tables and the disk all say the same. */
static void assert_index_agrees(void)
{
    struct pictures_stats s;
    struct picindex_disk_file *disk;
    MDB_txn *txn;
    uint64_t bytes = 0;
    size_t ndisk;

    pictures_stats(&x, &s);
    assert_int_equal(db_read_begin(fx.db, &txn), 0);
    assert_int_equal(count_table(txn, x._index->records, NULL), s.pictures);
    assert_int_equal(count_table(txn, x._index->files, &bytes), s.files);
    assert_int_equal(bytes, s.bytes);
    assert_int_equal(count_table(txn, x._index->lru, NULL), s.files);
    assert_int_equal(count_table(txn, x._index->users, NULL), s.pictures);
    db_read_end(fx.db, txn);
    disk = list_disk(&x, &ndisk);
    assert_int_equal(ndisk, s.files);
    free(disk);
}

static void an_eviction_of_many_chunks_keeps_order_and_counts_and_a_write_meanwhile_gets_its_file(void **state)
{
    /* Oldest first: a file two pubkeys share, a chunk's worth and ten more, file F alone, then the rest. */
    enum { OLD = EVICT_CHUNK + 10, F = OLD + 1, REST = 1500, FILES = F + 1 + REST };
    struct pictures_stats s;
    uint8_t data[FILE_BYTES], hash[32];
    struct blob_ref *ref;
    int status[FILES + 2];
    uint32_t pk = 0;
    (void)state;

    many_put(pk, 0, NULL, &status[pk]);
    pk++;
    many_put(pk, 0, NULL, &status[pk]);
    pk++;
    later();
    for (uint32_t i = 1; i <= OLD; i++, pk++)
        many_put(pk, i, NULL, &status[pk]);
    fixture_run_until(&fx, pending == 0);
    later();
    many_put(pk, F, NULL, &status[pk]);
    pk++;
    fixture_run_until(&fx, pending == 0);
    later();
    for (uint32_t i = F + 1; i < FILES; i++, pk++)
        many_put(pk, i, NULL, &status[pk]);
    fixture_run_until(&fx, pending == 0);
    later();
    /* Served last: ten of the old ones. */
    for (uint32_t i = 1; i <= 10; i++) {
        many_bytes(i, data, hash);
        pictures_touch(&x, hash);
    }
    for (uint32_t i = 0; i < pk; i++)
        assert_int_equal(status[i], 0);
    close_index();

    /* Down to a fifth: three chunks, F in the second. */
    limit_bytes = (uint64_t)FILES * FILE_BYTES - 1;
    low_water_percent = 20;
    open_index();
    assert_true(x._stats.evicting);
    /* Queued behind the first chunk: it waits for the second chunk's files to go, then writes F again, as
     * the most recent (the clock restarted with the index, behind the steps taken before). */
    x._wall_base_ms += 10000;
    many_bytes(F, data, hash);
    ref = blobcache_put(&memory, hash, data, sizeof(data));
    many_put(pk, F, ref, &status[pk]);
    blob_release(ref);
    fixture_run_until(&fx, pending == 0);
    fixture_run_until(&fx, !x._stats.evicting);
    assert_int_equal(status[pk], 0);

    pictures_stats(&x, &s);
    assert_int_equal(s.evictions, 1);
    assert_true(s.bytes <= limit_bytes / 100 * 20);
    assert_true(s.evicted_files >= 2 * EVICT_CHUNK);
    /* The shared file went with both its pictures; the files served last stayed. */
    assert_int_equal(s.evicted_pictures, s.evicted_files + 1);
    assert_false(many_there(0));
    assert_false(many_record(0));
    assert_false(many_record(1));
    for (uint32_t i = 1; i <= 10; i++)
        assert_true(many_there(i));
    assert_false(many_there(11));
    assert_true(many_there(F));
    assert_true(many_record(pk));
    assert_index_agrees();

    /* And so it stays after a restart. */
    close_index();
    open_index();
    assert_false(x._stats.evicting);
    assert_index_agrees();
}

/* --- variants ------------------------------------------------------------------------------------------------------
 */

/* A variant named by key byte `k`, as file `n`, with its bytes. */
static struct pictures_variant variant_of(uint8_t k, uint8_t n, struct blob_ref **ref)
{
    struct pictures_variant v = {0};
    uint8_t data[FILE_BYTES];

    memset(data, n, sizeof(data));
    pictures_variant_key(&v.key, 32 + k, 2, false, false, 1024, 1024);
    blob_hash(data, sizeof(data), v.rec.blob);
    v.rec.bytes = FILE_BYTES;
    v.rec.type = 2;
    v.rec.frames = 1;
    *ref = v.bytes = blobcache_put(&memory, v.rec.blob, data, sizeof(data));
    return v;
}

/* Stores pubkey `pk`'s picture as file `n` (on disk) with the variants `k` as files `vn`, in one write. */
static int put_with_variants(uint8_t pk, uint8_t n, const uint8_t *k, const uint8_t *vn, size_t nv)
{
    struct pictures_variant v[PICTURES_MAX_VARIANTS];
    struct blob_ref *refs[PICTURES_MAX_VARIANTS];
    uint8_t pubkey[32];
    struct pic pic = {0};
    int status = 1;

    for (size_t i = 0; i < nv; i++)
        v[i] = variant_of(k[i], vn[i], &refs[i]);
    pic.h.state = PIC_OK;
    pic.h.flags = PIC_MASTER;
    pic.h.bytes = FILE_BYTES;
    pic.h.width = pic.h.height = 1024;
    pic.h.fetched_at = (uint64_t)time(NULL);
    file_hash(n, pic.h.blob);
    memset(pubkey, pk, 32);
    pending++;
    pictures_put(&x, pubkey, &pic, NULL, NULL, NULL, v, nv, on_put, &status);
    for (size_t i = 0; i < nv; i++)
        blob_release(refs[i]);
    fixture_run_until(&fx, pending == 0);
    return status;
}

/* Stores variant `k` of the master file `n` alone, as file `vn`. */
static int put_variant_alone(uint8_t n, uint8_t k, uint8_t vn)
{
    struct blob_ref *ref;
    struct pictures_variant v = variant_of(k, vn, &ref);
    uint8_t master[32];
    int status = 1;

    file_hash(n, master);
    pending++;
    pictures_put_variant(&x, master, &v, on_put, &status);
    blob_release(ref);
    fixture_run_until(&fx, pending == 0);
    return status;
}

/* Whether the master file `n` has the variant `k`, as file `vn`. */
static bool has_variant(uint8_t n, uint8_t k, uint8_t vn)
{
    struct variant_rec rec;
    uint8_t master[32], hash[32];
    struct pictures_vkey key;
    int r;

    file_hash(n, master);
    pictures_variant_key(&key, 32 + k, 2, false, false, 1024, 1024);
    r = pictures_get_variant(&x, master, &key, &rec);
    assert_true(r == 0 || r == -ENOENT);
    file_hash(vn, hash);
    return r == 0 && memcmp(rec.blob, hash, 32) == 0;
}

static void variants_are_counted_shared_and_go_with_their_master(void **state)
{
    struct pictures_stats s;
    struct pictures_purged r;
    (void)state;

    write_file(1);
    write_file(2);
    assert_int_equal(put_with_variants(0xa1, 1, (const uint8_t[]){1, 2}, (const uint8_t[]){10, 11}, 2), 0);
    assert_true(has_variant(1, 1, 10));
    assert_true(has_variant(1, 2, 11));
    assert_true(file_there(10));
    assert_true(file_there(11));
    /* Another master whose variant has the same bytes: the file is stored and counted once. */
    assert_int_equal(put(0xa2, 2), 0);
    assert_int_equal(put_variant_alone(2, 1, 11), 0);
    pictures_stats(&x, &s);
    assert_int_equal(s.pictures, 2);
    assert_int_equal(s.files, 4);
    assert_int_equal(s.bytes, 4 * FILE_BYTES);

    /* The first master goes with its last user; of its variants' files, the shared one stays. */
    r = purge_scope(PURGE_PUBKEY, 0xa1);
    assert_int_equal(r.files, 2);
    assert_false(file_there(1));
    assert_false(file_there(10));
    assert_true(file_there(11));
    assert_false(has_variant(1, 1, 10));
    assert_true(has_variant(2, 1, 11));
    pictures_stats(&x, &s);
    assert_int_equal(s.files, 2);
    assert_int_equal(s.bytes, 2 * FILE_BYTES);

    r = purge_scope(PURGE_PICTURES, -1);
    assert_false(file_there(11));
    assert_false(has_variant(2, 1, 11));
    pictures_stats(&x, &s);
    assert_int_equal(s.files, 0);
    assert_int_equal(s.bytes, 0);
}

static void a_variant_made_twice_keeps_the_first(void **state)
{
    struct pictures_stats s;
    (void)state;

    write_file(1);
    assert_int_equal(put(0xa1, 1), 0);
    assert_int_equal(put_variant_alone(1, 1, 10), 0);
    assert_int_equal(put_variant_alone(1, 1, 12), 0);
    assert_true(has_variant(1, 1, 10));
    pictures_stats(&x, &s);
    assert_int_equal(s.files, 2);
    assert_int_equal(s.bytes, 2 * FILE_BYTES);
}

static void a_variant_needs_its_master_and_bytes_of_its_own(void **state)
{
    struct pictures_stats s;
    (void)state;

    /* No such master: nothing is stored, and nothing is counted. */
    assert_int_equal(put_variant_alone(5, 1, 10), -ENOENT);
    /* Bytes that are the master's own file are not a variant of it. */
    write_file(1);
    assert_int_equal(put(0xa1, 1), 0);
    assert_int_equal(put_variant_alone(1, 1, 1), -EEXIST);
    assert_false(has_variant(1, 1, 1));
    pictures_stats(&x, &s);
    assert_int_equal(s.files, 1);
}

static void eviction_takes_a_master_with_its_variants(void **state)
{
    struct pictures_stats s;
    (void)state;

    close_index();
    /* Room for five files; the low water (50%) for two. */
    limit_bytes = 5 * FILE_BYTES;
    open_index();
    write_file(1);
    assert_int_equal(put_with_variants(0xa1, 1, (const uint8_t[]){1, 2}, (const uint8_t[]){10, 11}, 2), 0);
    later();
    write_file(2);
    assert_int_equal(put_with_variants(0xa2, 2, (const uint8_t[]){1}, (const uint8_t[]){12}, 1), 0);
    later();
    /* Serving a variant is its master's use: file 1 is now the more recent. */
    served(1);
    later();
    write_file(3);
    assert_int_equal(put_with_variants(0xa3, 3, (const uint8_t[]){1}, (const uint8_t[]){13}, 1), 0);
    fixture_run_until(&fx, !x._stats.evicting && x._stats.evictions > 0);
    pictures_stats(&x, &s);
    assert_false(has_record(0xa2));
    assert_false(file_there(2));
    assert_false(file_there(12));
    assert_false(has_variant(2, 1, 12));
    assert_true(s.bytes <= 5 * FILE_BYTES);
    assert_int_equal(s.bytes, s.files * FILE_BYTES);
}

static void startup_drops_a_variant_whose_file_is_gone_and_keeps_its_master(void **state)
{
    struct pictures_stats s;
    uint8_t hash[32];
    (void)state;

    write_file(1);
    assert_int_equal(put_with_variants(0xa1, 1, (const uint8_t[]){1, 2}, (const uint8_t[]){10, 11}, 2), 0);
    close_index();
    open_index();
    file_hash(10, hash);
    assert_int_equal(blob_remove(&blobs, hash), 0);
    close_index();
    open_index();
    assert_true(has_record(0xa1));
    assert_false(has_variant(1, 1, 10));
    assert_true(has_variant(1, 2, 11));
    pictures_stats(&x, &s);
    assert_int_equal(s.files, 2);

    /* A variant found damaged when served is dropped alone. */
    {
        uint8_t master[32];
        struct pictures_vkey key;
        file_hash(1, master);
        pictures_variant_key(&key, 34, 2, false, false, 1024, 1024);
        pictures_forget_variant(&x, master, &key);
        fixture_run_until(&fx, !file_there(11));
        assert_false(has_variant(1, 2, 11));
        assert_true(has_record(0xa1));
    }
}

static void a_variant_key_never_asks_for_more_than_its_master(void **state)
{
    struct pictures_vkey a, b;
    (void)state;

    pictures_variant_key(&a, 512, 2, false, false, 300, 200);
    pictures_variant_key(&b, 1024, 2, false, false, 300, 200);
    assert_memory_equal(&a, &b, sizeof(a));
    pictures_variant_key(&b, 300, 2, false, false, 300, 200);
    assert_memory_equal(&a, &b, sizeof(a));
    /* Banners fit their width only. */
    pictures_variant_key(&a, 512, 2, false, true, 300, 600);
    pictures_variant_key(&b, 300, 2, false, true, 300, 600);
    assert_memory_equal(&a, &b, sizeof(a));
    pictures_variant_key(&b, 300, 2, true, true, 300, 600);
    assert_memory_not_equal(&a, &b, sizeof(a));
    pictures_variant_key(&b, 300, 3, false, true, 300, 600);
    assert_memory_not_equal(&a, &b, sizeof(a));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        fixture_unit_test(a_file_shared_by_pubkeys_is_counted_once),
        fixture_unit_test(a_record_naming_a_missing_file_is_refused),
        fixture_unit_test(a_vanished_file_is_written_again_from_the_bytes),
        fixture_unit_test(a_write_queued_behind_the_removal_of_its_file_writes_it_again),
        fixture_unit_test(eviction_removes_the_least_recently_served_down_to_the_low_water_mark),
        fixture_unit_test(startup_drops_the_entries_and_the_file_of_a_picture_of_the_wrong_size),
        fixture_unit_test(startup_drops_entries_without_a_file_and_removes_files_without_an_entry),
        fixture_unit_test(purging_a_pubkey_removes_a_shared_file_only_with_its_last_user),
        fixture_unit_test(purging_the_pictures_keeps_remembered_failures_and_purging_all_does_not),
        fixture_unit_test(a_forgotten_file_takes_its_records_with_it),
        fixture_unit_test(new_files_are_durable_under_their_names_before_their_records_are_submitted),
        fixture_unit_test(a_crash_in_the_middle_of_a_batch_leaves_nothing_that_start_up_keeps),
        fixture_unit_test(an_eviction_of_many_chunks_keeps_order_and_counts_and_a_write_meanwhile_gets_its_file),
        fixture_unit_test(variants_are_counted_shared_and_go_with_their_master),
        fixture_unit_test(a_variant_made_twice_keeps_the_first),
        fixture_unit_test(a_variant_needs_its_master_and_bytes_of_its_own),
        fixture_unit_test(eviction_takes_a_master_with_its_variants),
        fixture_unit_test(startup_drops_a_variant_whose_file_is_gone_and_keeps_its_master),
        fixture_unit_test(a_variant_key_never_asks_for_more_than_its_master),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
