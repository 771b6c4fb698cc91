/*
 * run_once.c — `visionbatch run-once`: what the original
 * cron_batch_processor.py did, without Kafka or Redis. Fetches every
 * unprocessed run of the configured organization, processes them one after
 * another through the pipeline, logs a summary and exits:
 *   0  nothing failed (an empty queue is not an error)
 *   1  a run failed, or the platform could not be read
 *   2  configuration error (an unsafe temp_dir included)
 *   130/143  interrupted by SIGINT/SIGTERM (the current run's temp files are
 *            removed before exiting; the run stays unprocessed on the platform)
 * At start, and between runs every temp_sweep_interval_s, the run
 * directories that dead processes left in temp_dir are removed (rundir.h).
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "visionbatch/config.h"
#include "visionbatch/http.h"
#include "visionbatch/log.h"
#include "visionbatch/signals.h"
#include "visionbatch/pipeline.h"
#include "visionbatch/platform.h"
#include "visionbatch/rundir.h"

static volatile sig_atomic_t g_cancel;
static volatile sig_atomic_t g_signal;

static void on_signal(int sig)
{
    g_signal = sig;
    g_cancel = 1;
}

static long long mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec;
}

/* Removes the run directories of dead processes; VB_ERR_CONFIG when
 * temp_dir is unsafe. */
static vb_err sweep_temp(const vb_config *cfg, vb_error *err)
{
    vb_rundir_sweep_stats st;
    vb_err rc = vb_rundir_sweep(cfg->temp_dir, &st, err);
    if (rc == VB_OK && (st.removed || st.failed))
        VB_INFO("temp sweep: %zu run dirs of dead processes removed, %zu could not be",
                st.removed, st.failed);
    return rc;
}

static void help(void)
{
    printf("usage: visionbatch run-once [--config PATH] [settings]\n\n"
           "Fetches every unprocessed vision analysis run of the organization from the\n"
           "external API, downloads its images and descriptions, analyses them on the\n"
           "backend and uploads one HTML report per run. Exit status: 0 when no run\n"
           "failed (including an empty queue), 1 when a run failed, 2 on a configuration\n"
           "error.\n\nSettings (flag > environment > config file > default):\n");
    vb_config_print_help(stdout, VB_PROG_RUN_ONCE);
}


int vb_cli_run_once(int argc, char **argv)
{
    if (vb_config_wants_help(argc, argv)) {
        help();
        return 0;
    }
    vb_config cfg;
    vb_error err;
    vb_error_clear(&err);
    char **rest = NULL;
    int nrest = 0;
    if (vb_config_load(&cfg, VB_PROG_RUN_ONCE, argc, argv, &rest, &nrest, &err) !=
        VB_OK) {
        fprintf(stderr, "visionbatch run-once: %s\n", err.msg);
        return 2;
    }
    if (nrest > 0) {
        fprintf(stderr, "visionbatch run-once: unexpected argument '%s'\n", rest[0]);
        vb_config_free(&cfg);
        return 2;
    }
    vb_signals_install(on_signal);
    vb_log_open(cfg.log_file, (vb_log_format)cfg.log_format, (vb_log_level)cfg.log_level);
    if (vb_http_global_init() != VB_OK) {
        fprintf(stderr, "visionbatch run-once: cannot initialise libcurl\n");
        vb_config_free(&cfg);
        return 1;
    }
    vb_http *h = vb_http_new();
    int status = 1;
    vb_run_list runs = {0};
    vb_fetch_stats stats;
    memset(&stats, 0, sizeof stats);
    size_t ok = 0, failed = 0;

    VB_INFO("run-once: fetching unprocessed runs of organization %s", cfg.organization_id);
    if (!h) {
        VB_ERROR("out of memory");
        goto out;
    }
    if (sweep_temp(&cfg, &err) != VB_OK) {
        VB_ERROR("%s", err.msg);
        status = err.code == VB_ERR_CONFIG ? 2 : 1;
        goto out;
    }
    long long swept_at = mono_s();
    if (vb_platform_fetch_unprocessed(h, &cfg, &g_cancel, &runs, &stats, &err) != VB_OK) {
        VB_ERROR("could not fetch runs: %s", err.msg);
        goto out;
    }
    VB_INFO("found %zu unprocessed runs for this organization (%zu of other organizations "
            "skipped, %zu invalid skipped)",
            runs.n, stats.other_org, stats.invalid);

    for (size_t i = 0; i < runs.n && !g_cancel; i++) {
        const vb_run *run = &runs.runs[i];
        vb_log_set_run(run->id);
        vb_run_result res;
        vb_error_clear(&err);
        VB_INFO("processing run %zu of %zu (%s)", i + 1, runs.n,
                run->run_code ? run->run_code : "no run code");
        if (vb_pipeline_process(h, &cfg, run, NULL, &g_cancel, &res, &err) == VB_OK) {
            ok++;
            VB_INFO("run succeeded: %zu images, %zu batches (%s), report %lld bytes, %.1f s",
                    res.images, res.batches, res.batch_ids, res.report_bytes, res.seconds);
        } else {
            failed++;
            VB_ERROR("run failed: %s", err.msg);
        }
        vb_log_set_run(NULL);
        if (cfg.temp_sweep_interval_s > 0 && mono_s() - swept_at >= cfg.temp_sweep_interval_s) {
            vb_error_clear(&err);
            if (sweep_temp(&cfg, &err) != VB_OK)
                VB_WARN("temp sweep: %s", err.msg);
            swept_at = mono_s();
        }
    }
    status = failed ? 1 : 0;

out:
    VB_INFO("summary: found=%zu succeeded=%zu failed=%zu skipped=%zu "
            "(other_organization=%zu invalid=%zu)%s",
            stats.found, ok, failed, stats.other_org + stats.invalid + stats.already_processed,
            stats.other_org,
            stats.invalid, g_cancel ? " — interrupted" : "");
    if (g_cancel) {
        size_t left = runs.n - ok - failed;
        VB_WARN("interrupted by signal %d; %zu runs left unprocessed on the platform",
                (int)g_signal, left);
        status = 128 + (int)g_signal;
    }
    vb_run_list_free(&runs);
    vb_http_free(h);
    vb_http_global_cleanup();
    vb_config_free(&cfg);
    vb_log_close();
    return status;
}
