/*
 * util.h — small helpers that several modules need: clocks, condition-wait
 * deadlines, UTC timestamps, hex digits and copies of byte ranges (UTF-8
 * helpers are in utf8.h). Internal to
 * libvisionbatch and the programs built on it; every function is stateless
 * and thread-safe.
 */
#ifndef VISIONBATCH_UTIL_H
#define VISIONBATCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Wall-clock time in unix milliseconds (CLOCK_REALTIME). */
long long vb__now_ms(void);

/* Milliseconds of CLOCK_MONOTONIC: for intervals and deadlines. */
long long vb__mono_ms(void);

/* The CLOCK_REALTIME instant `ms` milliseconds (>= 0) from now, as the
 * absolute deadline pthread_cond_timedwait takes. */
struct timespec vb__realtime_after(long long ms);

/* Value of the hex digit c (either case), or -1. */
int vb__hexval(int c);

/* Writes unix milliseconds ms (>= 0) as "2026-11-28T12:00:00.123Z" (UTC)
 * into out, NUL-terminated and cut to outlen. */
void vb__format_ms_utc(long long ms, char *out, size_t outlen);

/* A malloc'd NUL-terminated copy of the n bytes at p (which may hold NUL
 * bytes; p may be NULL when n is 0), or NULL when out of memory. */
char *vb__dup_bytes(const void *p, size_t n);

/* FNV-1a, the one hash of in-process tables and of the jitter offsets
 * (vb_job_jitter_ms: the same in every producer). Start from
 * VB__FNV_START; vb__fnv1a_step folds in one value, vb__fnv1a_str the bytes
 * of a string. */
#define VB__FNV_START 1469598103934665603ULL
static inline uint64_t vb__fnv1a_step(uint64_t h, uint64_t v)
{
    return (h ^ v) * 1099511628211ULL;
}
static inline uint64_t vb__fnv1a_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = vb__fnv1a_step(h, (unsigned char)*s);
    return h;
}

#endif
