/* test_fifo.c -- the queue between threads (urgent items first), and the inbox and workpool built on it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <h2o/memory.h>
#include <stdlib.h>

#include "fifo.h"
#include "inbox.h"
#include "workpool.h"

struct num {
    struct fifo_item item;
    int n;
};

#define PRODUCERS    4
#define PER_PRODUCER 5000

static struct fifo q;
static struct num nums[PRODUCERS][PER_PRODUCER];

static void *produce(void *arg)
{
    struct num *v = arg;

    for (int i = 0; i < PER_PRODUCER; i++)
        assert_int_equal(fifo_push(&q, &v[i].item), 0);
    return NULL;
}

static int pop_one(struct fifo *f, bool wait)
{
    h2o_linklist_t out;
    struct num *v;

    h2o_linklist_init_anchor(&out);
    if (fifo_pop(f, &out, 1, wait) == 0)
        return -1;
    v = H2O_STRUCT_FROM_MEMBER(struct num, item._link, out.next);
    h2o_linklist_unlink(&v->item._link);
    return v->n;
}

static void each_producer_s_items_come_out_in_its_order(void **state)
{
    pthread_t t[PRODUCERS];
    int next[PRODUCERS] = {0};
    (void)state;

    assert_int_equal(fifo_init(&q), 0);
    for (int p = 0; p < PRODUCERS; p++) {
        for (int i = 0; i < PER_PRODUCER; i++)
            nums[p][i].n = p * PER_PRODUCER + i;
        assert_int_equal(pthread_create(&t[p], NULL, produce, nums[p]), 0);
    }
    for (int k = 0; k < PRODUCERS * PER_PRODUCER; k++) {
        int n = pop_one(&q, true), p = n / PER_PRODUCER;
        assert_int_equal(n % PER_PRODUCER, next[p]);
        next[p]++;
    }
    for (int p = 0; p < PRODUCERS; p++)
        pthread_join(t[p], NULL);
    assert_int_equal(fifo_length(&q), 0);
    assert_int_equal(pop_one(&q, false), -1);
    fifo_shutdown(&q);
    fifo_free(&q);
}

static void pop_takes_at_most_max_oldest_first(void **state)
{
    struct num v[5];
    h2o_linklist_t out;
    (void)state;

    assert_int_equal(fifo_init(&q), 0);
    for (int i = 0; i < 5; i++) {
        v[i].n = i;
        fifo_push(&q, &v[i].item);
    }
    h2o_linklist_init_anchor(&out);
    assert_int_equal(fifo_pop(&q, &out, 2, false), 2);
    assert_ptr_equal(out.next, &v[0].item._link);
    assert_ptr_equal(out.next->next, &v[1].item._link);
    assert_int_equal(fifo_length(&q), 3);
    /* More than there is: all of it, appended after what `out` holds. */
    assert_int_equal(fifo_pop(&q, &out, 100, false), 3);
    assert_ptr_equal(out.prev, &v[4].item._link);
    assert_int_equal(fifo_length(&q), 0);
    fifo_shutdown(&q);
    fifo_free(&q);
}

static void urgent_items_go_first_and_a_promoted_one_joins_them(void **state)
{
    struct num v[6];
    h2o_linklist_t out;
    const int rest[] = {4, 3, 0, 1, 5};
    size_t k = 0;
    (void)state;

    assert_int_equal(fifo_init(&q), 0);
    for (int i = 0; i < 6; i++)
        v[i].n = i;
    fifo_push(&q, &v[0].item);
    fifo_push(&q, &v[1].item);
    fifo_push_urgent(&q, &v[2].item);
    fifo_push(&q, &v[3].item);
    fifo_push_urgent(&q, &v[4].item);
    fifo_push(&q, &v[5].item);
    /* Behind the urgent items already there. */
    assert_int_equal(fifo_promote(&q, &v[3].item), 0);
    assert_int_equal(fifo_promote(&q, &v[3].item), -ENOENT);
    assert_int_equal(fifo_length(&q), 6);
    assert_int_equal(pop_one(&q, false), 2);
    assert_int_equal(fifo_promote(&q, &v[2].item), -ENOENT);
    /* The rest in one splice, in the same order. */
    h2o_linklist_init_anchor(&out);
    assert_int_equal(fifo_pop(&q, &out, 100, false), 5);
    for (h2o_linklist_t *l = out.next; l != &out; l = l->next)
        assert_int_equal(H2O_STRUCT_FROM_MEMBER(struct num, item._link, l)->n, rest[k++]);
    assert_int_equal(k, 5);
    assert_int_equal(fifo_length(&q), 0);
    fifo_shutdown(&q);
    fifo_free(&q);
}

static void *wait_pop(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)pop_one(&q, true);
}

static void close_wakes_waiters_refuses_pushes_and_keeps_what_is_queued(void **state)
{
    struct num v = {.n = 7}, late = {.n = 8};
    pthread_t t;
    void *got;
    (void)state;

    assert_int_equal(fifo_init(&q), 0);
    assert_int_equal(pthread_create(&t, NULL, wait_pop, NULL), 0);
    fifo_shutdown(&q);
    pthread_join(t, &got);
    assert_int_equal((intptr_t)got, -1);

    assert_int_equal(fifo_init(&q), 0);
    fifo_push(&q, &v.item);
    fifo_shutdown(&q);
    fifo_shutdown(&q);
    assert_int_equal(fifo_push(&q, &late.item), -ESHUTDOWN);
    assert_int_equal(pop_one(&q, true), 7);
    assert_int_equal(pop_one(&q, true), -1);
    fifo_free(&q);
}

/* --- inbox and workpool ------------------------------------------------------------------------------------------ */

struct job {
    struct work work;
    int n;
    bool ran, done;
};

static int done_order[64], ndone;

static void job_run(struct work *w)
{
    H2O_STRUCT_FROM_MEMBER(struct job, work, w)->ran = true;
}

static void job_done(struct work *w)
{
    struct job *j = H2O_STRUCT_FROM_MEMBER(struct job, work, w);
    assert_true(j->ran);
    j->done = true;
    done_order[ndone++] = j->n;
}

static void workpool_results_come_back_on_the_loop(void **state)
{
    uv_loop_t loop;
    struct inbox inbox;
    struct workpool pool = {0};
    struct job jobs[32] = {0};
    (void)state;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(inbox_init(&inbox, &loop), 0);
    /* One thread: results in submission order. */
    assert_int_equal(workpool_init(&pool, 1, &inbox), 0);
    ndone = 0;
    for (int i = 0; i < 32; i++) {
        jobs[i].n = i;
        jobs[i].work.run = job_run;
        jobs[i].work.done = job_done;
        workpool_submit(&pool, &jobs[i].work);
    }
    while (ndone < 32)
        uv_run(&loop, UV_RUN_ONCE);
    for (int i = 0; i < 32; i++)
        assert_int_equal(done_order[i], i);
    workpool_shutdown(&pool);
    workpool_shutdown(&pool);
    workpool_free(&pool);
    inbox_free(&inbox);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* A job that holds the pool's one thread until the test lets it go, so that the others queue behind it. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open, gate_reached;

static void gate_run(struct work *w)
{
    pthread_mutex_lock(&gate_lock);
    gate_reached = true;
    pthread_cond_broadcast(&gate_cond);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
    job_run(w);
}

static void urgent_work_runs_before_work_queued_earlier(void **state)
{
    uv_loop_t loop;
    struct inbox inbox;
    struct workpool pool = {0};
    struct job jobs[5] = {0};
    const int order[] = {0, 3, 4, 2, 1};
    (void)state;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(inbox_init(&inbox, &loop), 0);
    assert_int_equal(workpool_init(&pool, 1, &inbox), 0);
    ndone = 0;
    gate_open = gate_reached = false;
    for (int i = 0; i < 5; i++) {
        jobs[i].n = i;
        jobs[i].work.run = i == 0 ? gate_run : job_run;
        jobs[i].work.done = job_done;
    }
    workpool_submit(&pool, &jobs[0].work);
    pthread_mutex_lock(&gate_lock);
    while (!gate_reached)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
    /* Fetching ahead queues 1 and 2; then pictures someone waits for (3, 4), and 2 turns out to be one. */
    workpool_submit(&pool, &jobs[1].work);
    workpool_submit(&pool, &jobs[2].work);
    workpool_submit_urgent(&pool, &jobs[3].work);
    workpool_submit_urgent(&pool, &jobs[4].work);
    workpool_promote(&pool, &jobs[2].work);
    /* Taken by the thread already: nothing to move. */
    workpool_promote(&pool, &jobs[0].work);
    pthread_mutex_lock(&gate_lock);
    gate_open = true;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
    while (ndone < 5)
        uv_run(&loop, UV_RUN_ONCE);
    for (int i = 0; i < 5; i++)
        assert_int_equal(done_order[i], order[i]);
    workpool_free(&pool);
    inbox_free(&inbox);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void stopping_a_workpool_runs_what_is_queued(void **state)
{
    uv_loop_t loop;
    struct inbox inbox;
    struct workpool pool = {0}, never = {0};
    struct job jobs[16] = {0};
    (void)state;

    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(inbox_init(&inbox, &loop), 0);
    assert_int_equal(workpool_init(&pool, 2, &inbox), 0);
    ndone = 0;
    for (int i = 0; i < 16; i++) {
        jobs[i].n = i;
        jobs[i].work.run = job_run;
        /* Without `done`, nothing comes back. */
        jobs[i].work.done = i % 2 ? job_done : NULL;
        workpool_submit(&pool, &jobs[i].work);
    }
    workpool_shutdown(&pool);
    for (int i = 0; i < 16; i++)
        assert_true(jobs[i].ran);
    /* The completions wait in the inbox; freeing it runs them. */
    inbox_free(&inbox);
    assert_int_equal(ndone, 8);
    workpool_free(&pool);
    workpool_shutdown(&never);
    workpool_free(&never);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_producer_s_items_come_out_in_its_order),
        cmocka_unit_test(pop_takes_at_most_max_oldest_first),
        cmocka_unit_test(urgent_items_go_first_and_a_promoted_one_joins_them),
        cmocka_unit_test(close_wakes_waiters_refuses_pushes_and_keeps_what_is_queued),
        cmocka_unit_test(workpool_results_come_back_on_the_loop),
        cmocka_unit_test(urgent_work_runs_before_work_queued_earlier),
        cmocka_unit_test(stopping_a_workpool_runs_what_is_queued),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
