/* metrics.c -- histograms, and the Prometheus text exposition format (version 0.0.4). */
#include "metrics.h"

#include <stdio.h>
#include <string.h>

void histogram_init(struct histogram *h, const double *bounds, size_t nbounds)
{
    memset(h, 0, sizeof(*h));
    h->nbounds = nbounds < HISTOGRAM_MAX_BOUNDS ? nbounds : HISTOGRAM_MAX_BOUNDS;
    memcpy(h->bounds, bounds, h->nbounds * sizeof(*bounds));
}

void histogram_observe(struct histogram *h, double value)
{
    size_t i = 0;

    while (i < h->nbounds && value > h->bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += value;
}

void metrics_family(struct buf *b, const char *name, const char *type, const char *help)
{
    buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample_start(struct buf *b, const char *name, const char *suffix, const char *labels)
{
    buf_appends(b, name);
    buf_appends(b, suffix);
    if (labels[0] != '\0') {
        buf_appendc(b, '{');
        buf_appends(b, labels);
        buf_appendc(b, '}');
    }
    buf_appendc(b, ' ');
}

void metrics_u64(struct buf *b, const char *name, const char *labels, uint64_t value)
{
    sample_start(b, name, "", labels);
    buf_appendf(b, "%llu\n", (unsigned long long)value);
}

void metrics_f64(struct buf *b, const char *name, const char *labels, double value)
{
    sample_start(b, name, "", labels);
    buf_appendf(b, "%.10g\n", value);
}

void metrics_single(struct buf *b, const char *name, const char *type, const char *help, uint64_t value)
{
    metrics_family(b, name, type, help);
    metrics_u64(b, name, "", value);
}

void metrics_label(struct buf *b, const char *name, const char *value)
{
    if (b->len > 0)
        buf_appendc(b, ',');
    buf_appends(b, name);
    buf_appends(b, "=\"");
    for (const char *p = value; *p != '\0'; p++) {
        if (*p == '\\' || *p == '"')
            buf_appendc(b, '\\');
        if (*p == '\n')
            buf_appends(b, "\\n");
        else
            buf_appendc(b, *p);
    }
    buf_appendc(b, '"');
}

void metrics_histogram(struct buf *b, const char *name, const char *labels, const struct histogram *h)
{
    uint64_t cumulative = 0;

    for (size_t i = 0; i <= h->nbounds; i++) {
        char le[48];
        cumulative += h->counts[i];
        if (i < h->nbounds)
            snprintf(le, sizeof(le), "%g", h->bounds[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        buf_appendf(b, "%s_bucket{", name);
        if (labels[0] != '\0') {
            buf_appends(b, labels);
            buf_appendc(b, ',');
        }
        buf_appendf(b, "le=\"%s\"} %llu\n", le, (unsigned long long)cumulative);
    }
    sample_start(b, name, "_sum", labels);
    buf_appendf(b, "%.10g\n", h->sum);
    sample_start(b, name, "_count", labels);
    buf_appendf(b, "%llu\n", (unsigned long long)h->count);
}
