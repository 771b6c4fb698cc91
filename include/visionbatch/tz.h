/*
 * tz.h — IANA time zones, read straight from the system's TZif files.
 *
 * Why not TZ=<name> + tzset() + localtime_r()? Because the TZ variable and
 * the C library's zone state are process-global: switching them in one thread
 * silently changes what localtime_r() returns in every other thread, and
 * setenv() races with getenv() in libraries that read the environment. This
 * module instead parses /usr/share/zoneinfo/<name> (RFC 8536, versions 1-4,
 * including the POSIX TZ footer that describes times after the last listed
 * transition) into an immutable vb_tz and answers every question with pure
 * arithmetic. Nothing here reads or changes TZ, and the C library's local
 * time functions are never used.
 *
 * Threading: every function is thread-safe. Loaded zones are cached for the
 * life of the process (a zone is a few kilobytes; a process uses a handful)
 * behind one internal mutex; a vb_tz pointer, once returned, stays valid and
 * unchanged until vb_tz_cache_clear().
 *
 * Names: "UTC" always works (built in, even without tzdata). Other names must
 * be relative paths under /usr/share/zoneinfo made of letters, digits and
 * "_+-/", without "." or ".." components or a leading "/", naming a regular
 * TZif file without leap-second records (the "right/" zones are refused).
 */
#ifndef VISIONBATCH_TZ_H
#define VISIONBATCH_TZ_H

#include <stddef.h>
#include <time.h>

#include "visionbatch/error.h"

/* Longest zone name accepted (the longest IANA name is ~32 characters). */
#define VB_TZ_NAME_MAX 64

typedef struct vb_tz vb_tz; /* opaque, immutable once loaded */

/* Returns 1 when `name` is an acceptable zone name that loads, else 0.
 * NULL and "" are not valid. Thread-safe. */
int vb_tz_valid(const char *name);

/* Finds or loads the zone `name` (NULL means "UTC"). On success *out is a
 * borrowed pointer owned by the cache: do not free it. On failure returns
 * VB_ERR_INVALID (bad name, missing or malformed file) with a message in
 * `err` and leaves *out untouched. Thread-safe. */
vb_err vb_tz_load(const char *name, const vb_tz **out, vb_error *err);

/* The zone's canonical name as loaded ("UTC", "Europe/Berlin"). */
const char *vb_tz_name(const vb_tz *z);

/* Seconds east of UTC in effect at instant `t` (e.g. 7200 for CEST). */
long vb_tz_offset_at(const vb_tz *z, time_t t);

/* How a local wall-clock time maps onto instants. */
typedef enum vb_tz_local_kind {
    VB_TZ_LOCAL_UNIQUE,   /* exactly one instant shows this wall time */
    VB_TZ_LOCAL_REPEATED, /* fall-back: two instants; *first is the earlier */
    VB_TZ_LOCAL_SKIPPED,  /* spring-forward gap: *first is the instant the gap ends */
} vb_tz_local_kind;

/* Maps the local wall time `local` (seconds since 1970-01-01T00:00 of the
 * local calendar, i.e. "UTC arithmetic on the wall clock") to an instant.
 * *first receives the earliest instant showing that wall time, or for a
 * skipped time the first instant after the gap; *second (may be NULL)
 * receives the later instant of a repeated time, else the same as *first.
 * Assumes no two offset changes within 30 hours of each other (true of every
 * zone since 1900). Thread-safe. */
vb_tz_local_kind vb_tz_from_local(const vb_tz *z, long long local, time_t *first,
                                  time_t *second);

/* Proleptic Gregorian calendar arithmetic (pure, thread-safe): days since
 * 1970-01-01 for a date (month 1-12, day 1-31; no range check), its inverse,
 * and the weekday (0 = Sunday) of a day number. */
long long vb_tz_days_from_civil(long long y, int m, int d);
void vb_tz_civil_from_days(long long days, long long *y, int *m, int *d);
int vb_tz_weekday(long long days);

/* Drops every cached zone. Only safe when no other thread holds a vb_tz
 * pointer; meant for tests and orderly shutdown. */
void vb_tz_cache_clear(void);

#endif
