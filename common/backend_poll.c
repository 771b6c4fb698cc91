/*
 * backend_poll.c — the status-poll schedule of vb_backend_wait and the batch
 * durations it learns (backend_poll.h).
 *
 * A status poll made before a batch can be done is wasted, and a long
 * interval after it is done holds the slot for nothing. So the wait sleeps
 * until 9/10 of the duration learned for batches of the same size on the same
 * backend before its first poll, then polls at short intervals that double
 * (status_poll_min_ms, 2×, 4× … up to status_poll_max_ms). After such a
 * learned first poll the batch is expected to end within moments, and a
 * doubled interval there would cost the most: the first VB__POLL_NEAR
 * intervals stay at status_poll_min_ms before the doubling starts.
 *
 * Learning: a wait ends knowing that the batch was unfinished at its last
 * pending poll and done at its final poll; the midpoint of the two is one
 * sample and the learned duration moves halfway to it (an exponential average
 * that follows a backend getting slower or faster within a few batches). The
 * durations are counted from the start of the wait, which is just after the
 * batch started for a run's first batch; later batches of a run wait less, as
 * they ran meanwhile, which only makes the first poll come earlier.
 *
 * The table is small and fixed (TABLE_SIZE keys of backend URL hash and batch
 * size, least recently used replaced), process-wide and behind one mutex held
 * for a few instructions.
 */
#include "backend_poll.h"
#include "util.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define TABLE_SIZE 64

typedef struct entry {
    uint64_t key;       /* 0 = free */
    long learned_ms;    /* > 0 once learned */
    unsigned long used; /* tick of the last use, for replacement */
} entry;

static pthread_mutex_t table_mu = PTHREAD_MUTEX_INITIALIZER;
static entry table[TABLE_SIZE];
static unsigned long table_tick;
static const vb__backend_hooks *hooks;

/* FNV-1a over the backend URL and the batch size; never 0. */
static uint64_t key_of(const char *backend, size_t nimages)
{
    uint64_t h = vb__fnv1a_step(vb__fnv1a_str(VB__FNV_START, backend ? backend : ""),
                                 (uint64_t)nimages);
    return h ? h : 1;
}

/* The entry of key (or NULL); with `create`, a free or the least recently
 * used entry is taken over. Called with table_mu held. */
static entry *find(uint64_t key, int create)
{
    entry *victim = &table[0];
    for (size_t i = 0; i < TABLE_SIZE; i++) {
        if (table[i].key == key) {
            table[i].used = ++table_tick;
            return &table[i];
        }
        if (table[i].used < victim->used)
            victim = &table[i];
    }
    if (!create)
        return NULL;
    victim->key = key;
    victim->learned_ms = 0;
    victim->used = ++table_tick;
    return victim;
}

long vb__poll_learned_ms(const char *backend, size_t nimages)
{
    pthread_mutex_lock(&table_mu);
    const entry *e = find(key_of(backend, nimages), 0);
    long ms = e ? e->learned_ms : 0;
    pthread_mutex_unlock(&table_mu);
    return ms;
}

long vb__poll_first_ms(const char *backend, size_t nimages, long min_ms, long max_ms)
{
    long first = vb_backend_next_poll_ms(0, min_ms, max_ms); /* clamped min */
    long cap = vb_backend_next_poll_ms(max_ms, min_ms, max_ms);
    long learned = vb__poll_learned_ms(backend, nimages);
    if (learned > 0) {
        long plausible = (long)((long long)learned * 9 / 10);
        if (plausible > first)
            first = plausible < cap ? plausible : cap;
    }
    return first;
}

void vb__poll_learn(const char *backend, size_t nimages, long long pending_ms,
                    long long done_ms)
{
    if (done_ms <= 0 || pending_ms < 0 || pending_ms > done_ms)
        return;
    long long sample = pending_ms + (done_ms - pending_ms) / 2;
    if (sample > 24LL * 3600 * 1000)
        sample = 24LL * 3600 * 1000;
    pthread_mutex_lock(&table_mu);
    entry *e = find(key_of(backend, nimages), 1);
    if (e->learned_ms <= 0)
        e->learned_ms = (long)sample;
    else
        e->learned_ms = (long)((e->learned_ms + sample) / 2);
    if (e->learned_ms <= 0)
        e->learned_ms = 1;
    pthread_mutex_unlock(&table_mu);
}

void vb__poll_forget(void)
{
    pthread_mutex_lock(&table_mu);
    memset(table, 0, sizeof table);
    table_tick = 0;
    pthread_mutex_unlock(&table_mu);
}

void vb__backend_set_hooks(const vb__backend_hooks *h)
{
    hooks = h;
}

const vb__backend_hooks *vb__backend_hooks_get(void)
{
    return hooks;
}

long long vb__poll_now_ms(void)
{
    if (hooks && hooks->now_ms)
        return hooks->now_ms(hooks->ctx);
    return vb__mono_ms();
}

int vb__poll_sleep_ms(long long ms, const atomic_int *cancel)
{
    if (hooks && hooks->sleep_ms)
        return hooks->sleep_ms(hooks->ctx, ms, cancel);
    /* Short slices so a cancel is seen within 100 ms. */
    while (ms > 0) {
        if (cancel && *cancel)
            return 1;
        long long slice = ms < 100 ? ms : 100;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)(slice * 1000000)};
        nanosleep(&ts, NULL);
        ms -= slice;
    }
    return cancel && *cancel;
}
