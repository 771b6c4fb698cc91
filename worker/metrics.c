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

static const double phase_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};

static const char *const phase_names[] = {"claim",  "open",   "download", "submit",
                                          "wait",   "report", "upload",   "record"};

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
    m->sources = vb_metrics_counter(
        m->reg, "visionbatch_run_sources_total",
        "Where runs came from: sealed (the message's sealed copy, no platform request), lookup "
        "(the platform's list), refetch (a sealed URL expired: looked up again).",
        "source");
    m->phases = vb_metrics_histogram(
        m->reg, "visionbatch_run_phase_seconds",
        "Where uploaded runs' time went: claim (Redis lock and attempt, before a slot), open "
        "(sealed run or platform lookup), download, submit (images to the backend, batches "
        "started), wait (status polls), report (batch reports fetched), upload, record (final "
        "state and lock release).",
        "phase", phase_bounds, sizeof phase_bounds / sizeof phase_bounds[0]);
    if (!m->runs || !m->duration || !m->inflight || !m->lock_takeovers || !m->retries || !m->dlq ||
        !m->queued || !m->sources || !m->phases)
        goto fail;
    for (size_t i = 0; i < sizeof phase_names / sizeof *phase_names; i++) {
        const char *labels[] = {phase_names[i]};
        vb_metric_add(m->phases, labels, 0);
    }
    static const char *const sources[] = {"sealed", "lookup", "refetch"};
    for (size_t i = 0; i < sizeof sources / sizeof *sources; i++) {
        const char *labels[] = {sources[i]};
        vb_metric_add(m->sources, labels, 0);
    }
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

void vb_worker_metrics_observe_phases(vb_worker_metrics *m, const vb_worker_run_phases *p)
{
    const double v[] = {p->claim,           p->open,          p->pipeline.download,
                        p->pipeline.submit, p->pipeline.wait, p->pipeline.report,
                        p->pipeline.upload, p->record};
    for (size_t i = 0; i < sizeof phase_names / sizeof *phase_names; i++) {
        const char *labels[] = {phase_names[i]};
        vb_metric_observe(m->phases, labels, v[i]);
    }
}
