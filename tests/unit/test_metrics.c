/* test_metrics.c -- histograms and the Prometheus text format, line by line. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "metrics.h"

static const double BOUNDS[] = {0.01, 0.1, 1};

static void observations_fall_in_the_first_bucket_that_holds_them(void **state)
{
    struct histogram h;
    (void)state;

    histogram_init(&h, BOUNDS, 3);
    histogram_observe(&h, 0.005);
    histogram_observe(&h, 0.01); /* on a bound: le means "less than or equal" */
    histogram_observe(&h, 0.5);
    histogram_observe(&h, 7);
    assert_int_equal(h.counts[0], 2);
    assert_int_equal(h.counts[1], 0);
    assert_int_equal(h.counts[2], 1);
    assert_int_equal(h.counts[3], 1);
    assert_int_equal(h.count, 4);
    assert_true(h.sum > 7.514 && h.sum < 7.516);
}

static void histogram_lines_are_cumulative_with_sum_and_count(void **state)
{
    struct histogram h;
    struct buf b = BUF_INIT;
    (void)state;

    histogram_init(&h, BOUNDS, 3);
    histogram_observe(&h, 0.05);
    histogram_observe(&h, 0.5);
    histogram_observe(&h, 2);
    metrics_histogram(&b, "x_seconds", "relay=\"a\"", &h);
    assert_string_equal(b.data, "x_seconds_bucket{relay=\"a\",le=\"0.01\"} 0\n"
                                "x_seconds_bucket{relay=\"a\",le=\"0.1\"} 1\n"
                                "x_seconds_bucket{relay=\"a\",le=\"1\"} 2\n"
                                "x_seconds_bucket{relay=\"a\",le=\"+Inf\"} 3\n"
                                "x_seconds_sum{relay=\"a\"} 2.55\n"
                                "x_seconds_count{relay=\"a\"} 3\n");
    buf_free(&b);
}

static void samples_families_and_escaped_labels(void **state)
{
    struct buf b = BUF_INIT, l = BUF_INIT;
    (void)state;

    metrics_label(&l, "route", "/a\"b\\c\nd");
    metrics_label(&l, "status", "200");
    assert_string_equal(l.data, "route=\"/a\\\"b\\\\c\\nd\",status=\"200\"");
    metrics_family(&b, "y_total", "counter", "Things.");
    metrics_u64(&b, "y_total", l.data, 18446744073709551615ull);
    metrics_f64(&b, "z", "", 0.25);
    assert_string_equal(b.data, "# HELP y_total Things.\n# TYPE y_total counter\n"
                                "y_total{route=\"/a\\\"b\\\\c\\nd\",status=\"200\"} 18446744073709551615\n"
                                "z 0.25\n");
    buf_free(&b);
    buf_free(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(observations_fall_in_the_first_bucket_that_holds_them),
        cmocka_unit_test(histogram_lines_are_cumulative_with_sum_and_count),
        cmocka_unit_test(samples_families_and_escaped_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
