/*
 * scheduler.c — the producer's cron loop (behaviour in scheduler.h).
 *
 * State: an in-memory copy of every job (enabled or not: ticks of a
 * deactivated job are counted as "paused") with its parsed schedule and the
 * earliest time it may have a due tick (`next_due`). The truth lives in
 * Redis: the job's last_tick. For a job whose next_due has come, one pass
 * reads last_tick (for all the pass's due jobs in one round trip per
 * VB_JOBS_EXEC_TICKS_BATCH), works out the due ticks (the newest within the catch-up
 * window fires, the rest are "missed"), and claims them with one
 * compare-and-set script (vb_jobs_exec_tick); when another producer got
 * there first the script says so and the pass re-reads and finds nothing
 * left. The winner then calls `fire` with the job as last reloaded (every
 * change bumps the jobs' version, checked at the start of each step) and
 * reports the counts (vb_jobs_exec_fire_done).
 *
 * Threading: the loop runs in one thread (or in the caller's, no_thread).
 * `mu` guards `stop` and the manual-run queue, which vb_scheduler_fire_now
 * fills from other threads; everything else belongs to the loop. A pass
 * over the due jobs is spread over `nslots` firing slots: slot 0 is the
 * loop's own thread with the scheduler's vb_jobs handle, slots 1.. are pool
 * threads, each with its own handle (a vb_jobs handle serialises its calls,
 * so sharing one would serialise the firings again). The loop hands out the
 * due jobs' indices under `pmu` (`due`, `next`) and waits until every one
 * is done (`busy` == 0) before it touches the job array again: a job is
 * processed by exactly one slot per pass, and its next_due is read by the
 * loop only after the pass. The claims stay in Redis, so the pool changes
 * nothing about exactly-once.
 */
#include "scheduler.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "visionbatch/cron.h"
#include "visionbatch/jobs_exec.h"
#include "visionbatch/log.h"
#include "visionbatch/redact.h"
#include "util.h"

#define MISSED_COUNT_CAP 10000 /* old ticks counted one by one, at most */
#define CLAIM_ATTEMPTS 5
#define EXPIRE_EVERY_MS 60000
#define NEVER LLONG_MAX

typedef struct sjob {
    vb_job job;
    vb_cron cron;
    int cron_ok;
    long long next_due; /* unix s; 0 = look now; NEVER = nothing left */
    long long known_last; /* last_tick read for this pass by the batch read */
    int has_known_last;   /* known_last is fresh: the first claim attempt uses it */
} sjob;

typedef struct slot {
    struct vb_scheduler *s;
    int index;
    vb_jobs *jobs; /* own connection; slot 0 borrows the scheduler's */
    pthread_t thread;
    int started;
} slot;

typedef struct manual {
    char job_id[VB_UUID_SIZE];
    char exec_id[VB_UUID_SIZE];
} manual;

struct vb_scheduler {
    vb_jobs *jobs;
    long window_s, exec_timeout_s, fire_timeout_s;
    char producer_id[VB_SCHED_PRODUCER_ID_MAX + 1];
    vb_scheduler_fire_fn fire;
    void *fire_ctx;
    long long (*clock_ms)(void *ctx);
    void *clock_ctx;
    vb_metric *m_fires, *m_skips, *m_lag;
    int no_thread;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    manual queue[VB_SCHED_MANUAL_QUEUE];
    size_t qn;
    pthread_t thread;
    int thread_started;

    /* firing pool: slots[0] is the loop's thread; pmu guards the pass */
    slot *slots;
    size_t nslots;
    pthread_mutex_t pmu;
    pthread_cond_t pwork, pdone;
    size_t *due; /* indices into sj of this pass's due jobs */
    size_t ndue, next, busy;
    unsigned long gen; /* bumped per pass */
    int pool_stop;
    vb_error pass_err; /* the pass's first failure (code VB_OK: none) */

    /* loop-owned */
    sjob *sj;
    size_t n;
    long long version;
    int loaded;
    long long last_expire_ms;
};

static long long real_clock_ms(void *ctx)
{
    (void)ctx;
    return vb__now_ms();
}

static long long now_ms(vb_scheduler *s)
{
    return s->clock_ms(s->clock_ctx);
}

static void free_jobs(vb_scheduler *s)
{
    for (size_t i = 0; i < s->n; i++)
        vb_job_free(&s->sj[i].job);
    free(s->sj);
    s->sj = NULL;
    free(s->due);
    s->due = NULL;
    s->n = 0;
}

/* Re-reads every job; on failure the previous schedule stays. */
static vb_err reload(vb_scheduler *s, long long version, vb_error *err)
{
    vb_job_list l;
    vb_err rc = vb_jobs_list(s->jobs, 0, &l, err);
    if (rc != VB_OK)
        return rc;
    sjob *sj = l.n ? calloc(l.n, sizeof *sj) : NULL;
    size_t *due = l.n ? calloc(l.n, sizeof *due) : NULL;
    if (l.n && (!sj || !due)) {
        free(sj);
        free(due);
        vb_job_list_free(&l);
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < l.n; i++) {
        sj[i].job = l.items[i]; /* moved */
        char why[256] = "";
        sj[i].cron_ok = vb_cron_parse(sj[i].job.schedule, &sj[i].cron, why, sizeof why) == VB_OK;
        if (!sj[i].cron_ok)
            vb_log(VB_LOG_WARN, "scheduler: job=%s has an invalid schedule: %s", sj[i].job.job_id,
                   why);
    }
    free(l.items); /* the records now belong to sj */
    free_jobs(s);
    s->sj = sj;
    s->due = due;
    s->n = l.n;
    s->version = version;
    s->loaded = 1;
    return VB_OK;
}

static long long next_after(const sjob *j, long long after)
{
    time_t t;
    if (vb_cron_next(&j->cron, j->job.timezone, (time_t)after, &t) != VB_OK)
        return NEVER;
    return (long long)t;
}

/* The due ticks in (base, now]: the newest within the window fires, the
 * others are "missed". */
typedef struct plan {
    long long fire;        /* 0 = none */
    long missed;           /* count (capped; see capped) */
    int capped;
    long long missed_first, missed_last;
    long long new_last;    /* 0 = nothing due */
} plan;

static void make_plan(const sjob *j, long long base, long long now, long window, plan *p)
{
    memset(p, 0, sizeof *p);
    long long cutoff = now - window; /* ticks >= cutoff are within the window */
    long long t = next_after(j, base);
    while (t != NEVER && t <= now && t < cutoff) {
        if (p->missed == 0)
            p->missed_first = t;
        p->missed++;
        p->missed_last = t;
        if (p->missed >= MISSED_COUNT_CAP) {
            p->capped = 1;
            t = next_after(j, cutoff - 1);
            break;
        }
        t = next_after(j, t);
    }
    long long prev = 0;
    for (; t != NEVER && t <= now; t = next_after(j, t)) {
        if (p->fire) { /* an older tick inside the window: missed too */
            prev = p->fire;
            if (p->missed == 0)
                p->missed_first = prev;
            p->missed++;
            p->missed_last = prev;
        }
        p->fire = t;
    }
    if (p->fire)
        p->new_last = p->fire;
    else if (p->missed)
        p->new_last = p->capped ? now : p->missed_last;
}

static void fmt_time(long long t, char out[VB_TIME_STR_MAX])
{
    if (vb_time_format_rfc3339_utc((time_t)t, out, VB_TIME_STR_MAX) != VB_OK)
        snprintf(out, VB_TIME_STR_MAX, "%lld", t);
}

static void count_skip(vb_scheduler *s, const char *reason, double n)
{
    const char *v[1] = {reason};
    vb_metric_add(s->m_skips, v, n);
}

/* Calls `fire` for a claimed execution and reports the counts (on the
 * slot's thread, with its Redis handle). `known` is the job as the
 * scheduler read it at its last reload (a tick's firing: any change since
 * bumped the version, which the step checked before this pass); NULL reads
 * the job first (a manual run). */
static void do_fire(vb_scheduler *s, slot *sl, const char *job_id, const vb_job *known,
                    const char *exec_id)
{
    vb_job job;
    vb_error err = {0}, derr = {0};
    vb_fire_result r = {.jobs = sl->jobs, .slot = sl->index};
    char out[1200];
    vb_err rc = VB_OK;
    if (known) {
        rc = s->fire(s->fire_ctx, known, exec_id, &r, &err);
    } else if ((rc = vb_jobs_get(sl->jobs, job_id, &job, &err)) == VB_OK) {
        rc = s->fire(s->fire_ctx, &job, exec_id, &r, &err);
        vb_job_free(&job);
    }
    if (rc != VB_OK)
        snprintf(out, sizeof out, "firing failed: %s (found %ld, published %ld)", err.msg,
                 r.found, r.published);
    else if (r.found == 0)
        snprintf(out, sizeof out, "no unprocessed runs");
    else
        snprintf(out, sizeof out,
                 "found %ld runs: %ld published, %ld skipped as already in progress, %ld "
                 "skipped as another organization's",
                 r.found, r.published, r.skipped_in_progress, r.skipped_other_org);
    vb_redact_text(out); /* the callback's message should hold no secret; be sure */
    char status[16] = "";
    vb_err drc = vb_jobs_exec_fire_done(sl->jobs, exec_id, r.found, r.skipped_in_progress,
                                        r.skipped_other_org, out, rc != VB_OK, now_ms(s), status,
                                        &derr);
    const char *v[1] = {job_id};
    vb_metric_inc(s->m_fires, v);
    if (drc != VB_OK)
        vb_log(VB_LOG_WARN, "scheduler: job=%s execution=%s cannot record the firing: %s", job_id,
               exec_id, derr.msg);
    else
        vb_log(rc == VB_OK ? VB_LOG_INFO : VB_LOG_ERROR,
               "scheduler: job=%s execution=%s fired status=%s %s", job_id, exec_id, status, out);
}

static int is_due(const sjob *j, long long now)
{
    return j->cron_ok && j->next_due != NEVER && !(j->next_due && now < j->next_due);
}

/* Handles every due tick of one job, on slot `sl`. */
static vb_err process_job(vb_scheduler *s, slot *sl, sjob *j, long long now_ms_v, vb_error *err)
{
    long long now = now_ms_v / 1000;
    if (!is_due(j, now))
        return VB_OK;
    for (int attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
        long long last = 0;
        vb_err rc = VB_OK;
        if (j->has_known_last) { /* read with the pass's other due jobs */
            last = j->known_last;
            j->has_known_last = 0;
        } else {
            rc = vb_jobs_exec_last_tick(sl->jobs, j->job.job_id, &last, err);
        }
        if (rc != VB_OK)
            return rc;
        long long base = last ? last : j->job.created_at / 1000;
        plan p;
        make_plan(j, base, now, s->window_s, &p);
        if (!p.new_last) {
            j->next_due = next_after(j, base > now ? base : now);
            return VB_OK;
        }
        char first[VB_TIME_STR_MAX], lastt[VB_TIME_STR_MAX], missed_out[400] = "";
        if (p.missed) {
            fmt_time(p.missed_first, first);
            fmt_time(p.missed_last, lastt);
            snprintf(missed_out, sizeof missed_out,
                     "%s%ld scheduled run(s) from %s to %s were missed (no producer was "
                     "running); only ticks at most %ld s old are caught up",
                     p.capped ? "more than " : "", p.missed, first, lastt, s->window_s);
        }
        vb_exec_tick t = {
            .job_id = j->job.job_id,
            .producer_id = s->producer_id,
            .expected_last = last,
            .new_last = p.new_last,
            .fire_tick = p.fire,
            .missed = p.missed,
            .missed_last = p.missed_last,
            .missed_output = missed_out,
            .now_ms = now_ms_v,
            .timeout_s = s->exec_timeout_s,
        };
        vb_exec_tick_result res;
        if ((rc = vb_jobs_exec_tick(sl->jobs, &t, &res, err)) != VB_OK)
            return rc;
        if (res.code == VB_EXEC_TICK_CONFLICT)
            continue; /* another producer claimed meanwhile: re-read */
        if (res.code == VB_EXEC_TICK_GONE) {
            j->next_due = NEVER; /* the version bump will drop it */
            return VB_OK;
        }
        j->next_due = next_after(j, p.new_last);
        if (res.code == VB_EXEC_TICK_PAUSED) {
            count_skip(s, "paused", (double)p.missed + (p.fire ? 1 : 0));
            return VB_OK;
        }
        if (res.missed_recorded) {
            count_skip(s, "missed", (double)p.missed);
            vb_log(VB_LOG_WARN, "scheduler: job=%s %s", j->job.job_id, missed_out);
        }
        if (res.overlap) {
            count_skip(s, "overlap", 1);
            vb_log(VB_LOG_INFO,
                   "scheduler: job=%s tick skipped: the previous execution is still running",
                   j->job.job_id);
        }
        if (res.fired) {
            vb_metric_observe(s->m_lag, NULL, (double)now_ms_v / 1000.0 - (double)p.fire);
            do_fire(s, sl, j->job.job_id, &j->job, res.execution_id);
        }
        return VB_OK;
    }
    return vb_error_set(err, VB_ERR_CONFLICT, "job %s: tick claim kept conflicting",
                        j->job.job_id);
}

/* Takes due jobs of the current pass until none is left; the first
 * failure is kept in pass_err. Called by every slot, the loop's included. */
static void work(vb_scheduler *s, slot *sl)
{
    for (;;) {
        pthread_mutex_lock(&s->pmu);
        if (s->next >= s->ndue) {
            pthread_mutex_unlock(&s->pmu);
            return;
        }
        sjob *j = &s->sj[s->due[s->next++]];
        pthread_mutex_unlock(&s->pmu);
        vb_error jerr = {0};
        vb_err rc = process_job(s, sl, j, now_ms(s), &jerr);
        if (rc != VB_OK) {
            vb_log(VB_LOG_WARN, "scheduler: job=%s: %s", j->job.job_id, jerr.msg);
            pthread_mutex_lock(&s->pmu);
            if (s->pass_err.code == VB_OK)
                vb_error_set(&s->pass_err, rc, "%s", jerr.msg);
            pthread_mutex_unlock(&s->pmu);
        }
    }
}

/* A pool thread: joins each pass. */
static void *slot_loop(void *arg)
{
    slot *sl = arg;
    vb_scheduler *s = sl->s;
    unsigned long seen = 0; /* passes start at gen 1, so a late start misses none */
    pthread_mutex_lock(&s->pmu);
    while (!s->pool_stop) {
        if (s->gen == seen) {
            pthread_cond_wait(&s->pwork, &s->pmu);
            continue;
        }
        seen = s->gen;
        s->busy++;
        pthread_mutex_unlock(&s->pmu);
        work(s, sl);
        pthread_mutex_lock(&s->pmu);
        if (--s->busy == 0)
            pthread_cond_broadcast(&s->pdone);
    }
    pthread_mutex_unlock(&s->pmu);
    return NULL;
}

/* Reads the last_tick of every due job, VB_JOBS_EXEC_TICKS_BATCH per round
 * trip, instead of one round trip per job in process_job. A value read here
 * may be overtaken by another producer's claim before it is used; the claim
 * is a compare-and-set, so that only costs a re-read. On a failure the jobs
 * left read their own. */
static void read_last_ticks(vb_scheduler *s, size_t ndue)
{
    const char *ids[VB_JOBS_EXEC_TICKS_BATCH];
    long long lasts[VB_JOBS_EXEC_TICKS_BATCH];
    for (size_t off = 0; off < ndue; off += VB_JOBS_EXEC_TICKS_BATCH) {
        size_t n = ndue - off < VB_JOBS_EXEC_TICKS_BATCH ? ndue - off : VB_JOBS_EXEC_TICKS_BATCH;
        for (size_t i = 0; i < n; i++)
            ids[i] = s->sj[s->due[off + i]].job.job_id;
        vb_error err = {0};
        if (vb_jobs_exec_last_ticks(s->jobs, ids, n, lasts, &err) != VB_OK) {
            vb_log(VB_LOG_WARN, "scheduler: reading last ticks: %s", err.msg);
            return;
        }
        for (size_t i = 0; i < n; i++) {
            sjob *j = &s->sj[s->due[off + i]];
            j->known_last = lasts[i];
            j->has_known_last = 1;
        }
    }
}

/* Processes every due job, spread over the slots; returns when all are done. */
static vb_err pass(vb_scheduler *s, vb_error *err)
{
    long long now = now_ms(s) / 1000;
    size_t ndue = 0;
    for (size_t i = 0; i < s->n; i++) {
        s->sj[i].has_known_last = 0;
        if (is_due(&s->sj[i], now))
            s->due[ndue++] = i;
    }
    read_last_ticks(s, ndue);
    pthread_mutex_lock(&s->pmu);
    s->ndue = ndue;
    s->next = 0;
    vb_error_clear(&s->pass_err);
    int helpers = s->nslots > 1 && ndue > 1;
    if (helpers) {
        s->gen++;
        pthread_cond_broadcast(&s->pwork);
    }
    s->busy++; /* the loop's own slot */
    pthread_mutex_unlock(&s->pmu);
    work(s, &s->slots[0]);
    pthread_mutex_lock(&s->pmu);
    s->busy--;
    while (s->busy > 0 || s->next < s->ndue)
        pthread_cond_wait(&s->pdone, &s->pmu);
    s->ndue = s->next = 0;
    vb_err rc = s->pass_err.code;
    if (rc != VB_OK)
        vb_error_set(err, rc, "%s", s->pass_err.msg);
    pthread_mutex_unlock(&s->pmu);
    return rc;
}

static vb_err step(vb_scheduler *s, vb_error *err)
{
    vb_err first = VB_OK;
    long long version = 0;
    vb_err rc = vb_jobs_version(s->jobs, &version, err);
    if (rc == VB_OK && (!s->loaded || version != s->version))
        rc = reload(s, version, err);
    if (rc != VB_OK)
        first = rc;

    manual q[VB_SCHED_MANUAL_QUEUE];
    size_t qn;
    pthread_mutex_lock(&s->mu);
    qn = s->qn;
    memcpy(q, s->queue, qn * sizeof *q);
    s->qn = 0;
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < qn; i++)
        do_fire(s, &s->slots[0], q[i].job_id, NULL, q[i].exec_id);

    vb_error perr = {0};
    if (pass(s, &perr) != VB_OK && first == VB_OK)
        first = vb_error_set(err, perr.code, "%s", perr.msg);

    long long now = now_ms(s);
    if (now - s->last_expire_ms >= EXPIRE_EVERY_MS || now < s->last_expire_ms) {
        size_t n = 0;
        vb_error xerr = {0};
        if (vb_jobs_exec_expire(s->jobs, now, s->exec_timeout_s, s->fire_timeout_s, &n, &xerr) ==
            VB_OK) {
            s->last_expire_ms = now;
            if (n)
                vb_log(VB_LOG_WARN, "scheduler: %zu execution(s) ended as timeout/error", n);
        } else if (first == VB_OK) {
            first = vb_error_set(err, VB_ERR_REDIS, "%s", xerr.msg);
        }
    }
    return first;
}

vb_err vb_scheduler_step(vb_scheduler *s, vb_error *err)
{
    if (!s || !s->no_thread)
        return vb_error_set(err, VB_ERR_INVALID, "vb_scheduler_step needs a no_thread scheduler");
    return step(s, err);
}

/* Milliseconds until the earliest next_due, between 10 and 1000. */
static long wait_ms(vb_scheduler *s)
{
    long long now = now_ms(s), best = 1000;
    for (size_t i = 0; i < s->n; i++) {
        long long d = s->sj[i].next_due;
        if (!s->sj[i].cron_ok || d == NEVER || d == 0) /* 0: a failed pass; retry in 1 s */
            continue;
        long long ms = d * 1000 - now;
        if (ms < best)
            best = ms;
    }
    return best < 10 ? 10 : (long)best;
}

static void *loop(void *arg)
{
    vb_scheduler *s = arg;
    int failing = 0;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;
        vb_error err = {0};
        vb_err rc = step(s, &err);
        if (rc != VB_OK && !failing)
            vb_log(VB_LOG_ERROR, "scheduler: %s", err.msg);
        else if (rc == VB_OK && failing)
            vb_log(VB_LOG_INFO, "scheduler: recovered");
        failing = rc != VB_OK;

        struct timespec ts = vb__realtime_after(wait_ms(s));
        pthread_mutex_lock(&s->mu);
        while (!s->stop && s->qn == 0) {
            if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT)
                break;
        }
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

vb_scheduler *vb_scheduler_start(const vb_scheduler_opts *opts, vb_error *err)
{
    unsigned char key[VB_CRYPTO_KEY_SIZE];
    int has_key = 0;
    if (!opts || !opts->fire) {
        vb_error_set(err, VB_ERR_CONFIG, "scheduler: a fire callback is required");
        return NULL;
    }
    if (opts->catch_up_window_s < 0 || opts->exec_timeout_s < 0 || opts->fire_timeout_s < 0) {
        vb_error_set(err, VB_ERR_CONFIG, "scheduler: windows and timeouts must not be negative");
        return NULL;
    }
    if (opts->fire_threads < 0 || opts->fire_threads > VB_SCHED_FIRE_THREADS_MAX) {
        vb_error_set(err, VB_ERR_CONFIG, "scheduler: fire_threads must be 0-%d",
                     VB_SCHED_FIRE_THREADS_MAX);
        return NULL;
    }
    if (opts->secret_key && opts->secret_key[0]) {
        if (vb_crypto_key_parse(opts->secret_key, key, err) != VB_OK)
            return NULL;
        has_key = 1;
    }
    vb_scheduler *s = calloc(1, sizeof *s);
    if (!s) {
        vb_crypto_wipe(key, sizeof key);
        vb_error_set(err, VB_ERR_NOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->pmu, NULL);
    pthread_cond_init(&s->pwork, NULL);
    pthread_cond_init(&s->pdone, NULL);
    s->window_s = opts->catch_up_window_s ? opts->catch_up_window_s : VB_SCHED_CATCH_UP_DEFAULT_S;
    if (s->window_s < VB_SCHED_CATCH_UP_MIN_S)
        s->window_s = VB_SCHED_CATCH_UP_MIN_S;
    s->exec_timeout_s = opts->exec_timeout_s ? opts->exec_timeout_s : VB_EXEC_TIMEOUT_DEFAULT_S;
    s->fire_timeout_s =
        opts->fire_timeout_s ? opts->fire_timeout_s : VB_EXEC_FIRE_TIMEOUT_DEFAULT_S;
    if (opts->producer_id && opts->producer_id[0]) {
        snprintf(s->producer_id, sizeof s->producer_id, "%s", opts->producer_id);
    } else {
        char host[64] = "";
        if (gethostname(host, sizeof host - 1) != 0)
            snprintf(host, sizeof host, "producer");
        snprintf(s->producer_id, sizeof s->producer_id, "%s:%ld", host, (long)getpid());
    }
    s->fire = opts->fire;
    s->fire_ctx = opts->fire_ctx;
    s->clock_ms = opts->clock_ms ? opts->clock_ms : real_clock_ms;
    s->clock_ctx = opts->clock_ctx;
    s->no_thread = opts->no_thread;
    if (opts->metrics) {
        static const double lag_buckets[] = {0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600};
        s->m_fires = vb_metrics_counter(opts->metrics, "visionbatch_scheduler_fires_total",
                                        "Executions fired by this producer, by job.", "job");
        s->m_skips = vb_metrics_counter(opts->metrics, "visionbatch_scheduler_skips_total",
                                        "Scheduled ticks not fired, by reason "
                                        "(overlap, missed, paused).",
                                        "reason");
        s->m_lag = vb_metrics_histogram(opts->metrics, "visionbatch_scheduler_lag_seconds",
                                        "Delay between a tick's scheduled time and its firing.",
                                        NULL, lag_buckets,
                                        sizeof lag_buckets / sizeof lag_buckets[0]);
    }
    vb_jobs_opts jo = {
        .redis_url = opts->redis_url,
        .secret_key = has_key ? key : NULL,
        .exec_cap = opts->exec_cap,
    };
    s->nslots = opts->fire_threads    ? (size_t)opts->fire_threads
                : opts->no_thread ? 1
                                  : VB_SCHED_FIRE_THREADS_DEFAULT;
    s->slots = calloc(s->nslots, sizeof *s->slots);
    vb_err rc = s->slots ? vb_jobs_new(&jo, &s->jobs, err)
                         : vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    for (size_t i = 0; rc == VB_OK && i < s->nslots; i++) {
        s->slots[i].s = s;
        s->slots[i].index = (int)i;
        if (i == 0)
            s->slots[i].jobs = s->jobs;
        else
            rc = vb_jobs_new(&jo, &s->slots[i].jobs, err);
    }
    vb_crypto_wipe(key, sizeof key);
    if (rc != VB_OK)
        goto fail;
    for (size_t i = 1; i < s->nslots; i++) {
        if (pthread_create(&s->slots[i].thread, NULL, slot_loop, &s->slots[i]) != 0) {
            vb_error_set(err, VB_ERR_NOMEM, "scheduler: cannot start its firing threads");
            goto fail;
        }
        s->slots[i].started = 1;
    }
    if (!s->no_thread) {
        if (pthread_create(&s->thread, NULL, loop, s) != 0) {
            vb_error_set(err, VB_ERR_NOMEM, "scheduler: cannot start its thread");
            goto fail;
        }
        s->thread_started = 1;
    }
    return s;
fail:
    vb_scheduler_stop(s);
    return NULL;
}

void vb_scheduler_stop(vb_scheduler *s)
{
    if (!s)
        return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    pthread_mutex_lock(&s->pmu);
    s->pool_stop = 1;
    pthread_cond_broadcast(&s->pwork);
    pthread_mutex_unlock(&s->pmu);
    for (size_t i = 1; s->slots && i < s->nslots; i++) {
        if (s->slots[i].started)
            pthread_join(s->slots[i].thread, NULL);
        vb_jobs_free(s->slots[i].jobs);
    }
    free(s->slots);
    free_jobs(s);
    vb_jobs_free(s->jobs);
    pthread_cond_destroy(&s->pdone);
    pthread_cond_destroy(&s->pwork);
    pthread_mutex_destroy(&s->pmu);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

vb_err vb_scheduler_fire_now(vb_scheduler *s, const char *job_id,
                             char execution_id[VB_UUID_SIZE], vb_error *err)
{
    execution_id[0] = '\0';
    if (!s)
        return vb_error_set(err, VB_ERR_INVALID, "no scheduler");
    /* The queue lock is held across the record so that a recorded manual run
     * always has a queue slot. */
    pthread_mutex_lock(&s->mu);
    vb_err rc;
    if (s->qn >= VB_SCHED_MANUAL_QUEUE) {
        rc = vb_error_set(err, VB_ERR_CONFLICT,
                          "too many manual runs are waiting to start; try again shortly");
    } else {
        rc = vb_jobs_exec_start_manual(s->jobs, job_id, s->producer_id, now_ms(s),
                                       s->exec_timeout_s, execution_id, err);
        if (rc == VB_OK) {
            manual *m = &s->queue[s->qn++];
            snprintf(m->job_id, sizeof m->job_id, "%s", job_id);
            memcpy(m->exec_id, execution_id, VB_UUID_SIZE);
            pthread_cond_signal(&s->cv);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}
