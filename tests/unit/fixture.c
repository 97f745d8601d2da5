/* fixture.c -- the temporary directory, loop, inbox and database of the unit tests, and their synthetic events. */
#include "fixture.h"

#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"

void fixture_open(struct fixture *fx, const char *name)
{
    fixture_dir_make(fx, name);
    fixture_loop_open(fx);
}

void fixture_close(struct fixture *fx)
{
    fixture_loop_close(fx);
    fixture_dir_remove(fx);
}

void fixture_dir_make(struct fixture *fx, const char *name)
{
    int n = snprintf(fx->dir, sizeof(fx->dir), "/tmp/pfp-test-%s-XXXXXX", name);

    assert_true(n > 0 && (size_t)n < sizeof(fx->dir));
    if (mkdtemp(fx->dir) == NULL)
        fail_msg("mkdtemp %s: %s", fx->dir, strerror(errno));
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

void fixture_dir_remove(struct fixture *fx)
{
    /* Depth first, so that each directory is empty when its turn comes; links are removed, never followed. */
    if (nftw(fx->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fail_msg("removing %s: %s", fx->dir, strerror(errno));
}

void fixture_loop_open(struct fixture *fx)
{
    fx->db = NULL;
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    assert_int_equal(inbox_init(&fx->inbox, &fx->loop), 0);
    assert_int_equal(uv_timer_init(&fx->loop, &fx->_deadline), 0);
}

void fixture_loop_close(struct fixture *fx)
{
    db_shutdown(fx->db);
    inbox_free(&fx->inbox);
    db_free(fx->db);
    fx->db = NULL;
    uv_close((uv_handle_t *)&fx->_deadline, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
}

void fixture_db_open(struct fixture *fx, const char *file, uint64_t max_mb)
{
    char path[128], err[256];

    snprintf(path, sizeof(path), "%s/%s", fx->dir, file);
    if (db_init(&fx->db, &(struct db_options){path, max_mb}, &fx->inbox, err, sizeof(err)) != 0)
        fail_msg("%s", err);
}

void fixture_db_close(struct fixture *fx)
{
    db_shutdown(fx->db);
    db_free(fx->db);
    fx->db = NULL;
}

static void on_deadline(uv_timer_t *t)
{
    ((struct fixture *)t->data)->_late = true;
}

void fixture_wait_begin(struct fixture *fx)
{
    fx->_late = false;
    fx->_deadline.data = fx;
    /* From now, not from the loop's last iteration, which may be long past. */
    uv_update_time(&fx->loop);
    uv_timer_start(&fx->_deadline, on_deadline, FIXTURE_WAIT_MS, 0);
}

bool fixture_wait_step(struct fixture *fx)
{
    if (fx->_late)
        return false;
    uv_run(&fx->loop, UV_RUN_ONCE);
    return true;
}

void fixture_wait_end(struct fixture *fx)
{
    uv_timer_stop(&fx->_deadline);
}

uint8_t *fixture_record(uint8_t id, uint8_t pubkey, int64_t created_at, uint32_t kind, const char *tags,
                        const char *content, size_t content_len, size_t *len)
{
    struct event ev;
    json_error_t jerr;
    uint8_t *rec;

    memset(&ev, 0, sizeof(ev));
    memset(ev.id, id, 32);
    memset(ev.pubkey, pubkey, 32);
    memset(ev.sig, 0x5a, 64);
    ev.created_at = created_at;
    ev.kind = kind;
    if ((ev.tags = json_loads(tags, JSON_ALLOW_NUL, &jerr)) == NULL)
        fail_msg("test tags %s: %s", tags, jerr.text);
    ev.content = content;
    ev.content_len = content_len;
    rec = event_record_build(&ev, len);
    json_decref(ev.tags);
    return rec;
}

json_t *fixture_vectors(const char *path, size_t flags)
{
    json_error_t err;
    json_t *v = json_load_file(path, flags, &err);

    if (v == NULL)
        fail_msg("cannot load %s: %s", path, err.text);
    return v;
}
