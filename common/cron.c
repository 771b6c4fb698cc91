/*
 * cron.c — crontab(5) expressions: parser, matcher, next-fire search and the
 * RFC 3339 formatters used wherever a fire time is shown.
 *
 * Parsing turns each field into a bit set (see vb_cron in cron.h), so matching
 * a wall-clock minute is five bit tests. The search for the next fire time
 * walks the local calendar field by field (skip whole months, then whole days,
 * days by a bit scan when the day-of-month must match, then jump to the next
 * allowed hour and minute with a bit scan). There is no fixed horizon: the
 * Gregorian calendar repeats every 400 years (146,097 days, exactly 20,871
 * weeks), so the month, day, weekday, hour and minute fields, which are all a
 * schedule can name, match the same wall-clock times in every 400-year
 * window. A schedule with no match in the VB_CRON_CYCLE_YEARS window after
 * `after` never fires; one that fires at all is found within it, however rare
 * (Feb 29 on a Sunday fires 2032, 2060, 2088, then 2128). A schedule that
 * never fires is recognised from its fields first (can_fire), so the bound is
 * only a safety net and no call walks far. Each wall-clock candidate is mapped to
 * an instant by vb_tz_from_local(); that mapping (first occurrence of a
 * repeated time, end of the gap for a skipped time) never goes backwards, so
 * the first candidate whose instant lies after `after` is the answer.
 *
 * Threading: pure functions over caller-owned values; zones come from the
 * thread-safe cache in tz.c. Nothing here allocates.
 */
#include "visionbatch/cron.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "visionbatch/tz.h"

/* Years the search accepts for `after` (keeps every computation in range). */
#define CRON_YEAR_MIN 1900
#define CRON_YEAR_MAX 9000

typedef struct cron_field {
    const char *name;
    int lo, hi;
    const char *const *names; /* names[i] stands for value name_base + i */
    int nnames, name_base;
} cron_field;

static const char *const month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                          "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
static const char *const weekday_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"};

enum { F_MINUTE, F_HOUR, F_DOM, F_MONTH, F_DOW, F_COUNT };

static const cron_field fields[F_COUNT] = {
    {"minute", 0, 59, NULL, 0, 0},
    {"hour", 0, 23, NULL, 0, 0},
    {"day-of-month", 1, 31, NULL, 0, 0},
    {"month", 1, 12, month_names, 12, 1},
    {"day-of-week", 0, 7, weekday_names, 7, 0},
};

static const struct {
    const char *name, *expansion;
} macros[] = {
    {"@yearly", "0 0 1 1 *"},   {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"},   {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

static int is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

static int upper(int ch)
{
    return ch >= 'a' && ch <= 'z' ? ch - 'a' + 'A' : ch;
}

/* Reads a number or (where the field has names) a name at *pp. The item text
 * is [item, end). Returns 0 and the value, or -1 with a message. */
static int parse_value(const cron_field *f, const char **pp, const char *end, int *out,
                       char *errbuf, size_t errlen)
{
    const char *p = *pp;
    if (p < end && *p >= '0' && *p <= '9') {
        const char *digits = p;
        long v = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (v < 100000) /* saturate: anything this big is out of range */
                v = v * 10 + (*p - '0');
            p++;
        }
        if (v < f->lo || v > f->hi) {
            int nd = (int)(p - digits);
            set_err(errbuf, errlen, "%s: value %.*s%s out of range %d-%d", f->name,
                    nd > 12 ? 12 : nd, digits, nd > 12 ? "..." : "", f->lo, f->hi);
            return -1;
        }
        *out = (int)v;
        *pp = p;
        return 0;
    }
    const char *s = p;
    while (p < end && ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
        p++;
    size_t n = (size_t)(p - s);
    if (n == 0) {
        if (s < end)
            set_err(errbuf, errlen, "%s: unexpected character '%c'", f->name, *s);
        else
            set_err(errbuf, errlen, "%s: missing value", f->name);
        return -1;
    }
    if (!f->names) {
        set_err(errbuf, errlen, "%s: names are not allowed here ('%.*s')", f->name,
                (int)(n > 16 ? 16 : n), s);
        return -1;
    }
    for (int i = 0; i < f->nnames && n == 3; i++) {
        if (upper(s[0]) == f->names[i][0] && upper(s[1]) == f->names[i][1] &&
            upper(s[2]) == f->names[i][2]) {
            *out = f->name_base + i;
            *pp = p;
            return 0;
        }
    }
    set_err(errbuf, errlen, "%s: unknown name '%.*s'", f->name, (int)(n > 16 ? 16 : n), s);
    return -1;
}

/* One list item: `*`, `a`, `a-b`, each optionally followed by `/step`. */
static int parse_item(const cron_field *f, const char *item, const char *end, uint64_t *bits,
                      char *errbuf, size_t errlen)
{
    const char *p = item;
    int lo, hi, step = 1;
    if (p == end) {
        set_err(errbuf, errlen, "%s: empty list item", f->name);
        return -1;
    }
    if (*p == '*') {
        p++;
        lo = f->lo;
        hi = f->hi;
    } else {
        if (parse_value(f, &p, end, &lo, errbuf, errlen))
            return -1;
        hi = lo;
        if (p < end && *p == '-') {
            p++;
            if (parse_value(f, &p, end, &hi, errbuf, errlen))
                return -1;
            if (hi < lo) {
                set_err(errbuf, errlen, "%s: range %d-%d is reversed", f->name, lo, hi);
                return -1;
            }
        } else if (p < end && *p == '/') {
            hi = f->hi; /* "a/n" means "a-max/n" */
        }
    }
    if (p < end && *p == '/') {
        p++;
        if (p == end || *p < '0' || *p > '9') {
            set_err(errbuf, errlen, "%s: step must be a number", f->name);
            return -1;
        }
        long v = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (v < 100000)
                v = v * 10 + (*p - '0');
            p++;
        }
        int span = f->hi - f->lo + 1;
        if (v == 0) {
            set_err(errbuf, errlen, "%s: step 0 is invalid", f->name);
            return -1;
        }
        if (v > span) {
            set_err(errbuf, errlen, "%s: step %ld out of range 1-%d", f->name, v, span);
            return -1;
        }
        step = (int)v;
    }
    if (p != end) {
        set_err(errbuf, errlen, "%s: unexpected '%c' in '%.*s'", f->name, *p,
                (int)(end - item > 32 ? 32 : end - item), item);
        return -1;
    }
    for (int v = lo; v <= hi; v += step)
        *bits |= 1ULL << v;
    return 0;
}

static int parse_field(const cron_field *f, const char *s, const char *end, uint64_t *bits,
                       char *errbuf, size_t errlen)
{
    *bits = 0;
    for (;;) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *item_end = comma ? comma : end;
        if (parse_item(f, s, item_end, bits, errbuf, errlen))
            return -1;
        if (!comma)
            return 0;
        s = comma + 1;
    }
}

static vb_err parse_fields(const char *expr, vb_cron *out, char *errbuf, size_t errlen)
{
    const char *start[F_COUNT + 1], *stop[F_COUNT + 1];
    int n = 0;
    const char *p = expr;
    for (;;) {
        while (is_blank(*p))
            p++;
        if (*p == '\0')
            break;
        const char *s = p;
        while (*p && !is_blank(*p))
            p++;
        if (n < F_COUNT + 1) {
            start[n] = s;
            stop[n] = p;
        }
        n++;
    }
    if (n != F_COUNT) {
        set_err(errbuf, errlen, "expected 5 fields, got %d", n);
        return VB_ERR_INVALID;
    }
    uint64_t bits[F_COUNT];
    for (int i = 0; i < F_COUNT; i++)
        if (parse_field(&fields[i], start[i], stop[i], &bits[i], errbuf, errlen))
            return VB_ERR_INVALID;
    vb_cron c = {0};
    c.minutes = bits[F_MINUTE];
    c.hours = (uint32_t)bits[F_HOUR];
    c.days = (uint32_t)bits[F_DOM];
    c.months = (uint16_t)bits[F_MONTH];
    c.weekdays = (uint8_t)((bits[F_DOW] | bits[F_DOW] >> 7) & 0x7f); /* 7 is Sunday */
    if (*start[F_DOM] == '*')
        c.flags |= VB_CRON_DOM_STAR;
    if (*start[F_DOW] == '*')
        c.flags |= VB_CRON_DOW_STAR;
    *out = c;
    return VB_OK;
}

vb_err vb_cron_parse(const char *expr, vb_cron *out, char *errbuf, size_t errlen)
{
    if (errbuf && errlen > 0)
        errbuf[0] = '\0';
    if (!expr || !out) {
        set_err(errbuf, errlen, "no expression");
        return VB_ERR_INVALID;
    }
    size_t len = strnlen(expr, VB_CRON_EXPR_MAX + 1);
    if (len > VB_CRON_EXPR_MAX) {
        set_err(errbuf, errlen, "expression longer than %d characters", VB_CRON_EXPR_MAX);
        return VB_ERR_INVALID;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)expr[i];
        if ((ch < 0x20 && ch != '\t') || ch >= 0x7f) {
            set_err(errbuf, errlen, "invalid character 0x%02x at position %zu", ch, i + 1);
            return VB_ERR_INVALID;
        }
    }
    const char *p = expr;
    while (is_blank(*p))
        p++;
    if (*p == '\0') {
        set_err(errbuf, errlen, "empty expression");
        return VB_ERR_INVALID;
    }
    if (*p != '@')
        return parse_fields(p, out, errbuf, errlen);

    size_t n = 0;
    while (p[n] && !is_blank(p[n]))
        n++;
    for (size_t i = n; p[i]; i++) {
        if (!is_blank(p[i])) {
            set_err(errbuf, errlen, "%.*s takes no fields", (int)(n > 16 ? 16 : n), p);
            return VB_ERR_INVALID;
        }
    }
    if (n == 7 && strncasecmp(p, "@reboot", 7) == 0) {
        set_err(errbuf, errlen, "@reboot is not supported: a schedule needs a time of day");
        return VB_ERR_INVALID;
    }
    for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++)
        if (strlen(macros[i].name) == n && strncasecmp(p, macros[i].name, n) == 0)
            return parse_fields(macros[i].expansion, out, errbuf, errlen);
    set_err(errbuf, errlen, "unknown macro '%.*s' (use @yearly, @annually, @monthly, @weekly, "
                            "@daily, @midnight or @hourly)",
            (int)(n > 16 ? 16 : n), p);
    return VB_ERR_INVALID;
}

/* ---- matching and search ---------------------------------------------- */

static int is_leap(long long y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(long long y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

static long long floor_div(long long a, long long b)
{
    long long q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static int day_matches(const vb_cron *c, long long y, int m, int d)
{
    int dom = (c->days >> d) & 1;
    int dow = (c->weekdays >> vb_tz_weekday(vb_tz_days_from_civil(y, m, d))) & 1;
    if (c->flags & (VB_CRON_DOM_STAR | VB_CRON_DOW_STAR))
        return dom && dow;
    return dom || dow; /* both restricted: Vixie's OR rule */
}

int vb_cron_matches(const vb_cron *c, long long year, int month, int day, int hour, int minute)
{
    if (!c || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) ||
        hour < 0 || hour > 23 || minute < 0 || minute > 59)
        return 0;
    return ((c->months >> month) & 1) && day_matches(c, year, month, day) &&
           ((c->hours >> hour) & 1) && ((c->minutes >> minute) & 1);
}

typedef struct civil {
    long long y;
    int mo, d, h, mi;
} civil;

/* Moves *t forward to the first wall-clock minute >= *t that matches `c`.
 * *t may be denormal by one unit in any field (minute 60, hour 24, ...).
 * Returns 0 when the year passes `limit`. */
static int next_local_match(const vb_cron *c, civil *t, long long limit)
{
    for (;;) {
        if (t->mi > 59) {
            t->mi = 0;
            t->h++;
        }
        if (t->h > 23) {
            t->h = 0;
            t->d++;
        }
        if (t->mo > 12) {
            t->mo = 1;
            t->y++;
        }
        if (t->d > days_in_month(t->y, t->mo)) {
            t->d = 1;
            if (++t->mo > 12) {
                t->mo = 1;
                t->y++;
            }
        }
        if (t->y > limit)
            return 0;
        if (!((c->months >> t->mo) & 1)) {
            t->mo++;
            t->d = 1;
            t->h = t->mi = 0;
            continue;
        }
        if (!day_matches(c, t->y, t->mo, t->d)) {
            t->h = t->mi = 0;
            if (!(c->flags & (VB_CRON_DOM_STAR | VB_CRON_DOW_STAR))) {
                t->d++; /* OR rule: any day may match through its weekday */
                continue;
            }
            /* AND rule: only days in the day-of-month set can match */
            uint64_t later = (uint64_t)c->days >> (t->d + 1);
            t->d = later ? t->d + 1 + __builtin_ctzll(later) : 32;
            continue;
        }
        uint32_t hrs = c->hours >> t->h;
        if (!hrs) {
            t->h = 24;
            t->mi = 0;
            continue;
        }
        if (!(hrs & 1)) {
            t->h += __builtin_ctz(hrs);
            t->mi = 0;
        }
        uint64_t mins = c->minutes >> t->mi;
        if (!mins) {
            t->mi = 60;
            continue;
        }
        t->mi += __builtin_ctzll(mins);
        return 1;
    }
}

/* Whether `c` fires at all, decided from the fields alone. Within one
 * 400-year cycle every date falls on every weekday (Feb 29 included), so a
 * schedule fires unless the AND day rule asks for a day-of-month that none of
 * its months has (Feb 30, Apr 31, ...); under the OR rule its weekdays match
 * in every month. */
static int can_fire(const vb_cron *c)
{
    static const int longest[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (!(c->flags & (VB_CRON_DOM_STAR | VB_CRON_DOW_STAR)))
        return c->months != 0 && c->weekdays != 0;
    for (int m = 1; m <= 12; m++) {
        uint64_t days_of_m = (1ULL << (longest[m] + 1)) - 2; /* bits 1..longest */
        if (((c->months >> m) & 1) && ((uint64_t)c->days & days_of_m) && c->weekdays)
            return 1;
    }
    return 0;
}

static vb_err next_in_zone(const vb_cron *c, const vb_tz *z, time_t after, time_t *next)
{
    /* Coarse bound first so the arithmetic below cannot overflow. */
    if (after < -3000000000LL || after > 300000000000LL)
        return VB_ERR_INVALID;
    long long local = (long long)after + vb_tz_offset_at(z, after);
    long long minute = floor_div(local, 60) + 1; /* strictly after: next whole minute */
    long long days = floor_div(minute, 1440);
    long long rem = minute - days * 1440;
    civil t;
    vb_tz_civil_from_days(days, &t.y, &t.mo, &t.d);
    t.h = (int)(rem / 60);
    t.mi = (int)(rem % 60);
    if (t.y < CRON_YEAR_MIN || t.y > CRON_YEAR_MAX)
        return VB_ERR_INVALID;
    if (!can_fire(c))
        return VB_ERR_NOT_FOUND;
    long long limit = t.y + VB_CRON_CYCLE_YEARS; /* a whole cycle after `after` */
    while (next_local_match(c, &t, limit)) {
        long long wall =
            vb_tz_days_from_civil(t.y, t.mo, t.d) * 86400 + t.h * 3600LL + t.mi * 60LL;
        time_t first;
        vb_tz_from_local(z, wall, &first, NULL);
        /* A candidate at or before `after` is the first occurrence of a time
         * we are already past (inside a repeated hour): it has fired. */
        if (first > after) {
            *next = first;
            return VB_OK;
        }
        t.mi++;
    }
    return VB_ERR_NOT_FOUND;
}

vb_err vb_cron_next(const vb_cron *c, const char *tz, time_t after, time_t *next)
{
    const vb_tz *z;
    if (!c || !next || vb_tz_load(tz, &z, NULL) != VB_OK)
        return VB_ERR_INVALID;
    return next_in_zone(c, z, after, next);
}

vb_err vb_cron_next_n(const vb_cron *c, const char *tz, time_t after, size_t n, time_t *out,
                      size_t *got)
{
    const vb_tz *z;
    if (got)
        *got = 0;
    if (!c || !out || !got || n == 0 || n > VB_CRON_NEXT_MAX ||
        vb_tz_load(tz, &z, NULL) != VB_OK)
        return VB_ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        vb_err rc = next_in_zone(c, z, after, &out[i]);
        if (rc != VB_OK) /* after the first: only the end of the year range */
            return i > 0 ? VB_OK : rc;
        after = out[i];
        *got = i + 1;
    }
    return VB_OK;
}

/* ---- formatting -------------------------------------------------------- */

static vb_err format_wall(long long wall, const char *suffix, char *buf, size_t len)
{
    if (!buf || len == 0)
        return VB_ERR_INVALID;
    buf[0] = '\0';
    long long days = floor_div(wall, 86400);
    long long secs = wall - days * 86400;
    long long y;
    int m, d;
    vb_tz_civil_from_days(days, &y, &m, &d);
    if (y < 0 || y > 9999)
        return VB_ERR_INVALID;
    int w = snprintf(buf, len, "%04lld-%02d-%02dT%02lld:%02lld:%02lld%s", y, m, d, secs / 3600,
                     secs / 60 % 60, secs % 60, suffix);
    if (w < 0 || (size_t)w >= len) {
        buf[0] = '\0';
        return VB_ERR_TOO_LARGE;
    }
    return VB_OK;
}

vb_err vb_time_format_rfc3339_utc(time_t t, char *buf, size_t len)
{
    return format_wall((long long)t, "Z", buf, len);
}

vb_err vb_time_format_rfc3339_local(time_t t, const char *tz, char *buf, size_t len)
{
    const vb_tz *z;
    if (buf && len > 0)
        buf[0] = '\0';
    if (vb_tz_load(tz, &z, NULL) != VB_OK)
        return VB_ERR_INVALID;
    long off = vb_tz_offset_at(z, t);
    if (off % 60 != 0)
        return format_wall((long long)t, "Z", buf, len);
    char suffix[32];
    long a = off < 0 ? -off : off;
    snprintf(suffix, sizeof suffix, "%c%02ld:%02ld", off < 0 ? '-' : '+', a / 3600,
             a / 60 % 60);
    return format_wall((long long)t + off, suffix, buf, len);
}
