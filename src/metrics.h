/* metrics.h -- histograms, and the Prometheus text exposition format (version 0.0.4). */
#ifndef PFP_METRICS_H
#define PFP_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define HISTOGRAM_MAX_BOUNDS 16

/* Observations counted by upper bound; the bucket past the last bound is +Inf. Loop thread only. */
struct histogram {
    size_t nbounds;
    double bounds[HISTOGRAM_MAX_BOUNDS]; /* ascending */
    uint64_t counts[HISTOGRAM_MAX_BOUNDS + 1];
    uint64_t count;
    double sum;
};

/* Sets `h` up with at most HISTOGRAM_MAX_BOUNDS ascending upper bounds. */
void histogram_init(struct histogram *h, const double *bounds, size_t nbounds);
void histogram_observe(struct histogram *h, double value);

/* The "# HELP" and "# TYPE" lines of a family; `type` is counter, gauge or histogram. */
void metrics_family(struct buf *b, const char *name, const char *type, const char *help);

/*
 * One sample line. `labels` is "" or a list built with metrics_label(), such as
 * route="/health",status="200" (without braces).
 */
void metrics_u64(struct buf *b, const char *name, const char *labels, uint64_t value);
void metrics_f64(struct buf *b, const char *name, const char *labels, double value);

/* Appends name="value" (after a comma when `b` is not empty), escaping \, " and newlines in `value`. */
void metrics_label(struct buf *b, const char *name, const char *value);

/* A family of one unlabelled sample. */
void metrics_single(struct buf *b, const char *name, const char *type, const char *help, uint64_t value);

/* The _bucket (cumulative, le="..."), _sum and _count lines of `h`. */
void metrics_histogram(struct buf *b, const char *name, const char *labels, const struct histogram *h);

#endif
