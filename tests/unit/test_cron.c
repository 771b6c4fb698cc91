/*
 * Unit tests of cron.c and tz.c: parsing and its error messages, the Vixie
 * day rule, daylight-saving behaviour, the RFC 3339 formatters, and every row
 * of tests/data/cron_reference.tsv (expected next fire times computed by
 * tests/tools/gen_cron_reference.py, independently of this code).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "visionbatch/cron.h"
#include "visionbatch/tz.h"

/* "2025-03-09T07:00:00Z" -> time_t; fails the test on a malformed value. */
static time_t utc(const char *s)
{
    long long y = 0; /* set: cmocka's fail_msg() is not declared noreturn */
    int mo = 0, d = 0, h = 0, mi = 0, sec = 0;
    char z = 0;
    if (strlen(s) != 20 || sscanf(s, "%lld-%d-%dT%d:%d:%d%c", &y, &mo, &d, &h, &mi, &sec, &z) != 7 || z != 'Z')
        fail_msg("bad timestamp '%s'", s);
    return (time_t)(vb_tz_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec);
}

static vb_cron parse_ok(const char *expr)
{
    vb_cron c;
    char err[160];
    if (vb_cron_parse(expr, &c, err, sizeof err) != VB_OK)
        fail_msg("'%s' rejected: %s", expr, err);
    return c;
}

/* Asserts the next fire time of expr in tz after `after` (all RFC 3339). */
static void expect_next(const char *expr, const char *tz, const char *after, const char *want)
{
    vb_cron c = parse_ok(expr);
    time_t next = 0;
    vb_err rc = vb_cron_next(&c, tz, utc(after), &next);
    char got[VB_TIME_STR_MAX] = "NOT_FOUND";
    if (rc == VB_OK)
        vb_time_format_rfc3339_utc(next, got, sizeof got);
    if (strcmp(got, want) != 0)
        fail_msg("'%s' in %s after %s: want %s, got %s (rc %d)", expr, tz, after, want, got,
                 rc);
}

static void expect_error(const char *expr, const char *want)
{
    vb_cron c;
    char err[160] = "";
    if (vb_cron_parse(expr, &c, err, sizeof err) != VB_ERR_INVALID)
        fail_msg("'%s' accepted, expected error '%s'", expr, want);
    if (strcmp(err, want) != 0)
        fail_msg("'%s': want error '%s', got '%s'", expr, want, err);
}

/* ---- parsing ------------------------------------------------------------ */

static void cron_rejects_step_zero(void **state)
{
    expect_error("*/0 * * * *", "minute: step 0 is invalid");
    expect_error("0 1-5/0 * * *", "hour: step 0 is invalid");
}

static void cron_errors_name_the_field(void **state)
{
    static const char *const cases[][2] = {
        {"* * * * 8", "day-of-week: value 8 out of range 0-7"},
        {"60 * * * *", "minute: value 60 out of range 0-59"},
        {"0 24 * * *", "hour: value 24 out of range 0-23"},
        {"0 0 0 * *", "day-of-month: value 0 out of range 1-31"},
        {"0 0 32 * *", "day-of-month: value 32 out of range 1-31"},
        {"0 0 * 13 *", "month: value 13 out of range 1-12"},
        {"0 0 * 0 *", "month: value 0 out of range 1-12"},
        {"0 5-3 * * *", "hour: range 5-3 is reversed"},
        {"0 0 * * FRI-MON", "day-of-week: range 5-1 is reversed"},
        {"* * * * * *", "expected 5 fields, got 6"},
        {"* * * *", "expected 5 fields, got 4"},
        {"1,,2 * * * *", "minute: empty list item"},
        {"1, * * * *", "minute: empty list item"},
        {",1 * * * *", "minute: empty list item"},
        {"1x * * * *", "minute: unexpected 'x' in '1x'"},
        {"0 0 * * 1;", "day-of-week: unexpected ';' in '1;'"},
        {"*-5 * * * *", "minute: unexpected '-' in '*-5'"},
        {"0 0 * FOO *", "month: unknown name 'FOO'"},
        {"0 0 * * MONDAY", "day-of-week: unknown name 'MONDAY'"},
        {"0 jan * * *", "hour: names are not allowed here ('jan')"},
        {"*/61 * * * *", "minute: step 61 out of range 1-60"},
        {"*/x * * * *", "minute: step must be a number"},
        {"1- * * * *", "minute: missing value"},
        {"99999999999 * * * *", "minute: value 99999999999 out of range 0-59"},
        {"99999999999999 * * * *", "minute: value 999999999999... out of range 0-59"},
        {"0 0 * * 008", "day-of-week: value 008 out of range 0-7"},
        {"", "empty expression"},
        {"   ", "empty expression"},
        {"0 0 * * *\n", "invalid character 0x0a at position 10"},
        {"@daily 0", "@daily takes no fields"},
        {"@often", "unknown macro '@often' (use @yearly, @annually, @monthly, @weekly, "
                   "@daily, @midnight or @hourly)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_error(cases[i][0], cases[i][1]);
}

static void cron_rejects_reboot_with_message(void **state)
{
    expect_error("@reboot", "@reboot is not supported: a schedule needs a time of day");
    expect_error("@REBOOT", "@reboot is not supported: a schedule needs a time of day");
}

/* Builds "0,0,...,0 * * * *" of exactly `len` characters (len odd, >= 17). */
static void long_expr(char *buf, size_t len)
{
    size_t list = len - 8; /* " * * * *" */
    for (size_t i = 0; i < list; i++)
        buf[i] = i % 2 ? ',' : '0';
    memcpy(buf + list, " * * * *", 9);
}

static void cron_rejects_overlong_input(void **state)
{
    char expr[400];
    vb_cron c;
    char err[160];
    long_expr(expr, 255);
    assert_int_equal(strlen(expr), 255);
    assert_int_equal(vb_cron_parse(expr, &c, err, sizeof err), VB_OK);
    long_expr(expr, 257);
    assert_int_equal(vb_cron_parse(expr, &c, err, sizeof err), VB_ERR_INVALID);
    assert_string_equal(err, "expression longer than 256 characters");
}

static void cron_parse_failure_leaves_output_untouched(void **state)
{
    vb_cron c = parse_ok("5 4 * * *");
    vb_cron before = c;
    char err[8]; /* deliberately short: message is truncated, not overflowed */
    assert_int_equal(vb_cron_parse("5 4 * * 9", &c, err, sizeof err), VB_ERR_INVALID);
    assert_memory_equal(&c, &before, sizeof c);
    assert_int_equal(strlen(err), sizeof err - 1);
    assert_int_equal(vb_cron_parse(NULL, &c, NULL, 0), VB_ERR_INVALID);
}

static void cron_fields_become_bit_sets(void **state)
{
    vb_cron c = parse_ok("  1,10-12,50/5\t*/6 1/10 jan-MAR,Dec mon-wed  ");
    assert_true(c.minutes == ((1ULL << 1) | (7ULL << 10) | (1ULL << 50) | (1ULL << 55)));
    assert_int_equal(c.hours, (1u << 0) | (1u << 6) | (1u << 12) | (1u << 18));
    assert_int_equal(c.days, (1u << 1) | (1u << 11) | (1u << 21) | (1u << 31));
    assert_int_equal(c.months, (1u << 1) | (1u << 2) | (1u << 3) | (1u << 12));
    assert_int_equal(c.weekdays, (1u << 1) | (1u << 2) | (1u << 3));
    assert_int_equal(c.flags, 0);
    vb_cron s = parse_ok("* * */2 * *");
    assert_int_equal(s.flags, VB_CRON_DOM_STAR | VB_CRON_DOW_STAR);
}

static void cron_sunday_is_0_and_7(void **state)
{
    vb_cron a = parse_ok("0 0 * * 0"), b = parse_ok("0 0 * * 7"), s = parse_ok("0 0 * * sun");
    assert_int_equal(a.weekdays, 1);
    assert_int_equal(b.weekdays, 1);
    assert_int_equal(s.weekdays, 1);
    assert_int_equal(parse_ok("0 0 * * 5-7").weekdays, (1u << 5) | (1u << 6) | 1u);
    /* 2025-06-15 was a Sunday. */
    expect_next("0 0 * * 7", "UTC", "2025-06-12T00:00:00Z", "2025-06-15T00:00:00Z");
    expect_next("0 0 * * 0", "UTC", "2025-06-12T00:00:00Z", "2025-06-15T00:00:00Z");
}

static void cron_monday_means_monday(void **state)
{
    /* The guide: "0 9 * * 1" is every Monday at 09:00. 2025-06-16 was a Monday. */
    expect_next("0 9 * * 1", "UTC", "2025-06-12T10:00:00Z", "2025-06-16T09:00:00Z");
    expect_next("0 9 * * MON", "UTC", "2025-06-16T09:00:00Z", "2025-06-23T09:00:00Z");
    vb_cron c = parse_ok("0 9 * * 1");
    assert_true(vb_cron_matches(&c, 2025, 6, 16, 9, 0));
    assert_false(vb_cron_matches(&c, 2025, 6, 15, 9, 0));
    assert_false(vb_cron_matches(&c, 2025, 6, 17, 9, 0));
}

static void cron_dom_dow_or_rule(void **state)
{
    /* Both restricted: the 13th OR any Friday. 2025-06-13 was a Friday,
     * 2025-07-13 a Sunday, 2025-07-04 a Friday. */
    vb_cron c = parse_ok("0 0 13 * 5");
    assert_true(vb_cron_matches(&c, 2025, 7, 13, 0, 0));
    assert_true(vb_cron_matches(&c, 2025, 7, 4, 0, 0));
    assert_false(vb_cron_matches(&c, 2025, 7, 5, 0, 0));
    expect_next("0 0 13 * 5", "UTC", "2025-07-04T00:00:00Z", "2025-07-11T00:00:00Z");
    expect_next("0 0 13 * 5", "UTC", "2025-07-11T00:00:00Z", "2025-07-13T00:00:00Z");
}

static void cron_star_step_day_field_uses_and_rule(void **state)
{
    /* "*\/2" starts with '*', so the day-of-week must also match (Vixie). */
    vb_cron c = parse_ok("0 0 */2 * 1");
    assert_true(vb_cron_matches(&c, 2025, 1, 13, 0, 0)); /* Monday, odd day */
    assert_false(vb_cron_matches(&c, 2025, 1, 6, 0, 0)); /* Monday, even day */
    assert_false(vb_cron_matches(&c, 2025, 1, 3, 0, 0)); /* odd day, Friday */
}

static void cron_macros_expand(void **state)
{
    static const char *const pairs[][2] = {
        {"@yearly", "0 0 1 1 *"},   {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
        {"@weekly", "0 0 * * 0"},   {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
        {"@hourly", "0 * * * *"},   {" @Hourly ", "0 * * * *"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        vb_cron a = parse_ok(pairs[i][0]), b = parse_ok(pairs[i][1]);
        if (memcmp(&a, &b, sizeof a) != 0)
            fail_msg("%s differs from %s", pairs[i][0], pairs[i][1]);
    }
}

/* ---- search ------------------------------------------------------------- */

static void cron_next_is_strictly_after(void **state)
{
    expect_next("0 * * * *", "UTC", "2025-06-15T10:00:00Z", "2025-06-15T11:00:00Z");
    expect_next("0 * * * *", "UTC", "2025-06-15T09:59:59Z", "2025-06-15T10:00:00Z");
    expect_next("* * * * *", "UTC", "2025-06-15T10:00:30Z", "2025-06-15T10:01:00Z");
    expect_next("*/30 * * * *", "UTC", "2025-12-31T23:59:59Z", "2026-01-01T00:00:00Z");
}

static void cron_spring_forward_fires_once_after_gap(void **state)
{
    /* New York, 2025-03-09: 02:00 EST jumps to 03:00 EDT (07:00Z). 02:30 does
     * not exist and fires at 03:00 EDT; the next day is normal again. */
    expect_next("30 2 * * *", "America/New_York", "2025-03-09T05:00:00Z",
                "2025-03-09T07:00:00Z");
    expect_next("30 2 * * *", "America/New_York", "2025-03-09T07:00:00Z",
                "2025-03-10T06:30:00Z");
    /* Every 15 minutes: 02:00, 02:15, 02:30, 02:45 collapse into the 03:00
     * firing, which happens once; then 03:15. */
    vb_cron c = parse_ok("*/15 * * * *");
    time_t out[4];
    size_t got = 0;
    assert_int_equal(vb_cron_next_n(&c, "America/New_York", utc("2025-03-09T06:30:00Z"), 4,
                                    out, &got),
                     VB_OK);
    assert_int_equal(got, 4);
    assert_int_equal(out[0], utc("2025-03-09T06:45:00Z")); /* 01:45 EST */
    assert_int_equal(out[1], utc("2025-03-09T07:00:00Z")); /* 03:00 EDT */
    assert_int_equal(out[2], utc("2025-03-09T07:15:00Z"));
    assert_int_equal(out[3], utc("2025-03-09T07:30:00Z"));
    /* Lord Howe moves 30 minutes (02:00 +10:30 -> 02:30 +11:00). */
    expect_next("15 2 * * *", "Australia/Lord_Howe", "2025-10-04T13:30:00Z",
                "2025-10-04T15:30:00Z");
}

static void cron_fall_back_fires_once(void **state)
{
    /* New York, 2025-11-02: 01:00-01:59 happens twice (EDT 05:xxZ, EST 06:xxZ). */
    vb_cron c = parse_ok("30 1 * * *");
    time_t out[2];
    size_t got = 0;
    assert_int_equal(vb_cron_next_n(&c, "America/New_York", utc("2025-11-02T04:00:00Z"), 2, out,
                                    &got),
                     VB_OK);
    assert_int_equal(out[0], utc("2025-11-02T05:30:00Z")); /* first occurrence */
    assert_int_equal(out[1], utc("2025-11-03T06:30:00Z")); /* not 06:30Z that day */
    /* Every 20 minutes: nothing fires in the second pass of the hour. */
    expect_next("*/20 * * * *", "America/New_York", "2025-11-02T05:40:00Z",
                "2025-11-02T07:00:00Z");
    expect_next("*/20 * * * *", "America/New_York", "2025-11-02T06:10:00Z",
                "2025-11-02T07:00:00Z");
    /* Berlin repeats 02:00-02:59 on 2025-10-26. */
    expect_next("30 2 * * *", "Europe/Berlin", "2025-10-25T23:00:00Z", "2025-10-26T00:30:00Z");
    expect_next("30 2 * * *", "Europe/Berlin", "2025-10-26T00:30:00Z", "2025-10-27T01:30:00Z");
}

static void cron_impossible_date_not_found(void **state)
{
    static const char *const never[] = {"0 0 30 2 *", "0 0 31 2 *", "0 0 31 4,6,9,11 *"};
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++) {
        vb_cron c = parse_ok(never[i]);
        time_t next = 12345;
        assert_int_equal(vb_cron_next(&c, "Europe/Berlin", utc("2025-01-01T00:00:00Z"), &next),
                         VB_ERR_NOT_FOUND);
        assert_int_equal(next, 12345);
    }
    /* Feb 29 is rare but possible, even across the non-leap 2100. */
    expect_next("0 0 29 2 *", "UTC", "2096-03-01T00:00:00Z", "2104-02-29T00:00:00Z");
}

static void cron_next_n_ascending_and_capped(void **state)
{
    vb_cron c = parse_ok("0 0,6,12,18 * * *");
    time_t out[VB_CRON_NEXT_MAX + 1];
    size_t got = 0;
    assert_int_equal(vb_cron_next_n(&c, "Asia/Kolkata", utc("2025-06-15T10:17:42Z"),
                                    VB_CRON_NEXT_MAX, out, &got),
                     VB_OK);
    assert_int_equal(got, VB_CRON_NEXT_MAX);
    for (size_t i = 1; i < got; i++)
        assert_int_equal(out[i] - out[i - 1], 6 * 3600);
    assert_int_equal(out[0], utc("2025-06-15T12:30:00Z")); /* 18:00 +05:30 */
    assert_int_equal(vb_cron_next_n(&c, "UTC", 0, VB_CRON_NEXT_MAX + 1, out, &got),
                     VB_ERR_INVALID);
    assert_int_equal(vb_cron_next_n(&c, "UTC", 0, 0, out, &got), VB_ERR_INVALID);
    vb_cron never = parse_ok("0 0 30 2 *");
    assert_int_equal(vb_cron_next_n(&never, "UTC", 0, 3, out, &got), VB_ERR_NOT_FOUND);
    assert_int_equal(got, 0);
}

/* Schedules whose day-of-month and day-of-week must coincide fire years or
 * decades apart; each firing is found and next_n returns as many as asked. */
static void cron_rare_schedules_have_no_horizon(void **state)
{
    expect_next("0 12 1 3 */7", "UTC", "2026-03-02T00:00:00Z", "2037-03-01T12:00:00Z");
    expect_next("0 12 29 2 */7", "UTC", "2033-01-01T00:00:00Z", "2060-02-29T12:00:00Z");
    expect_next("0 12 29 2 */7", "UTC", "2088-03-01T00:00:00Z", "2128-02-29T12:00:00Z");
    vb_cron c = parse_ok("0 12 7 1 */7");
    time_t out[VB_CRON_NEXT_MAX];
    size_t got = 0;
    assert_int_equal(vb_cron_next_n(&c, "UTC", utc("2025-06-01T00:00:00Z"), 3, out, &got), VB_OK);
    assert_int_equal(got, 3);
    assert_int_equal(out[0], utc("2029-01-07T12:00:00Z"));
    assert_int_equal(out[1], utc("2035-01-07T12:00:00Z"));
    assert_int_equal(out[2], utc("2046-01-07T12:00:00Z"));
    /* the most the API asks for, across centuries */
    c = parse_ok("0 12 29 2 */7");
    assert_int_equal(vb_cron_next_n(&c, "Europe/Berlin", utc("2025-06-01T00:00:00Z"),
                                    VB_CRON_NEXT_MAX, out, &got),
                     VB_OK);
    assert_int_equal(got, VB_CRON_NEXT_MAX);
    for (size_t i = 1; i < got; i++)
        assert_true(out[i] - out[i - 1] >= 28LL * 365 * 86400 - 86400);
    /* a field separated by tabs is the same schedule */
    vb_cron tabbed = parse_ok("0\t12\t7 1\t*/7"), spaced = parse_ok("0 12 7 1 */7");
    assert_memory_equal(&tabbed, &spaced, sizeof tabbed);
}

/* "Fires at all" is decided from the fields: for every combination below
 * (most of them rare or impossible), the answer agrees with a day-by-day walk
 * over 401 years, a whole calendar cycle. */
static void cron_never_fires_agrees_with_a_cycle_walk(void **state)
{
    static const char *const doms[] = {"29", "30", "31", "29-31", "13", "*/10", "1,31", "*/31"};
    static const char *const months[] = {"2", "2,4", "4,6,9,11", "*/5", "1", "2,11"};
    static const char *const dows[] = {"*/7", "*/3", "*/6", "*/2", "1", "*"};
    enum { ND = sizeof doms / sizeof doms[0], NM = sizeof months / sizeof months[0],
           NW = sizeof dows / sizeof dows[0] };
    unsigned seed = 4000;
    int never = 0, fired = 0;
    for (int i = 0; i < ND * NM * NW; i++) {
        char expr[96];
        snprintf(expr, sizeof expr, "0 0 %s %s %s", doms[i % ND], months[i / ND % NM],
                 dows[i / (ND * NM)]);
        vb_cron c = parse_ok(expr);
        long long day0 = vb_tz_days_from_civil(2025, 1, 1) + rand_r(&seed) % 3650;
        time_t after = (time_t)(day0 * 86400 + 1); /* just after a midnight */
        time_t want = -1;
        for (long long d = day0 + 1; d <= day0 + 401LL * 366 && want < 0; d++) {
            long long y;
            int mo, dd;
            vb_tz_civil_from_days(d, &y, &mo, &dd);
            if (vb_cron_matches(&c, y, mo, dd, 0, 0))
                want = (time_t)(d * 86400);
        }
        time_t got = -1;
        vb_err rc = vb_cron_next(&c, "UTC", after, &got);
        if (want < 0 ? rc != VB_ERR_NOT_FOUND : rc != VB_OK || got != want)
            fail_msg("'%s' after %lld: walk %lld, search %lld (rc %d)", expr, (long long)after,
                     (long long)want, (long long)got, rc);
        want < 0 ? never++ : fired++;
    }
    print_message("%d schedules never fire, %d fire\n", never, fired);
    assert_true(never >= 20 && fired >= 100); /* both outcomes are exercised */
}

static void cron_next_rejects_bad_zone_and_range(void **state)
{
    vb_cron c = parse_ok("0 * * * *");
    time_t next;
    assert_int_equal(vb_cron_next(&c, "Mars/Olympus_Mons", 0, &next), VB_ERR_INVALID);
    assert_int_equal(vb_cron_next(&c, "../../etc/passwd", 0, &next), VB_ERR_INVALID);
    assert_int_equal(vb_cron_next(&c, NULL, 0, &next), VB_OK); /* NULL = UTC */
    assert_int_equal(next, 3600);
    assert_int_equal(vb_cron_next(&c, "UTC", (time_t)1 << 62, &next), VB_ERR_INVALID);
    assert_int_equal(vb_cron_next(&c, "UTC", -((time_t)1 << 62), &next), VB_ERR_INVALID);
}

/* Everyday schedules find their next time in every zone, and the slowest
 * kinds answer: never-firing schedules are recognised, the rarest firing
 * one is found decades ahead. (Their cost is tests/bench/bench_cron_next.c.) */
static void cron_next_answers_everyday_and_rarest_schedules(void **state)
{
    static const char *const exprs[] = {"0 * * * *", "0 9 * * 1", "*/30 * * * *",
                                        "0 0 29 2 *", "30 2 * * *", "0 0 13 * 5"};
    static const char *const zones[] = {"UTC", "America/New_York", "Australia/Lord_Howe"};
    for (size_t e = 0; e < sizeof exprs / sizeof exprs[0]; e++) {
        vb_cron c = parse_ok(exprs[e]);
        for (size_t z = 0; z < sizeof zones / sizeof zones[0]; z++) {
            for (int i = 0; i < 500; i++) {
                time_t next, after = 1735689600 + (time_t)i * 86413;
                assert_int_equal(vb_cron_next(&c, zones[z], after, &next), VB_OK);
                assert_true(next > after);
                assert_true(next - after <= 4 * 366 * 86400 + 86400); /* Feb 29 at most 8 y */
            }
        }
    }
    static const char *const never[] = {"* * 31 2,4,6,9,11 *", "0 0 30 2 *",
                                        "59 23 31 2,4,6,9,11 */7"};
    for (size_t e = 0; e < sizeof never / sizeof never[0]; e++) {
        vb_cron c = parse_ok(never[e]);
        time_t next;
        assert_int_equal(vb_cron_next(&c, "America/New_York", utc("2088-03-01T00:00:00Z"),
                                      &next),
                         VB_ERR_NOT_FOUND);
    }
    expect_next("59 23 29 2 */7", "UTC", "2088-03-01T00:00:00Z", "2128-02-29T23:59:00Z");
}

/* A random field: '*', a value, a range, a step or a list of those. */
static void random_field(char *buf, size_t len, int lo, int hi, unsigned *seed)
{
    int kind = rand_r(seed) % 6;
    int a = lo + rand_r(seed) % (hi - lo + 1), b = lo + rand_r(seed) % (hi - lo + 1);
    if (a > b) {
        int t = a;
        a = b;
        b = t;
    }
    int step = 1 + rand_r(seed) % 7;
    switch (kind) {
    case 0: snprintf(buf, len, "*"); break;
    case 1: snprintf(buf, len, "%d", a); break;
    case 2: snprintf(buf, len, "%d-%d", a, b); break;
    case 3: snprintf(buf, len, "*/%d", step); break;
    case 4: snprintf(buf, len, "%d-%d/%d", a, b, step); break;
    default: snprintf(buf, len, "%d,%d", a, b); break;
    }
}

/* The field-skipping search agrees with a minute-by-minute walk over wall
 * clock time (same zone mapping) for random schedules. */
static void cron_search_agrees_with_brute_force(void **state)
{
    static const char *const zones[] = {"UTC", "America/New_York", "Australia/Lord_Howe"};
    unsigned seed = 20250615;
    int compared = 0;
    const long long horizon = 40LL * 1440; /* minutes walked by the brute force */
    for (int round = 0; round < 150; round++) {
        char f[5][32], expr[200];
        random_field(f[0], sizeof f[0], 0, 59, &seed);
        random_field(f[1], sizeof f[1], 0, 23, &seed);
        random_field(f[2], sizeof f[2], 1, 31, &seed);
        random_field(f[3], sizeof f[3], 1, 12, &seed);
        if (rand_r(&seed) % 2) /* keep most schedules firing within the window */
            snprintf(f[3], sizeof f[3], "*");
        random_field(f[4], sizeof f[4], 0, 7, &seed);
        snprintf(expr, sizeof expr, "%s %s %s %s %s", f[0], f[1], f[2], f[3], f[4]);
        vb_cron c = parse_ok(expr);
        const char *zn = zones[round % 3];
        const vb_tz *z;
        assert_int_equal(vb_tz_load(zn, &z, NULL), VB_OK);
        /* Start somewhere in 2025-2026, often near a DST change. */
        time_t after = 1735689600 + (time_t)(rand_r(&seed) % (730 * 86400));
        long long wall0 = ((long long)after + vb_tz_offset_at(z, after)) / 60 + 1;
        time_t want = -1;
        for (long long m = wall0; m < wall0 + horizon && want < 0; m++) {
            long long days = m / 1440, y;
            int mo, d;
            vb_tz_civil_from_days(days, &y, &mo, &d);
            if (!vb_cron_matches(&c, y, mo, d, (int)(m % 1440 / 60), (int)(m % 60)))
                continue;
            time_t first;
            vb_tz_from_local(z, m * 60, &first, NULL);
            if (first > after)
                want = first;
        }
        time_t got = -1;
        vb_err rc = vb_cron_next(&c, zn, after, &got);
        if (want >= 0) {
            compared++;
            if (rc != VB_OK || got != want)
                fail_msg("'%s' %s after %lld: brute force %lld, search %lld (rc %d)", expr, zn,
                         (long long)after, (long long)want, (long long)got, rc);
        } else if (rc == VB_OK && got < after + (horizon - 1500) * 60) {
            fail_msg("'%s' %s after %lld: search found %lld, brute force nothing", expr, zn,
                     (long long)after, (long long)got);
        }
    }
    print_message("%d of 150 random schedules fired within the brute-force window\n", compared);
    assert_true(compared >= 90); /* the comparison must not be vacuous */
}

/* ---- zones and formatting ------------------------------------------------ */

static void tz_valid_accepts_iana_names_and_utc(void **state)
{
    assert_true(vb_tz_valid("UTC"));
    assert_true(vb_tz_valid("Europe/Berlin"));
    assert_true(vb_tz_valid("America/New_York"));
    assert_true(vb_tz_valid("Asia/Kolkata"));
    assert_true(vb_tz_valid("Australia/Lord_Howe"));
    assert_true(vb_tz_valid("Etc/GMT+5"));
}

static void tz_valid_rejects_traversal_and_junk(void **state)
{
    static const char *const bad[] = {"",
                                      "../etc/passwd",
                                      "Europe/../../etc/passwd",
                                      "/etc/localtime",
                                      "/usr/share/zoneinfo/UTC",
                                      "Europe/",
                                      "Europe//Berlin",
                                      "./UTC",
                                      "Europe/Berlin ",
                                      "Europe/Atlantis",
                                      "zone.tab",
                                      "Europe",
                                      "right/UTC"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (vb_tz_valid(bad[i]))
            fail_msg("'%s' accepted as a time zone", bad[i]);
    assert_false(vb_tz_valid(NULL));
    vb_error err = {0};
    const vb_tz *z = NULL;
    assert_int_equal(vb_tz_load("Europe/Atlantis", &z, &err), VB_ERR_INVALID);
    assert_null(z);
    assert_string_equal(err.msg, "unknown time zone 'Europe/Atlantis'");
}

static void tz_offsets_follow_rules_beyond_the_file(void **state)
{
    const vb_tz *ny, *lh;
    assert_int_equal(vb_tz_load("America/New_York", &ny, NULL), VB_OK);
    assert_int_equal(vb_tz_load("Australia/Lord_Howe", &lh, NULL), VB_OK);
    assert_string_equal(vb_tz_name(ny), "America/New_York");
    assert_int_equal(vb_tz_offset_at(ny, utc("2025-01-15T12:00:00Z")), -5 * 3600);
    assert_int_equal(vb_tz_offset_at(ny, utc("2025-07-15T12:00:00Z")), -4 * 3600);
    /* 2090 lies past the last transition stored in the file: the POSIX rule. */
    assert_int_equal(vb_tz_offset_at(ny, utc("2090-01-15T12:00:00Z")), -5 * 3600);
    assert_int_equal(vb_tz_offset_at(ny, utc("2090-07-15T12:00:00Z")), -4 * 3600);
    assert_int_equal(vb_tz_offset_at(ny, utc("2090-03-12T06:59:59Z")), -5 * 3600);
    assert_int_equal(vb_tz_offset_at(ny, utc("2090-03-12T07:00:00Z")), -4 * 3600);
    assert_int_equal(vb_tz_offset_at(lh, utc("2090-01-15T12:00:00Z")), 11 * 3600);
    assert_int_equal(vb_tz_offset_at(lh, utc("2090-07-15T12:00:00Z")), 10 * 3600 + 1800);
}

static void tz_from_local_classifies_gap_and_repeat(void **state)
{
    const vb_tz *ny;
    assert_int_equal(vb_tz_load("America/New_York", &ny, NULL), VB_OK);
    time_t a, b;
    long long gap = vb_tz_days_from_civil(2025, 3, 9) * 86400 + 2 * 3600 + 30 * 60;
    assert_int_equal(vb_tz_from_local(ny, gap, &a, &b), VB_TZ_LOCAL_SKIPPED);
    assert_int_equal(a, utc("2025-03-09T07:00:00Z"));
    long long rep = vb_tz_days_from_civil(2025, 11, 2) * 86400 + 1 * 3600 + 30 * 60;
    assert_int_equal(vb_tz_from_local(ny, rep, &a, &b), VB_TZ_LOCAL_REPEATED);
    assert_int_equal(a, utc("2025-11-02T05:30:00Z"));
    assert_int_equal(b, utc("2025-11-02T06:30:00Z"));
    long long plain = vb_tz_days_from_civil(2025, 6, 1) * 86400;
    assert_int_equal(vb_tz_from_local(ny, plain, &a, NULL), VB_TZ_LOCAL_UNIQUE);
    assert_int_equal(a, utc("2025-06-01T04:00:00Z"));
}

static void time_formats_rfc3339(void **state)
{
    char buf[VB_TIME_STR_MAX];
    assert_int_equal(vb_time_format_rfc3339_utc(0, buf, sizeof buf), VB_OK);
    assert_string_equal(buf, "1970-01-01T00:00:00Z");
    assert_int_equal(vb_time_format_rfc3339_utc(utc("2024-02-29T23:59:59Z"), buf, sizeof buf),
                     VB_OK);
    assert_string_equal(buf, "2024-02-29T23:59:59Z");
    assert_int_equal(vb_time_format_rfc3339_utc(-1, buf, sizeof buf), VB_OK);
    assert_string_equal(buf, "1969-12-31T23:59:59Z");
    time_t t = utc("2025-03-09T07:00:00Z");
    assert_int_equal(vb_time_format_rfc3339_local(t, "America/New_York", buf, sizeof buf), VB_OK);
    assert_string_equal(buf, "2025-03-09T03:00:00-04:00");
    assert_int_equal(vb_time_format_rfc3339_local(t, "Asia/Kolkata", buf, sizeof buf), VB_OK);
    assert_string_equal(buf, "2025-03-09T12:30:00+05:30");
    assert_int_equal(vb_time_format_rfc3339_local(t, NULL, buf, sizeof buf), VB_OK);
    assert_string_equal(buf, "2025-03-09T07:00:00+00:00");
    /* Local mean time (not whole minutes) falls back to the UTC form. */
    assert_int_equal(vb_time_format_rfc3339_local(utc("1850-01-01T00:00:00Z"), "Europe/Berlin",
                                                  buf, sizeof buf),
                     VB_OK);
    assert_string_equal(buf, "1850-01-01T00:00:00Z");
    char small[20];
    assert_int_equal(vb_time_format_rfc3339_utc(t, small, sizeof small), VB_ERR_TOO_LARGE);
    assert_string_equal(small, "");
    assert_int_equal(vb_time_format_rfc3339_local(t, "Nowhere/Land", buf, sizeof buf),
                     VB_ERR_INVALID);
}

/* Concurrent searches in different zones give the same answers as serial
 * ones: nothing process-global (TZ, tzset) is touched. */
#define TC_THREADS 4
#define TC_ROUNDS 300
static const char *const tc_zones[TC_THREADS] = {"America/New_York", "Europe/Berlin",
                                                 "Asia/Kolkata", "Australia/Lord_Howe"};
static time_t tc_serial[TC_THREADS][TC_ROUNDS];
static time_t tc_parallel[TC_THREADS][TC_ROUNDS];

static void tc_fill(int zi, time_t out[TC_ROUNDS])
{
    vb_cron c = parse_ok("*/7 1-3 * * *");
    for (int i = 0; i < TC_ROUNDS; i++)
        if (vb_cron_next(&c, tc_zones[zi], 1740000000 + (time_t)i * 7919 * 11, &out[i]) != VB_OK)
            out[i] = -1;
}

static void *tc_worker(void *arg)
{
    int zi = (int)(intptr_t)arg;
    tc_fill(zi, tc_parallel[zi]);
    return NULL;
}

static void cron_is_thread_safe_across_zones(void **state)
{
    vb_tz_cache_clear(); /* make the threads race on loading, too */
    pthread_t th[TC_THREADS];
    for (int i = 0; i < TC_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, tc_worker, (void *)(intptr_t)i), 0);
    for (int i = 0; i < TC_THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < TC_THREADS; i++)
        tc_fill(i, tc_serial[i]);
    assert_memory_equal(tc_serial, tc_parallel, sizeof tc_serial);
    assert_true(tc_serial[0][0] > 0);
}

/* ---- the reference table ------------------------------------------------- */

static void cron_matches_reference_table(void **state)
{
    const char *dir = getenv("VB_TEST_DATA");
    assert_non_null(dir);
    char path[1024];
    snprintf(path, sizeof path, "%s/cron_reference.tsv", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    char line[1024];
    int rows = 0, bad = 0, lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        char *col[7] = {0};
        int n = 0;
        for (char *p = line; n < 7; n++) {
            col[n] = p;
            char *tab = strchr(p, '\t');
            if (!tab) {
                n++;
                break;
            }
            *tab = '\0';
            p = tab + 1;
        }
        if (n < 5)
            fail_msg("%s:%d: expected at least 5 columns", path, lineno);
        const char *expr = col[0], *tz = col[1], *after = col[2], *want = col[3],
                   *want_local = col[4];
        rows++;
        vb_cron c;
        char err[160];
        if (vb_cron_parse(expr, &c, err, sizeof err) != VB_OK) {
            print_error("line %d: '%s' rejected: %s\n", lineno, expr, err);
            bad++;
            continue;
        }
        time_t next = 0;
        vb_err rc = vb_cron_next(&c, tz, utc(after), &next);
        char got[VB_TIME_STR_MAX] = "NOT_FOUND", got_local[VB_TIME_STR_MAX] = "-";
        if (rc == VB_OK) {
            vb_time_format_rfc3339_utc(next, got, sizeof got);
            vb_time_format_rfc3339_local(next, tz, got_local, sizeof got_local);
        }
        if (strcmp(got, want) != 0 || strcmp(got_local, want_local) != 0) {
            print_error("line %d: '%s' %s after %s: want %s (%s), got %s (%s) [%s]\n", lineno,
                        expr, tz, after, want, want_local, got, got_local,
                        col[6] ? col[6] : "");
            bad++;
        }
    }
    fclose(f);
    print_message("reference table: %d rows, %d mismatches\n", rows, bad);
    assert_true(rows >= 150);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cron_rejects_step_zero),
        cmocka_unit_test(cron_errors_name_the_field),
        cmocka_unit_test(cron_rejects_reboot_with_message),
        cmocka_unit_test(cron_rejects_overlong_input),
        cmocka_unit_test(cron_parse_failure_leaves_output_untouched),
        cmocka_unit_test(cron_fields_become_bit_sets),
        cmocka_unit_test(cron_sunday_is_0_and_7),
        cmocka_unit_test(cron_monday_means_monday),
        cmocka_unit_test(cron_dom_dow_or_rule),
        cmocka_unit_test(cron_star_step_day_field_uses_and_rule),
        cmocka_unit_test(cron_macros_expand),
        cmocka_unit_test(cron_next_is_strictly_after),
        cmocka_unit_test(cron_spring_forward_fires_once_after_gap),
        cmocka_unit_test(cron_fall_back_fires_once),
        cmocka_unit_test(cron_impossible_date_not_found),
        cmocka_unit_test(cron_next_n_ascending_and_capped),
        cmocka_unit_test(cron_rare_schedules_have_no_horizon),
        cmocka_unit_test(cron_never_fires_agrees_with_a_cycle_walk),
        cmocka_unit_test(cron_next_rejects_bad_zone_and_range),
        cmocka_unit_test(cron_next_answers_everyday_and_rarest_schedules),
        cmocka_unit_test(cron_search_agrees_with_brute_force),
        cmocka_unit_test(tz_valid_accepts_iana_names_and_utc),
        cmocka_unit_test(tz_valid_rejects_traversal_and_junk),
        cmocka_unit_test(tz_offsets_follow_rules_beyond_the_file),
        cmocka_unit_test(tz_from_local_classifies_gap_and_repeat),
        cmocka_unit_test(time_formats_rfc3339),
        cmocka_unit_test(cron_is_thread_safe_across_zones),
        cmocka_unit_test(cron_matches_reference_table),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    vb_tz_cache_clear();
    return rc;
}
