/*
 * tz.c — IANA zone files (TZif, RFC 8536) parsed into immutable tables.
 *
 * A zone is a sorted list of transition instants, each naming a local time
 * type (UTC offset), plus an optional POSIX TZ rule string (the "footer",
 * e.g. "CET-1CEST,M3.5.0,M10.5.0/3") that governs every instant after the
 * last listed transition. Offsets are looked up by binary search; local wall
 * times are mapped back to instants by trying the offsets in force a little
 * before and after, which finds both instants of a repeated (fall-back) time
 * and detects skipped (spring-forward) times, whose gap end is then found by
 * bisection.
 *
 * Threading: zones are loaded once and cached in a singly linked list guarded
 * by `cache_lock`; entries are never modified after insertion, so readers use
 * them without locking. Ownership: the cache owns every vb_tz.
 */
#include "visionbatch/tz.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(sizeof(time_t) >= 8, "visionbatch needs a 64-bit time_t");

#define TZ_DIR "/usr/share/zoneinfo"
#define TZ_FILE_MAX (1024 * 1024) /* real files are < 10 KiB */
#define TZ_MAX_TRANSITIONS 20000
#define TZ_MAX_OFFSET (26L * 3600) /* |UTC offset| bound, RFC 8536 allows < 25h */
#define TZ_PROBE (30LL * 3600)     /* > max offset: brackets every candidate */

/* One end of a POSIX daylight-saving rule: Jn (1-365, Feb 29 never counted),
 * n (0-365, zero-based day of year) or Mm.w.d (weekday d of week w of month m,
 * w = 5 meaning the last), at `time` seconds of local wall time. */
typedef struct tz_rule_point {
    char kind; /* 'J', 'N' or 'M' */
    int a, b, c;
    long time;
} tz_rule_point;

typedef struct tz_rule {
    long std_off, dst_off; /* seconds east of UTC */
    int has_dst;
    tz_rule_point start, end;
} tz_rule;

struct vb_tz {
    char name[VB_TZ_NAME_MAX + 1];
    size_t ntrans;
    int64_t *trans;      /* ascending instants */
    uint8_t *trans_type; /* index into type_off per transition */
    size_t ntypes;
    int32_t *type_off; /* seconds east of UTC per local time type */
    int has_rule;
    tz_rule rule;
    struct vb_tz *next;
};

static int32_t utc_off0 = 0;
static vb_tz utc_zone = {.name = "UTC", .ntypes = 1, .type_off = &utc_off0};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static vb_tz *cache_head;

/* ---- calendar arithmetic (Howard Hinnant's algorithms) ---------------- */

static long long floor_div(long long a, long long b)
{
    long long q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

long long vb_tz_days_from_civil(long long y, int m, int d)
{
    y -= m <= 2;
    long long era = floor_div(y, 400);
    long long yoe = y - era * 400;
    long long doy = (153LL * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void vb_tz_civil_from_days(long long days, long long *y, int *m, int *d)
{
    days += 719468;
    long long era = floor_div(days, 146097);
    long long doe = days - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

int vb_tz_weekday(long long days)
{
    return (int)(((days % 7) + 11) % 7); /* 1970-01-01 was a Thursday (4) */
}

static int is_leap(long long y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(long long y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* ---- POSIX TZ rule strings ------------------------------------------- */

static int parse_tzname(const char **pp)
{
    const char *p = *pp;
    if (*p == '<') {
        const char *q = strchr(p, '>');
        if (!q || q - p < 2)
            return -1;
        *pp = q + 1;
        return 0;
    }
    const char *s = p;
    while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z'))
        p++;
    if (p - s < 3)
        return -1;
    *pp = p;
    return 0;
}

/* [+-]hh[:mm[:ss]] with hours up to `maxh`. */
static int parse_hms(const char **pp, long *out, int maxh)
{
    const char *p = *pp;
    int sign = 1;
    if (*p == '+' || *p == '-')
        sign = *p++ == '-' ? -1 : 1;
    long parts[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        if (i > 0) {
            if (*p != ':')
                break;
            p++;
        }
        if (*p < '0' || *p > '9')
            return -1;
        long v = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 4) {
            v = v * 10 + (*p++ - '0');
            digits++;
        }
        parts[i] = v;
    }
    if (parts[0] > maxh || parts[1] > 59 || parts[2] > 59)
        return -1;
    *out = sign * (parts[0] * 3600 + parts[1] * 60 + parts[2]);
    *pp = p;
    return 0;
}

static int parse_int(const char **pp, int lo, int hi, int *out)
{
    const char *p = *pp;
    long v = 0;
    if (*p < '0' || *p > '9')
        return -1;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p++ - '0');
        if (v > hi)
            return -1;
    }
    if (v < lo)
        return -1;
    *out = (int)v;
    *pp = p;
    return 0;
}

static int parse_rule_point(const char **pp, tz_rule_point *pt)
{
    const char *p = *pp;
    memset(pt, 0, sizeof *pt);
    if (*p == 'J') {
        p++;
        pt->kind = 'J';
        if (parse_int(&p, 1, 365, &pt->a))
            return -1;
    } else if (*p == 'M') {
        p++;
        pt->kind = 'M';
        if (parse_int(&p, 1, 12, &pt->a) || *p++ != '.' || parse_int(&p, 1, 5, &pt->b) ||
            *p++ != '.' || parse_int(&p, 0, 6, &pt->c))
            return -1;
    } else {
        pt->kind = 'N';
        if (parse_int(&p, 0, 365, &pt->a))
            return -1;
    }
    pt->time = 2 * 3600;
    if (*p == '/') {
        p++;
        if (parse_hms(&p, &pt->time, 167))
            return -1;
    }
    *pp = p;
    return 0;
}

static int parse_posix_tz(const char *s, tz_rule *r)
{
    const char *p = s;
    long off;
    memset(r, 0, sizeof *r);
    if (parse_tzname(&p) || parse_hms(&p, &off, 24))
        return -1;
    r->std_off = -off; /* POSIX offsets count hours west of Greenwich */
    if (*p == '\0')
        return 0;
    if (parse_tzname(&p))
        return -1;
    r->has_dst = 1;
    r->dst_off = r->std_off + 3600;
    if (*p != ',' && *p != '\0') {
        if (parse_hms(&p, &off, 24))
            return -1;
        r->dst_off = -off;
    }
    if (*p == '\0') { /* POSIX leaves the default open; use the US rule like glibc */
        const char *def = ",M3.2.0,M11.1.0";
        p = def;
    }
    if (*p++ != ',' || parse_rule_point(&p, &r->start) || *p++ != ',' ||
        parse_rule_point(&p, &r->end) || *p != '\0')
        return -1;
    return 0;
}

/* Local wall-clock seconds at which `pt` happens in year y. */
static long long rule_local(const tz_rule_point *pt, long long y)
{
    long long days;
    if (pt->kind == 'J') {
        int yday = pt->a - 1;
        if (is_leap(y) && pt->a >= 60)
            yday++;
        days = vb_tz_days_from_civil(y, 1, 1) + yday;
    } else if (pt->kind == 'N') {
        days = vb_tz_days_from_civil(y, 1, 1) + pt->a;
    } else {
        long long first = vb_tz_days_from_civil(y, pt->a, 1);
        int day = (pt->c - vb_tz_weekday(first) + 7) % 7 + (pt->b - 1) * 7;
        while (day >= days_in_month(y, pt->a))
            day -= 7;
        days = first + day;
    }
    return days * 86400 + pt->time;
}

static long rule_offset(const tz_rule *r, long long t)
{
    if (!r->has_dst)
        return r->std_off;
    long long y;
    int m, d;
    vb_tz_civil_from_days(floor_div(t + r->std_off, 86400), &y, &m, &d);
    long long s = rule_local(&r->start, y) - r->std_off;
    long long e = rule_local(&r->end, y) - r->dst_off;
    int dst = s < e ? (t >= s && t < e) : !(t >= e && t < s);
    return dst ? r->dst_off : r->std_off;
}

/* ---- TZif parsing ----------------------------------------------------- */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

typedef struct tzif_counts {
    uint32_t isut, isstd, leap, time, type, chars;
} tzif_counts;

static int read_header(const unsigned char *d, size_t len, size_t pos, tzif_counts *c,
                       char *version)
{
    if (len - pos < 44 || memcmp(d + pos, "TZif", 4) != 0)
        return -1;
    *version = (char)d[pos + 4];
    const unsigned char *p = d + pos + 20;
    c->isut = be32(p);
    c->isstd = be32(p + 4);
    c->leap = be32(p + 8);
    c->time = be32(p + 12);
    c->type = be32(p + 16);
    c->chars = be32(p + 20);
    if (c->type == 0 || c->type > 256 || c->time > TZ_MAX_TRANSITIONS || c->chars > 65536 ||
        c->leap > 65536 || c->isut > c->type || c->isstd > c->type)
        return -1;
    return 0;
}

static size_t block_size(const tzif_counts *c, size_t tsize)
{
    return (size_t)c->time * tsize + c->time + (size_t)c->type * 6 + c->chars +
           (size_t)c->leap * (tsize + 4) + c->isstd + c->isut;
}

/* Fills z from the data block at `pos` (tsize 4 for v1, 8 for v2+). */
static const char *load_block(vb_tz *z, const unsigned char *d, size_t len, size_t pos,
                              const tzif_counts *c, size_t tsize)
{
    if (len - pos < block_size(c, tsize))
        return "truncated data block";
    if (c->leap != 0)
        return "zones with leap seconds are not supported";
    const unsigned char *p = d + pos;
    z->ntrans = c->time;
    z->ntypes = c->type;
    z->trans = calloc(c->time ? c->time : 1, sizeof *z->trans);
    z->trans_type = calloc(c->time ? c->time : 1, 1);
    z->type_off = calloc(c->type, sizeof *z->type_off);
    if (!z->trans || !z->trans_type || !z->type_off)
        return "out of memory";
    for (uint32_t i = 0; i < c->time; i++, p += tsize) {
        z->trans[i] = tsize == 8 ? be64(p) : (int32_t)be32(p);
        if (i > 0 && z->trans[i] <= z->trans[i - 1])
            return "transitions not ascending";
    }
    for (uint32_t i = 0; i < c->time; i++, p++) {
        if (*p >= c->type)
            return "transition names an unknown type";
        z->trans_type[i] = *p;
    }
    for (uint32_t i = 0; i < c->type; i++, p += 6) {
        int32_t off = (int32_t)be32(p);
        if (off <= -TZ_MAX_OFFSET || off >= TZ_MAX_OFFSET)
            return "UTC offset out of range";
        z->type_off[i] = off;
    }
    return NULL;
}

static const char *parse_tzif(vb_tz *z, const unsigned char *d, size_t len)
{
    tzif_counts c;
    char version;
    if (read_header(d, len, 0, &c, &version))
        return "not a TZif file";
    size_t pos = 44;
    if (version == '\0')
        return load_block(z, d, len, pos, &c, 4);
    if (len - pos < block_size(&c, 4))
        return "truncated data block";
    pos += block_size(&c, 4);
    if (read_header(d, len, pos, &c, &version))
        return "bad second header";
    pos += 44;
    const char *why = load_block(z, d, len, pos, &c, 8);
    if (why)
        return why;
    pos += block_size(&c, 8);
    /* Footer: "\n" POSIX-TZ "\n"; an empty string means "no rule". */
    if (pos >= len || d[pos] != '\n')
        return "missing footer";
    const unsigned char *end = memchr(d + pos + 1, '\n', len - pos - 1);
    if (!end)
        return "unterminated footer";
    size_t flen = (size_t)(end - (d + pos + 1));
    if (flen > 0) {
        char footer[128];
        if (flen >= sizeof footer)
            return "footer too long";
        memcpy(footer, d + pos + 1, flen);
        footer[flen] = '\0';
        if (parse_posix_tz(footer, &z->rule))
            return "unsupported TZ rule in footer";
        z->has_rule = 1;
    }
    return NULL;
}

static void tz_free(vb_tz *z)
{
    if (!z || z == &utc_zone)
        return;
    free(z->trans);
    free(z->trans_type);
    free(z->type_off);
    free(z);
}

/* ---- names and loading ------------------------------------------------ */

static const char *check_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0)
        return "empty time zone name";
    if (n > VB_TZ_NAME_MAX)
        return "time zone name too long";
    if (name[0] == '/')
        return "time zone name must not start with '/'";
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                 (ch >= '0' && ch <= '9') || ch == '_' || ch == '+' || ch == '-' ||
                 ch == '/' || ch == '.';
        if (!ok)
            return "time zone name has an invalid character";
    }
    /* Reject ".", ".." and empty path components, so nothing escapes TZ_DIR. */
    const char *seg = name;
    while (*seg) {
        const char *slash = strchr(seg, '/');
        size_t sl = slash ? (size_t)(slash - seg) : strlen(seg);
        if (sl == 0 || (seg[0] == '.' && (sl == 1 || (sl == 2 && seg[1] == '.'))))
            return "time zone name has an empty, '.' or '..' component";
        if (memchr(seg, '.', sl))
            return "time zone name has an invalid character";
        seg += sl + (slash ? 1 : 0);
        if (slash && *seg == '\0')
            return "time zone name must not end with '/'";
    }
    return NULL;
}

static vb_err load_file(const char *name, vb_tz **out, vb_error *err)
{
    char path[sizeof TZ_DIR + VB_TZ_NAME_MAX + 2];
    unsigned char *data = NULL;
    vb_tz *z = NULL;
    int fd = -1;
    vb_err rc = VB_ERR_INVALID;

    snprintf(path, sizeof path, "%s/%s", TZ_DIR, name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        vb_error_set(err, rc, "unknown time zone '%s'", name);
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        st.st_size > TZ_FILE_MAX) {
        vb_error_set(err, rc, "unknown time zone '%s' (not a zone file)", name);
        goto fail;
    }
    size_t len = (size_t)st.st_size, got = 0;
    data = malloc(len);
    z = calloc(1, sizeof *z);
    if (!data || !z) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "out of memory loading time zone");
        goto fail;
    }
    while (got < len) {
        ssize_t r = read(fd, data + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            vb_error_set(err, rc, "cannot read time zone '%s'", name);
            goto fail;
        }
        got += (size_t)r;
    }
    const char *why = parse_tzif(z, data, len);
    if (why) {
        vb_error_set(err, rc, "time zone '%s': %s", name, why);
        goto fail;
    }
    snprintf(z->name, sizeof z->name, "%s", name);
    close(fd);
    free(data);
    *out = z;
    return VB_OK;
fail:
    if (fd >= 0)
        close(fd);
    free(data);
    tz_free(z);
    return rc;
}

vb_err vb_tz_load(const char *name, const vb_tz **out, vb_error *err)
{
    if (!out)
        return vb_error_set(err, VB_ERR_INVALID, "vb_tz_load: out is NULL");
    if (!name || strcmp(name, "UTC") == 0) {
        *out = &utc_zone;
        return VB_OK;
    }
    const char *why = check_name(name);
    if (why)
        return vb_error_set(err, VB_ERR_INVALID, "%s", why);

    pthread_mutex_lock(&cache_lock);
    vb_tz *z;
    for (z = cache_head; z; z = z->next)
        if (strcmp(z->name, name) == 0)
            break;
    vb_err rc = VB_OK;
    if (!z) {
        /* Loading under the lock keeps one copy per name; it happens once. */
        rc = load_file(name, &z, err);
        if (rc == VB_OK) {
            z->next = cache_head;
            cache_head = z;
        }
    }
    pthread_mutex_unlock(&cache_lock);
    if (rc == VB_OK)
        *out = z;
    return rc;
}

int vb_tz_valid(const char *name)
{
    const vb_tz *z;
    return name && name[0] != '\0' && vb_tz_load(name, &z, NULL) == VB_OK;
}

const char *vb_tz_name(const vb_tz *z)
{
    return z ? z->name : "UTC";
}

void vb_tz_cache_clear(void)
{
    pthread_mutex_lock(&cache_lock);
    vb_tz *z = cache_head;
    cache_head = NULL;
    pthread_mutex_unlock(&cache_lock);
    while (z) {
        vb_tz *next = z->next;
        tz_free(z);
        z = next;
    }
}

/* ---- queries ----------------------------------------------------------- */

long vb_tz_offset_at(const vb_tz *z, time_t t)
{
    if (!z)
        return 0;
    if (z->ntrans == 0 || t >= z->trans[z->ntrans - 1]) {
        if (z->has_rule)
            return rule_offset(&z->rule, t);
        if (z->ntrans == 0)
            return z->type_off[0];
        return z->type_off[z->trans_type[z->ntrans - 1]];
    }
    if (t < z->trans[0])
        return z->type_off[0];
    size_t lo = 0, hi = z->ntrans - 1; /* trans[lo] <= t < trans[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (z->trans[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return z->type_off[z->trans_type[lo]];
}

vb_tz_local_kind vb_tz_from_local(const vb_tz *z, long long local, time_t *first,
                                  time_t *second)
{
    time_t dummy;
    if (!second)
        second = &dummy;
    long oa = vb_tz_offset_at(z, (time_t)(local - TZ_PROBE));
    long ob = vb_tz_offset_at(z, (time_t)(local + TZ_PROBE));
    time_t ta = (time_t)(local - oa), tb = (time_t)(local - ob);
    int va = vb_tz_offset_at(z, ta) == oa;
    int vb = ob != oa && vb_tz_offset_at(z, tb) == ob;
    if (va && vb) {
        *first = ta < tb ? ta : tb;
        *second = ta < tb ? tb : ta;
        return VB_TZ_LOCAL_REPEATED;
    }
    if (va || vb) {
        *first = *second = va ? ta : tb;
        return VB_TZ_LOCAL_UNIQUE;
    }
    if (ob > oa) {
        /* Spring forward: the offset changes somewhere in (tb, ta]; the wall
         * time falls in the gap, so the answer is the instant of the change. */
        time_t lo = tb, hi = ta;
        long before = vb_tz_offset_at(z, lo);
        while (hi - lo > 1) {
            time_t mid = lo + (hi - lo) / 2;
            if (vb_tz_offset_at(z, mid) == before)
                lo = mid;
            else
                hi = mid;
        }
        *first = *second = hi;
        return VB_TZ_LOCAL_SKIPPED;
    }
    /* Two changes within the probe window; no modern zone does this. */
    *first = *second = ta;
    return VB_TZ_LOCAL_UNIQUE;
}
