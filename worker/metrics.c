/*
 * metrics.c — the worker's metrics: its families in a vb_metrics registry
 * (metrics.h), which the worker's endpoint (endpoint.h) serves at /metrics
 * together with the endpoint's connection metrics.
 *
 * Every series is created at 0 when the worker starts, so a dashboard sees
 * every outcome before the first run ends.
 */
#include <string.h>

#include "worker.h"

static const double duration_bounds[] = {1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200};

static const char *const outcome_names[VB_OUT__COUNT] = {
    [VB_OUT_UPLOADED] = "uploaded",     [VB_OUT_SKIPPED] = "skipped",
    [VB_OUT_FAILED] = "failed",         [VB_OUT_DEAD] = "dead",
    [VB_OUT_LEASE_LOST] = "lease_lost", [VB_OUT_HANDED_BACK] = "handed_back",
};

const char *vb_outcome_name(vb_outcome o)
{
    return (unsigned)o < VB_OUT__COUNT ? outcome_names[o] : "unknown";
}

vb_err vb_worker_metrics_init(vb_worker_metrics *m, vb_error *err)
{
    memset(m, 0, sizeof *m);
    if (!(m->reg = vb_metrics_new()))
        goto fail;
    m->runs = vb_metrics_counter(m->reg, "visionbatch_runs_total",
                                 "Run attempts finished by this worker, by outcome.", "outcome");
    m->duration = vb_metrics_histogram(m->reg, "visionbatch_run_duration_seconds",
                                       "Wall time of run attempts.", NULL, duration_bounds,
                                       sizeof duration_bounds / sizeof duration_bounds[0]);
    m->inflight = vb_metrics_gauge(m->reg, "visionbatch_inflight_runs",
                                   "Runs being processed now.", NULL);
    m->lock_takeovers = vb_metrics_counter(
        m->reg, "visionbatch_lock_takeovers_total",
        "Runs whose expired lease this worker reclaimed and republished.", NULL);
    m->retries = vb_metrics_counter(
        m->reg, "visionbatch_retries_total",
        "Retry attempts started here plus failed runs republished.", NULL);
    m->dlq = vb_metrics_counter(m->reg, "visionbatch_dlq_total",
                                "Messages copied to the dead-letter topic.", NULL);
    m->queued = vb_metrics_gauge(m->reg, "visionbatch_intake_queued_messages",
                                 "Messages fetched from Kafka and waiting for a free slot "
                                 "(not yet claimed, not committed).", NULL);
    if (!m->runs || !m->duration || !m->inflight || !m->lock_takeovers || !m->retries || !m->dlq ||
        !m->queued)
        goto fail;
    for (int o = 0; o < VB_OUT__COUNT; o++) {
        const char *labels[] = {outcome_names[o]};
        vb_metric_add(m->runs, labels, 0);
    }
    vb_metric_add(m->duration, NULL, 0); /* creates the series, observes nothing */
    vb_metric_add(m->inflight, NULL, 0);
    vb_metric_add(m->lock_takeovers, NULL, 0);
    vb_metric_add(m->retries, NULL, 0);
    vb_metric_add(m->dlq, NULL, 0);
    vb_metric_add(m->queued, NULL, 0);
    return VB_OK;
fail:
    vb_worker_metrics_free(m);
    return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
}

void vb_worker_metrics_free(vb_worker_metrics *m)
{
    vb_metrics_free(m->reg);
    memset(m, 0, sizeof *m);
}

void vb_worker_metrics_observe_run(vb_worker_metrics *m, vb_outcome o, double seconds)
{
    if ((unsigned)o >= VB_OUT__COUNT)
        return;
    const char *labels[] = {outcome_names[o]};
    vb_metric_inc(m->runs, labels);
    vb_metric_observe(m->duration, NULL, seconds);
}
