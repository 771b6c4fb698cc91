/*
 * cron.h — crontab(5) schedules: parsing, validation and next fire times.
 *
 * Syntax (Vixie cron): five fields separated by spaces or tabs,
 *     minute (0-59)  hour (0-23)  day-of-month (1-31)  month (1-12)  day-of-week (0-7)
 * Each field is `*` or a comma-separated list of items; an item is a number,
 * a range `a-b`, or either of those (or `*`) with a step: `*\/n`, `a-b/n`, and
 * `a/n` meaning `a-max/n`. Months accept JAN-DEC and days of the week SUN-SAT
 * (case-insensitive, also inside ranges). Day-of-week 0 and 7 are both Sunday,
 * so `5-7` is Friday to Sunday. Macros: @yearly/@annually (0 0 1 1 *),
 * @monthly (0 0 1 * *), @weekly (0 0 * * 0), @daily/@midnight (0 0 * * *),
 * @hourly (0 * * * *). @reboot is refused: a scheduler has no boot.
 *
 * Day matching (the Vixie rule): when both day-of-month and day-of-week are
 * restricted (neither field starts with `*`), a day matches if EITHER field
 * matches; when one of them starts with `*` (including `*\/2`), both must match.
 * So "0 9 * * 1" fires every Monday at 09:00 and "0 0 13 * 5" fires on every
 * 13th and on every Friday.
 *
 * Time zones and daylight saving (see tz.h for zone names). Schedules are read
 * as wall-clock times in the job's zone. Each matching wall-clock time fires
 * exactly once:
 *   - a wall time skipped when clocks spring forward fires once, at the first
 *     instant after the gap (02:30 on a day when 02:00-03:00 does not exist
 *     fires at 03:00); several skipped times collapse into that one firing;
 *   - a wall time that happens twice when clocks fall back fires once, at its
 *     first occurrence (daylight time); during the repeated hour nothing fires
 *     a second time, so "every 15 minutes" has a one-hour pause there.
 *
 * Threading: a vb_cron is a plain value; every function is thread-safe and
 * allocates nothing that the caller must free.
 */
#ifndef VISIONBATCH_CRON_H
#define VISIONBATCH_CRON_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "visionbatch/error.h"

#define VB_CRON_EXPR_MAX 256   /* longest expression accepted, in bytes */
#define VB_CRON_NEXT_MAX 100   /* most fire times vb_cron_next_n computes */
#define VB_CRON_CYCLE_YEARS 400 /* the Gregorian calendar repeats after this */
#define VB_TIME_STR_MAX 32     /* buffer size enough for either formatter */

enum {
    VB_CRON_DOM_STAR = 1 << 0, /* day-of-month field started with '*' */
    VB_CRON_DOW_STAR = 1 << 1, /* day-of-week field started with '*' */
};

/* A parsed schedule: one bit per allowed value. */
typedef struct vb_cron {
    uint64_t minutes;  /* bit m: minute m, 0-59 */
    uint32_t hours;    /* bit h: hour h, 0-23 */
    uint32_t days;     /* bit d: day of month d, 1-31 */
    uint16_t months;   /* bit m: month m, 1-12 */
    uint8_t weekdays;  /* bit w: weekday w, 0-6, 0 = Sunday (7 is folded into 0) */
    uint8_t flags;     /* VB_CRON_DOM_STAR | VB_CRON_DOW_STAR */
} vb_cron;

/* Parses `expr` into *out. Returns VB_OK, or VB_ERR_INVALID with a message
 * naming the field in `errbuf` (e.g. "day-of-week: value 8 out of range 0-7",
 * "minute: step 0 is invalid", "hour: range 5-3 is reversed", "expected 5
 * fields, got 6"); errbuf may be NULL or errlen 0. *out is written only on
 * success. Leading and trailing blanks are ignored. Thread-safe. */
vb_err vb_cron_parse(const char *expr, vb_cron *out, char *errbuf, size_t errlen);

/* True when the wall-clock minute (year, month 1-12, day 1-31, hour, minute)
 * matches the schedule (Vixie day rule included). */
int vb_cron_matches(const vb_cron *c, long long year, int month, int day, int hour, int minute);

/* Smallest fire time strictly after `after` for schedule `c` in zone `tz`
 * (an IANA name, NULL = "UTC"), following the daylight-saving rules above.
 * Fire times are whole wall-clock minutes. There is no search horizon: any
 * schedule that fires at all is found, however far ahead ("0 12 29 2 *\/7",
 * Feb 29 on a Sunday, fires in 2088 and then 2128). Returns VB_OK and sets
 * *next; VB_ERR_NOT_FOUND when the schedule never fires (e.g. "0 0 30 2 *"),
 * decided from the fields (every date falls on every weekday within one
 * VB_CRON_CYCLE_YEARS calendar cycle, the search's bound); VB_ERR_INVALID
 * for an unknown zone, NULL arguments or an `after` outside years 1900-9000.
 * Typically under a microsecond, a few for the rarest (docs/benchmarks.md).
 * Thread-safe. */
vb_err vb_cron_next(const vb_cron *c, const char *tz, time_t after, time_t *next);

/* The next `n` fire times (1 <= n <= VB_CRON_NEXT_MAX) after `after`, in
 * ascending order, into out[0..n-1]; *got receives how many were found.
 * Returns VB_OK when at least one was found (fewer than n only when the
 * times would pass the year 9000), VB_ERR_NOT_FOUND when the schedule never
 * fires, VB_ERR_INVALID for a bad n, zone or argument. */
vb_err vb_cron_next_n(const vb_cron *c, const char *tz, time_t after, size_t n, time_t *out,
                      size_t *got);

/* Writes `t` as RFC 3339 UTC, "2025-03-09T07:00:00Z". Returns VB_OK, or
 * VB_ERR_TOO_LARGE when `len` is too small (buf then holds ""), or
 * VB_ERR_INVALID for a year outside 0-9999. VB_TIME_STR_MAX always fits. */
vb_err vb_time_format_rfc3339_utc(time_t t, char *buf, size_t len);

/* Writes `t` as RFC 3339 wall-clock time in zone `tz` (NULL = "UTC") with its
 * offset, "2025-03-09T03:00:00-04:00"; UTC itself is written "+00:00". For
 * historical offsets that are not whole minutes (local mean time before
 * ~1900) the UTC form with "Z" is written instead. Errors as above, plus
 * VB_ERR_INVALID for an unknown zone. Thread-safe. */
vb_err vb_time_format_rfc3339_local(time_t t, const char *tz, char *buf, size_t len);

#endif
