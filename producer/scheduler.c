/*
 * scheduler.c — the producer's cron loop (behaviour in scheduler.h).
 *
 * State: an in-memory copy of every job (enabled or not: ticks of a
 * deactivated job are counted as "paused") with its parsed schedule, its
 * jitter offset, the earliest time it may have a due tick (`next_due_ms`)
 * and its last_tick as last seen (`known_last`). The truth lives in Redis:
 * the job's last_tick.
 *
 * A pass, in round trips rather than per-job steps:
 *   1. due jobs whose last_tick is not known (after a reload) are read,
 *      VB_JOBS_EXEC_TICKS_BATCH per script;
 *   2. the due ticks are worked out in memory (the newest within the
 *      catch-up window fires, the rest are "missed") and claimed CLAIM_BATCH
 *      at a time with one script (vb_jobs_exec_ticks), each tick its own
 *      compare-and-set. A producer starts its claims at a random place in
 *      the due list, so two producers mostly claim different jobs; where they
 *      meet, the loser of a tick gets the current last_tick back, recomputes
 *      and finds nothing left (or claims what is left in a later round);
 *   3. the claimed firings go onto a queue as each batch is claimed, and the
 *      firing slots take them from there, so the platform polls start while
 *      later batches are still being claimed and run `nslots` at a time;
 *   4. each slot keeps the ends of its firings and writes them DONE_BATCH at
 *      a time (vb_jobs_exec_fire_done_batch). While the pass still claims,
 *      it holds them (up to DONE_HOLD_MAX, DONE_HOLD_MS long): Redis runs
 *      one script at a time, and ends written then would delay the claims
 *      still to come. Once the claims are done it writes them at once when
 *      it runs out of work, and otherwise at least every DONE_FLUSH_MS.
 * A tick is fired with the job as last reloaded (every change bumps the
 * jobs' version, checked at the start of each step).
 *
 * Threading: the loop runs in one thread (or in the caller's, no_thread).
 * `mu` guards `stop` and the manual-run queue, which vb_scheduler_fire_now
 * fills from other threads; everything else belongs to the loop. Firings are
 * spread over `nslots` firing slots: slot 0 is the loop's own thread with the
 * scheduler's vb_jobs handle (it joins the firing once it has claimed
 * everything), slots 1.. are pool threads, each with its own handle (a
 * vb_jobs handle serialises its calls, so sharing one would serialise the
 * firings again) and FIRE_NICE nicer than the process (the claims and the
 * REST API's threads go first when the CPU is short). `pmu` guards the
 * pass's queue (`fq`, `nq`, `next`), `claiming` and `busy`; the loop waits
 * until every firing is done and recorded (`busy` == 0) before it touches
 * the job array again, so a queued firing's job stays valid. The claims stay in Redis, so the pool changes
 * nothing about exactly-once.
 */
#include "scheduler.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "visionbatch/cron.h"
#include "visionbatch/jobs_exec.h"
#include "visionbatch/log.h"
#include "visionbatch/redact.h"
#include "util.h"

#define MISSED_COUNT_CAP 10000 /* old ticks counted one by one, at most */
#define CLAIM_ATTEMPTS 5
#define CLAIM_BATCH VB_SCHED_CLAIM_BATCH
#define DONE_BATCH VB_SCHED_END_BATCH
#define FIRE_NICE 5        /* pool slots run this much nicer than the process */
#define DONE_FLUSH_MS 100  /* a busy slot writes its waiting ends at least this often */
#define DONE_HOLD_MAX 4096 /* ends a slot holds while the pass still claims */
#define DONE_HOLD_MS 2000  /* ... and for how long at most */
#define OUT_MAX 1200
#define EXPIRE_EVERY_MS 60000
#define NEVER LLONG_MAX

typedef struct sjob {
    vb_job job;
    vb_cron cron;
    int cron_ok;
    long jitter_ms;       /* vb_job_jitter_ms: ticks are due this much later */
    long long next_due_ms; /* unix ms; 0 = look now; NEVER = nothing left */
    long long known_last; /* last_tick as last read or claimed (may be stale:
                             the claim is a compare-and-set) */
    int has_known_last;
} sjob;

/* A claimed tick waiting for a firing slot. */
typedef struct firing {
    const sjob *j;
    char exec_id[VB_UUID_SIZE];
} firing;

/* The end of a firing, held until flush_done writes it. */
typedef struct held_end {
    char job_id[VB_UUID_SIZE];
    char exec_id[VB_UUID_SIZE];
    char *out; /* owned */
    long found, skipped_in_progress, skipped_other_org;
    int failed;
    long long now_ms;
} held_end;

typedef struct slot {
    struct vb_scheduler *s;
    int index;
    vb_jobs *jobs; /* own connection; slot 0 borrows the scheduler's */
    pthread_t thread;
    int started;
    /* ends of firings not yet written (flush_done) */
    held_end *held;
    size_t ndone, cap;
    long long first_done_ms;
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
    firing *fq; /* this pass's claimed firings */
    size_t nq, next, busy;
    int claiming; /* the loop may still add to fq */
    unsigned long gen; /* bumped per pass */
    int pool_stop;
    vb_error pass_err; /* the pass's first failure (code VB_OK: none) */
    unsigned long long rng; /* where a pass starts claiming */

    /* loop-owned */
    sjob *sj;
    size_t *due, *todo; /* indices into sj: this pass's due jobs, those left to claim */
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
    free(s->todo);
    s->todo = NULL;
    free(s->fq);
    s->fq = NULL;
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
    size_t *todo = l.n ? calloc(l.n, sizeof *todo) : NULL;
    firing *fq = l.n ? calloc(l.n, sizeof *fq) : NULL;
    if (l.n && (!sj || !due || !todo || !fq)) {
        free(sj);
        free(due);
        free(todo);
        free(fq);
        vb_job_list_free(&l);
        return vb_error_set(err, VB_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < l.n; i++) {
        sj[i].job = l.items[i]; /* moved */
        sj[i].jitter_ms = vb_job_jitter_ms(&sj[i].job);
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
    s->todo = todo;
    s->fq = fq;
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

/* Writes ends[0..count), DONE_BATCH per script, then logs and counts each
 * firing (its status is known only now) and frees its output. */
static void write_ends(vb_scheduler *s, slot *sl, held_end *ends, size_t count)
{
    for (size_t off = 0; off < count; off += DONE_BATCH) {
        size_t n = count - off < DONE_BATCH ? count - off : DONE_BATCH;
        vb_exec_fire_done d[DONE_BATCH];
        for (size_t i = 0; i < n; i++) {
            const held_end *h = &ends[off + i];
            d[i] = (vb_exec_fire_done){.execution_id = h->exec_id,
                                       .found = h->found,
                                       .skipped_in_progress = h->skipped_in_progress,
                                       .skipped_other_org = h->skipped_other_org,
                                       .output = h->out,
                                       .failed = h->failed,
                                       .now_ms = h->now_ms};
        }
        vb_error err = {0};
        vb_err rc = vb_jobs_exec_fire_done_batch(sl->jobs, d, n, &err);
        for (size_t i = 0; i < n; i++) {
            held_end *h = &ends[off + i];
            const char *v[1] = {h->job_id};
            vb_metric_inc(s->m_fires, v);
            if (rc != VB_OK || d[i].rc != VB_OK)
                vb_log(VB_LOG_WARN,
                       "scheduler: job=%s execution=%s cannot record the firing: %s", h->job_id,
                       h->exec_id, rc != VB_OK ? err.msg : "the execution no longer exists");
            else /* a firing that found nothing is routine: 10,000 jobs a
                    minute would be 10,000 lines (the execution has it) */
                vb_log(h->failed ? VB_LOG_ERROR : h->found ? VB_LOG_INFO : VB_LOG_DEBUG,
                       "scheduler: job=%s execution=%s fired status=%s %s", h->job_id,
                       h->exec_id, d[i].status, h->out ? h->out : "");
            free(h->out);
            h->out = NULL;
        }
    }
}

/* Writes the slot's held ends. */
static void flush_done(vb_scheduler *s, slot *sl)
{
    write_ends(s, sl, sl->held, sl->ndone);
    sl->ndone = 0;
}

/* Whether the pass is still claiming ticks. */
static int claims_running(vb_scheduler *s)
{
    pthread_mutex_lock(&s->pmu);
    int c = s->claiming;
    pthread_mutex_unlock(&s->pmu);
    return c;
}

/* Whether the slot writes its held ends now. While the pass still claims,
 * they wait (up to DONE_HOLD_MAX of them, DONE_HOLD_MS long): Redis runs one
 * script at a time, and a firing's end written then delays the claims of
 * the jobs not claimed yet, which is what the schedule lag measures. */
static int flush_due(vb_scheduler *s, const slot *sl, long long now)
{
    if (sl->ndone == 0)
        return 0;
    if (sl->ndone >= DONE_HOLD_MAX || now - sl->first_done_ms >= DONE_HOLD_MS)
        return 1;
    if (claims_running(s))
        return 0;
    return sl->ndone >= DONE_BATCH || now - sl->first_done_ms >= DONE_FLUSH_MS;
}

/* Keeps a firing's end for flush_done; writes at once when it cannot. */
static void hold_end(vb_scheduler *s, slot *sl, const held_end *h)
{
    if (sl->ndone == sl->cap) {
        size_t cap = sl->cap ? sl->cap * 2 : DONE_BATCH;
        held_end *n = realloc(sl->held, cap * sizeof *n);
        if (!n) {
            flush_done(s, sl); /* makes room: ndone = 0 */
            if (sl->cap == 0) { /* nothing to hold it in: record it alone */
                held_end one = *h;
                write_ends(s, sl, &one, 1);
                return;
            }
        } else {
            sl->held = n;
            sl->cap = cap;
        }
    }
    sl->held[sl->ndone] = *h;
    if (sl->ndone++ == 0)
        sl->first_done_ms = h->now_ms;
}

/* Calls `fire` for a claimed execution (on the slot's thread, with its
 * Redis handle) and holds its end for flush_done. `known` is the job as
 * the scheduler read it at its last reload (a tick's firing: any change
 * since bumped the version, which the step checked before this pass); NULL
 * reads the job first (a manual run). */
static void do_fire(vb_scheduler *s, slot *sl, const char *job_id, const vb_job *known,
                    const char *exec_id)
{
    if (flush_due(s, sl, now_ms(s)))
        flush_done(s, sl); /* the firing below may take long */
    vb_job job;
    vb_error err = {0};
    vb_fire_result r = {.jobs = sl->jobs, .slot = sl->index};
    char out[OUT_MAX];
    vb_err rc = VB_OK;
    if (known) {
        rc = s->fire(s->fire_ctx, known, exec_id, &r, &err);
    } else if ((rc = vb_jobs_get(sl->jobs, job_id, &job, &err)) == VB_OK) {
        rc = s->fire(s->fire_ctx, &job, exec_id, &r, &err);
        vb_job_free(&job);
    }
    if (rc != VB_OK)
        snprintf(out, OUT_MAX, "firing failed: %s (found %ld, published %ld)", err.msg, r.found,
                 r.published);
    else if (r.found == 0)
        snprintf(out, OUT_MAX, "no unprocessed runs");
    else
        snprintf(out, OUT_MAX,
                 "found %ld runs: %ld published, %ld skipped as already in progress, %ld "
                 "skipped as another organization's",
                 r.found, r.published, r.skipped_in_progress, r.skipped_other_org);
    vb_redact_text(out); /* the callback's message should hold no secret; be sure */
    held_end h = {.out = strdup(out), /* NULL (no memory): recorded as "" */
                  .found = r.found,
                  .skipped_in_progress = r.skipped_in_progress,
                  .skipped_other_org = r.skipped_other_org,
                  .failed = rc != VB_OK,
                  .now_ms = now_ms(s)};
    snprintf(h.job_id, sizeof h.job_id, "%s", job_id);
    snprintf(h.exec_id, sizeof h.exec_id, "%s", exec_id);
    hold_end(s, sl, &h);
    if (flush_due(s, sl, h.now_ms))
        flush_done(s, sl);
}

static int is_due(const sjob *j, long long now_ms_v)
{
    return j->cron_ok && j->next_due_ms != NEVER &&
           !(j->next_due_ms && now_ms_v < j->next_due_ms);
}

/* When the job's next tick after `after` (unix s) is due, in unix ms. */
static long long due_ms_after(const sjob *j, long long after)
{
    long long t = next_after(j, after);
    return t == NEVER ? NEVER : t * 1000 + j->jitter_ms;
}

/* The job's clock in whole seconds: ticks up to this one are due (a tick
 * is due jitter_ms after it). */
static long long job_now_s(const sjob *j, long long now_ms_v)
{
    long long v = now_ms_v - j->jitter_ms;
    return v >= 0 ? v / 1000 : -((-v + 999) / 1000);
}

/* Takes the next queued firing of the pass into *f: 1, or 0 once the queue
 * is empty and the loop has claimed everything. A slot that finds nothing
 * to do yet writes its waiting ends before it waits. */
static int take(vb_scheduler *s, slot *sl, firing *f)
{
    pthread_mutex_lock(&s->pmu);
    for (;;) {
        if (s->next < s->nq) {
            *f = s->fq[s->next++];
            pthread_mutex_unlock(&s->pmu);
            return 1;
        }
        if (!s->claiming) {
            pthread_mutex_unlock(&s->pmu);
            return 0;
        }
        if (sl->ndone) {
            /* Held ends wait for the claims to end, at most DONE_HOLD_MS. */
            long long left = sl->first_done_ms + DONE_HOLD_MS - now_ms(s);
            if (left <= 0) {
                pthread_mutex_unlock(&s->pmu);
                flush_done(s, sl);
                pthread_mutex_lock(&s->pmu);
                continue;
            }
            struct timespec ts = vb__realtime_after((long)left);
            pthread_cond_timedwait(&s->pwork, &s->pmu, &ts);
            continue;
        }
        pthread_cond_wait(&s->pwork, &s->pmu);
    }
}

/* Fires queued firings until the pass has none left, then writes this
 * slot's waiting ends. Called by every slot, the loop's included. */
static void work(vb_scheduler *s, slot *sl)
{
    firing f;
    while (take(s, sl, &f))
        do_fire(s, sl, f.j->job.job_id, &f.j->job, f.exec_id);
    flush_done(s, sl);
}

/* A pool thread: joins each pass. */
static void *slot_loop(void *arg)
{
    slot *sl = arg;
    vb_scheduler *s = sl->s;
    unsigned long seen = 0; /* passes start at gen 1, so a late start misses none */
    /* Platform polls yield the CPU to the claims (the loop's thread) and to
     * the REST API's threads when the machine is busy; Linux applies a
     * nice value per thread. Failing to change it changes nothing else. */
    pid_t tid = (pid_t)syscall(SYS_gettid);
    errno = 0;
    int nice_now = getpriority(PRIO_PROCESS, (id_t)tid);
    if (errno == 0 && setpriority(PRIO_PROCESS, (id_t)tid, nice_now + FIRE_NICE) != 0)
        vb_log(VB_LOG_DEBUG, "scheduler: slot %d keeps its priority: %s", sl->index,
               strerror(errno));
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

static void pass_fail(vb_scheduler *s, vb_err rc, const char *msg)
{
    pthread_mutex_lock(&s->pmu);
    if (s->pass_err.code == VB_OK)
        vb_error_set(&s->pass_err, rc, "%s", msg);
    pthread_mutex_unlock(&s->pmu);
}

/* Reads the last_tick of the due jobs whose value is not known (after a
 * reload), VB_JOBS_EXEC_TICKS_BATCH per round trip. On a failure the jobs
 * left stay unknown and are not claimed in this pass. */
static void read_last_ticks(vb_scheduler *s, size_t ndue)
{
    const char *ids[VB_JOBS_EXEC_TICKS_BATCH];
    sjob *js[VB_JOBS_EXEC_TICKS_BATCH];
    long long lasts[VB_JOBS_EXEC_TICKS_BATCH];
    size_t n = 0;
    for (size_t i = 0; i <= ndue; i++) {
        if (i < ndue && !s->sj[s->due[i]].has_known_last) {
            js[n] = &s->sj[s->due[i]];
            ids[n] = js[n]->job.job_id;
            n++;
        }
        if (n == 0 || (n < VB_JOBS_EXEC_TICKS_BATCH && i < ndue))
            continue;
        vb_error err = {0};
        if (vb_jobs_exec_last_ticks(s->jobs, ids, n, lasts, &err) != VB_OK) {
            vb_log(VB_LOG_WARN, "scheduler: reading last ticks: %s", err.msg);
            pass_fail(s, err.code, err.msg);
            return;
        }
        for (size_t k = 0; k < n; k++) {
            js[k]->known_last = lasts[k];
            js[k]->has_known_last = 1;
        }
        n = 0;
    }
}

/* What the claim of one job's due ticks says; the missed text lives here
 * until the batch's script has run. */
typedef struct claim {
    size_t idx; /* into sj */
    plan p;
    char missed_out[400];
} claim;

/* Works out job `idx`'s due ticks from its known last_tick. Returns 1 with
 * *t and *c filled when there is something to claim; else sets the job's
 * next_due_ms and returns 0. */
static int plan_claim(vb_scheduler *s, size_t idx, long long now_ms_v, vb_exec_tick *t,
                      claim *c)
{
    sjob *j = &s->sj[idx];
    long long now = job_now_s(j, now_ms_v);
    long long last = j->known_last;
    long long base = last ? last : j->job.created_at / 1000;
    c->idx = idx;
    make_plan(j, base, now, s->window_s, &c->p);
    if (!c->p.new_last) {
        j->next_due_ms = due_ms_after(j, base > now ? base : now);
        return 0;
    }
    c->missed_out[0] = '\0';
    if (c->p.missed) {
        char first[VB_TIME_STR_MAX], lastt[VB_TIME_STR_MAX];
        fmt_time(c->p.missed_first, first);
        fmt_time(c->p.missed_last, lastt);
        snprintf(c->missed_out, sizeof c->missed_out,
                 "%s%ld scheduled run(s) from %s to %s were missed (no producer was "
                 "running); only ticks at most %ld s old are caught up",
                 c->p.capped ? "more than " : "", c->p.missed, first, lastt, s->window_s);
    }
    *t = (vb_exec_tick){
        .job_id = j->job.job_id,
        .producer_id = s->producer_id,
        .expected_last = last,
        .new_last = c->p.new_last,
        .fire_tick = c->p.fire,
        .missed = c->p.missed,
        .missed_last = c->p.missed_last,
        .missed_output = c->missed_out,
        .now_ms = now_ms_v,
        .timeout_s = s->exec_timeout_s,
        .jitter_ms = j->jitter_ms,
    };
    return 1;
}

/* Acts on one claim's result: counts, logs, queues the firing. Returns 1
 * when the claim conflicted (the job goes round again). */
static int claimed(vb_scheduler *s, const claim *c, const vb_exec_tick_result *res,
                   long long now_ms_v)
{
    sjob *j = &s->sj[c->idx];
    const plan *p = &c->p;
    j->known_last = res->last_tick;
    j->has_known_last = 1;
    if (res->code == VB_EXEC_TICK_CONFLICT)
        return 1; /* another producer claimed meanwhile: recompute from its value */
    if (res->code == VB_EXEC_TICK_GONE) {
        j->next_due_ms = NEVER; /* the version bump will drop it */
        return 0;
    }
    j->next_due_ms = due_ms_after(j, p->new_last);
    if (res->code == VB_EXEC_TICK_PAUSED) {
        count_skip(s, "paused", (double)p->missed + (p->fire ? 1 : 0));
        return 0;
    }
    if (res->missed_recorded) {
        count_skip(s, "missed", (double)p->missed);
        vb_log(VB_LOG_WARN, "scheduler: job=%s %s", j->job.job_id, c->missed_out);
    }
    if (res->overlap) {
        count_skip(s, "overlap", 1);
        vb_log(VB_LOG_INFO,
               "scheduler: job=%s tick skipped: the previous execution is still running",
               j->job.job_id);
    }
    if (res->fired) {
        vb_metric_observe(s->m_lag, NULL,
                          (double)(now_ms_v - (p->fire * 1000 + j->jitter_ms)) / 1000.0);
        pthread_mutex_lock(&s->pmu);
        firing *f = &s->fq[s->nq++];
        f->j = j;
        memcpy(f->exec_id, res->execution_id, VB_UUID_SIZE);
        pthread_cond_broadcast(&s->pwork);
        pthread_mutex_unlock(&s->pmu);
    }
    return 0;
}

/* Claims the due ticks of todo[0..ntodo) CLAIM_BATCH per script; leaves the
 * jobs whose claim conflicted in todo[0..return value). 0 on a Redis
 * failure too (kept in pass_err; those jobs are looked at next pass). */
static size_t claim_round(vb_scheduler *s, size_t ntodo, long long now_ms_v)
{
    vb_exec_tick t[CLAIM_BATCH];
    vb_exec_tick_result res[CLAIM_BATCH];
    claim *c = calloc(CLAIM_BATCH, sizeof *c);
    if (!c) {
        pass_fail(s, VB_ERR_NOMEM, "out of memory");
        return 0;
    }
    size_t again = 0;
    for (size_t off = 0; off < ntodo; off += CLAIM_BATCH) {
        size_t end = ntodo - off < CLAIM_BATCH ? ntodo : off + CLAIM_BATCH, b = 0;
        for (size_t i = off; i < end; i++)
            b += (size_t)plan_claim(s, s->todo[i], now_ms_v, &t[b], &c[b]);
        if (b == 0)
            continue;
        long long claim_ms = now_ms(s); /* started_at: when the claim was made */
        for (size_t k = 0; k < b; k++)
            t[k].now_ms = claim_ms;
        vb_error err = {0};
        if (vb_jobs_exec_ticks(s->jobs, t, b, res, &err) != VB_OK) {
            vb_log(VB_LOG_WARN, "scheduler: claiming %zu ticks: %s", b, err.msg);
            pass_fail(s, err.code, err.msg);
            again = 0;
            break;
        }
        /* todo[off..end) was copied into c: the retries may overwrite it */
        for (size_t k = 0; k < b; k++)
            if (claimed(s, &c[k], &res[k], claim_ms))
                s->todo[again++] = c[k].idx;
    }
    free(c);
    return again;
}

/* Claims every due tick in batches while the slots fire what is claimed;
 * returns when all are fired and recorded. */
static vb_err pass(vb_scheduler *s, vb_error *err)
{
    long long now = now_ms(s);
    size_t ndue = 0;
    for (size_t i = 0; i < s->n; i++)
        if (is_due(&s->sj[i], now))
            s->due[ndue++] = i;
    pthread_mutex_lock(&s->pmu);
    s->nq = s->next = 0;
    s->claiming = 1;
    vb_error_clear(&s->pass_err);
    if (s->nslots > 1 && ndue > 1) {
        s->gen++;
        pthread_cond_broadcast(&s->pwork);
    }
    s->busy++; /* the loop's own slot */
    pthread_mutex_unlock(&s->pmu);

    read_last_ticks(s, ndue);
    /* A random start, so that producers sharing the jobs claim different
     * ones first; the jobs whose last_tick could not be read wait. */
    s->rng = s->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    size_t start = ndue ? (size_t)((s->rng >> 33) % ndue) : 0, ntodo = 0;
    for (size_t i = 0; i < ndue; i++) {
        size_t idx = s->due[(start + i) % ndue];
        if (s->sj[idx].has_known_last)
            s->todo[ntodo++] = idx;
    }
    for (int attempt = 0; attempt < CLAIM_ATTEMPTS && ntodo; attempt++)
        ntodo = claim_round(s, ntodo, now);
    if (ntodo) {
        char msg[160];
        snprintf(msg, sizeof msg, "job %s: tick claim kept conflicting",
                 s->sj[s->todo[0]].job.job_id);
        vb_log(VB_LOG_WARN, "scheduler: %s", msg);
        pass_fail(s, VB_ERR_CONFLICT, msg);
    }

    pthread_mutex_lock(&s->pmu);
    s->claiming = 0;
    pthread_cond_broadcast(&s->pwork);
    pthread_mutex_unlock(&s->pmu);
    work(s, &s->slots[0]);
    pthread_mutex_lock(&s->pmu);
    s->busy--;
    while (s->busy > 0 || s->next < s->nq)
        pthread_cond_wait(&s->pdone, &s->pmu);
    size_t fired = s->nq;
    s->nq = s->next = 0;
    vb_err rc = s->pass_err.code;
    if (rc != VB_OK)
        vb_error_set(err, rc, "%s", s->pass_err.msg);
    pthread_mutex_unlock(&s->pmu);
    if (fired) /* one line per pass; each firing's own line is DEBUG unless it found runs */
        vb_log(VB_LOG_INFO, "scheduler: %zu scheduled execution(s) fired in %lld ms", fired,
               now_ms(s) - now);
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
    flush_done(s, &s->slots[0]);

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
        long long d = s->sj[i].next_due_ms;
        if (!s->sj[i].cron_ok || d == NEVER || d == 0) /* 0: a failed pass; retry in 1 s */
            continue;
        long long ms = d - now;
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
    s->rng = (unsigned long long)vb__now_ms() ^ ((unsigned long long)getpid() << 32);
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
    for (size_t i = 0; s->slots && i < s->nslots; i++)
        free(s->slots[i].held); /* every pass ends with its ends written */
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
