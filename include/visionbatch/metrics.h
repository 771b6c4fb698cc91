/*
 * metrics.h — a small Prometheus metrics registry: counters, gauges and
 * histograms with labels, rendered in the text exposition format 0.0.4.
 *
 * A registry owns its metric families; a family owns one series per distinct
 * combination of label values (at most VB_METRICS_SERIES_MAX per family, so a
 * buggy caller cannot grow memory without bound: extra combinations are
 * dropped and counted in visionbatch_metrics_dropped_series_total).
 *
 * Threading: every function is thread-safe (one mutex per registry; updates
 * are a hash-free linear lookup over a family's series, fine for the few
 * dozen series a service has). Family pointers stay valid until
 * vb_metrics_free().
 */
#ifndef VISIONBATCH_METRICS_H
#define VISIONBATCH_METRICS_H

#include <stddef.h>

#include "visionbatch/error.h"

#define VB_METRICS_LABELS_MAX 8
#define VB_METRICS_SERIES_MAX 1000
#define VB_METRICS_BUCKETS_MAX 32

typedef struct vb_metrics vb_metrics;
typedef struct vb_metric vb_metric;

/* A new empty registry (NULL when out of memory). Free with vb_metrics_free. */
vb_metrics *vb_metrics_new(void);
/* Frees the registry and all its families. NULL is accepted. */
void vb_metrics_free(vb_metrics *r);

/* Registers (or finds, when a family of that name and type exists) a family.
 * `name` must match [a-zA-Z_:][a-zA-Z0-9_:]*; `labels` is a comma-separated
 * list of label names ("method,route,code") or NULL/"" for none. Returns NULL
 * for a bad name, a name registered with another type or other labels, or no
 * memory. Histogram buckets: strictly increasing upper bounds (the +Inf
 * bucket is implicit); NULL = default latency buckets in seconds
 * (0.005 … 10). */
vb_metric *vb_metrics_counter(vb_metrics *r, const char *name, const char *help,
                              const char *labels);
vb_metric *vb_metrics_gauge(vb_metrics *r, const char *name, const char *help, const char *labels);
vb_metric *vb_metrics_histogram(vb_metrics *r, const char *name, const char *help,
                                const char *labels, const double *buckets, size_t nbuckets);

/* Updates the series named by `values` (one string per label name, in
 * order; NULL when the family has no labels). A NULL metric is ignored, so
 * callers need not check registration. Counters only grow: negative `v` is
 * ignored by vb_metric_add on a counter. vb_metric_add on a histogram only
 * creates the series (every count 0), so it is rendered before the first
 * observation. */
void vb_metric_add(vb_metric *m, const char *const *values, double v); /* counter, gauge */
void vb_metric_inc(vb_metric *m, const char *const *values);           /* add 1 */
void vb_metric_set(vb_metric *m, const char *const *values, double v); /* gauge */
void vb_metric_observe(vb_metric *m, const char *const *values, double v); /* histogram */

/* Current value of a counter/gauge series (count of observations for a
 * histogram); 0 when the series does not exist. Meant for tests. */
double vb_metric_value(vb_metric *m, const char *const *values);

/* Renders every family (in registration order) as Prometheus text. On VB_OK
 * *out is a new string the caller frees with free(). */
vb_err vb_metrics_render(vb_metrics *r, char **out, vb_error *err);

#endif
