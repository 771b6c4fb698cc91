#!/usr/bin/env python3
"""Generates tests/data/cron_reference.tsv, the reference table of next fire times.

The table is committed; this script only documents and reproduces it. It is
not a build or test dependency. To regenerate:

    python3 -m venv /tmp/cronref
    /tmp/cronref/bin/pip install croniter       # brings python-dateutil
    /tmp/cronref/bin/python tests/tools/gen_cron_reference.py > tests/data/cron_reference.tsv

Every row is computed twice, independently of the C code:

  croniter  croniter (an established Python cron library) with a zone-aware
            start time, its default settings.
  rule      the rules documented in include/visionbatch/cron.h: croniter on
            naive wall-clock times (so it only does field matching, with the
            Vixie day rule selected through its day_or flag), then our
            daylight-saving mapping done with the standard zoneinfo module:
            a repeated wall time fires at its first occurrence only, a
            skipped wall time fires at the instant the gap ends.

Where both agree the row's source is "croniter". Where they differ (croniter
fires twice in a repeated hour, or treats a day-of-month like "*/2" as
restricted for the Vixie OR rule) the expectation follows our rule, the
source is "rule" and the comment records what croniter said.

Columns (tab-separated; lines starting with '#' are comments):
  expr  tz  after  expected  expected_local  source  comment
`after` and `expected` are RFC 3339 UTC; `expected` is NOT_FOUND when nothing
fires within one 400-year cycle of the Gregorian calendar, after which every
date falls on the same weekday again (so nothing ever fires); `expected_local` is the same instant as wall
time in `tz` with its offset (what vb_time_format_rfc3339_local writes).
"""
import sys
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from croniter import croniter, CroniterBadDateError

UTC = timezone.utc
MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
HORIZON_YEARS = 400  # VB_CRON_CYCLE_YEARS: the calendar repeats, so this is "never"


def parse_utc(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC)


def fmt_utc(d):
    return d.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_local(d, tz):
    loc = d.astimezone(ZoneInfo(tz))
    off = int(loc.utcoffset().total_seconds())
    sign = "-" if off < 0 else "+"
    off = abs(off)
    return loc.strftime("%Y-%m-%dT%H:%M:%S") + "%s%02d:%02d" % (sign, off // 3600, off // 60 % 60)


def first_instant(naive, z):
    """Earliest instant showing wall time `naive`, or the gap's end if skipped."""
    early = naive.replace(tzinfo=z, fold=0).astimezone(UTC)
    if early.astimezone(z).replace(tzinfo=None) == naive:
        return early  # fold=0 is the first occurrence of a repeated time
    # Skipped: the change happens between naive-offset_after and naive-offset_before.
    lo = naive.replace(tzinfo=z, fold=1).astimezone(UTC)
    hi = early
    if lo > hi:
        lo, hi = hi, lo
    before = lo.astimezone(z).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid.astimezone(z).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi


def vixie_day_or(expr):
    fields = MACROS.get(expr.lower(), expr).split()
    return not (fields[2].startswith("*") or fields[4].startswith("*"))


def by_rule(expr, tz, after):
    z = ZoneInfo(tz)
    wall = after.astimezone(z).replace(tzinfo=None)
    limit = wall.year + HORIZON_YEARS
    it = croniter(MACROS.get(expr.lower(), expr), wall, day_or=vixie_day_or(expr),
                  max_years_between_matches=HORIZON_YEARS)
    for _ in range(5000):
        try:
            cand = it.get_next(datetime)
        except CroniterBadDateError:
            return None
        if cand.year > limit:
            return None
        inst = first_instant(cand, z)
        if inst > after:
            return inst
    raise RuntimeError("no answer for %s %s %s" % (expr, tz, after))


def by_croniter(expr, tz, after):
    z = ZoneInfo(tz)
    try:
        it = croniter(expr, after.astimezone(z), max_years_between_matches=HORIZON_YEARS)
        nxt = it.get_next(datetime).astimezone(UTC)
    except CroniterBadDateError:
        return None
    if nxt.astimezone(z).year > after.astimezone(z).year + HORIZON_YEARS:
        return None
    return nxt


ROWS = []


def row(expr, tz, after, note=""):
    ROWS.append((expr, tz, after, note))


def chain(expr, tz, after, count, note=""):
    """`count` consecutive rows, each starting where the previous one fired."""
    t = parse_utc(after)
    for i in range(count):
        row(expr, tz, fmt_utc(t), "%s #%d" % (note, i + 1) if note else "")
        nxt = by_rule(expr, tz, t)
        if nxt is None:
            break
        t = nxt


def build():
    # The guide's examples, in several zones and around several start times.
    guide = ["0 * * * *", "0 2 * * *", "*/30 * * * *", "0 0,6,12,18 * * *", "0 9 * * 1"]
    for expr in guide:
        for tz in ["UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata"]:
            for after in ["2025-06-15T10:17:42Z", "2025-12-31T23:59:59Z"]:
                row(expr, tz, after, "guide example")
    row("0 9 * * 1", "UTC", "2025-06-16T09:00:00Z", "Monday 09:00 exactly: strictly after")
    row("0 9 * * 1", "UTC", "2025-06-16T08:59:59Z", "one second before Monday 09:00")
    row("0 * * * *", "UTC", "2025-06-15T10:00:00Z", "on the boundary: next hour")
    row("*/30 * * * *", "UTC", "2025-06-15T10:29:59Z", "")

    # Field syntax: names, ranges, steps, lists, 7 = Sunday.
    syntax = [
        "* * * * *", "5 4 * * *", "0 22 * * 1-5", "23 0-20/2 * * *", "5 4 * * sun",
        "0 0 * * 7", "0 0 * * 5-7", "0 0 * * 0,7", "0 12 * JAN,jul *", "0 0 1 FEB-APR *",
        "0 0 * * MON-FRI", "0 0 * * mon,Wed,FRI", "15,45 */4 * * *", "0 0 1/10 * *",
        "10/15 * * * *", "0 1-23/6 * * *", "0 0 1 */3 *", "0 0 * * */2", "0 0 * * 1/2",
        "59 23 * * *", "0 0 1 jan *", "0 6 * * sat,SUN", "7 7 7 7 *", "0-5 12 * * *",
        "*/7 * * * *", "0 */5 * * *", "1,2,3,58,59 * * * *", "0 0 2 * *",
    ]
    for expr in syntax:
        for after in ["2025-06-15T10:17:42Z", "2025-02-27T23:30:00Z"]:
            row(expr, "UTC", after, "syntax")

    # Vixie day rule: both restricted = OR; a '*'-started field = AND.
    for expr, note in [
        ("0 0 13 * 5", "OR: every 13th and every Friday"),
        ("0 0 1,15 * 3", "OR: 1st, 15th and Wednesdays"),
        ("0 0 */2 * 1", "'*/2' day-of-month counts as '*': odd days that are Mondays"),
        ("0 0 * * 1", "day-of-month '*': Mondays only"),
        ("0 0 1 * *", "day-of-week '*': 1st only"),
        ("0 0 29 2 1", "OR: Feb 29 or any Monday in February"),
        ("0 0 31 * 0", "OR: 31st or Sundays"),
        ("0 0 1-7 * */7", "'*/7' day-of-week counts as '*': Sunday in the first week"),
    ]:
        for after in ["2025-01-01T00:00:00Z", "2025-06-15T10:17:42Z", "2028-02-20T00:00:00Z"]:
            row(expr, "UTC", after, note)

    # Leap years, month ends, year boundary.
    for expr, after, note in [
        ("0 0 29 2 *", "2025-01-01T00:00:00Z", "next Feb 29 is 2028"),
        ("0 0 29 2 *", "2028-02-29T00:00:00Z", "after a Feb 29: 2032"),
        ("0 0 29 2 *", "2096-03-01T00:00:00Z", "2100 is not a leap year: 2104"),
        ("0 12 28-29 2 *", "2027-02-28T13:00:00Z", "Feb 28-29 in a non-leap year: Feb 28 of 2028"),
        ("0 0 31 * *", "2025-04-01T00:00:00Z", "skips 30-day months"),
        ("0 0 31 * *", "2025-01-31T00:00:00Z", "Jan 31 -> Mar 31"),
        ("0 0 30 * *", "2025-01-30T00:00:00Z", "skips February"),
        ("0 0 31 4,6,9,11 *", "2025-01-01T00:00:00Z", "never: 30-day months have no 31st"),
        ("0 0 30 2 *", "2025-01-01T00:00:00Z", "never: Feb 30"),
        ("0 0 31 2 *", "2025-01-01T00:00:00Z", "never: Feb 31"),
        ("0 0 1 1 *", "2025-12-31T23:59:59Z", "year boundary"),
        ("59 23 31 12 *", "2025-12-31T23:59:00Z", "last minute of the year, just fired"),
        ("59 23 31 12 *", "2025-06-01T00:00:00Z", ""),
        ("0 0 1 1 *", "2025-12-31T18:29:59Z", "year boundary in Kolkata is 18:30Z"),
        ("* * * * *", "2025-12-31T23:59:59Z", "every minute across new year"),
        ("0 0 28-31 * *", "2025-02-27T00:00:00Z", "month-end range"),
        ("0 12 29 2 */7", "2088-03-01T00:00:00Z", "Feb 29 on a Sunday: 40 years to 2128"),
        ("0 0 31 2,4,6,9,11 */7", "2025-01-01T00:00:00Z", "never, with a day-of-week too"),
    ]:
        for tz in (["UTC", "Asia/Kolkata"] if "Kolkata" in note else ["UTC"]):
            row(expr, tz, after, note)

    # Rare schedules: the day-of-month and day-of-week must coincide (AND rule),
    # years or decades apart; every firing is found, one after the other.
    for expr, note in [
        ("0 12 1 3 */7", "Mar 1 on a Sunday"),
        ("0 12 29 2 */7", "Feb 29 on a Sunday"),
        ("0 12 7 1 */7", "Jan 7 on a Sunday"),
        ("0 0 29 2 */7", "Feb 29 on a Sunday, midnight"),
    ]:
        chain(expr, "UTC", "2025-06-01T00:00:00Z", 4, note)
    chain("0 12 29 2 */7", "Europe/Berlin", "2025-06-01T00:00:00Z", 3, "Feb 29 on a Sunday")

    # Macros.
    for m in ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly",
              "@DAILY"]:
        for tz, after in [("UTC", "2025-06-15T10:17:42Z"), ("Europe/Berlin", "2025-12-31T22:59:59Z")]:
            row(m, tz, after, "macro")

    # Zones without DST and half-hour offsets.
    for expr in ["0 0 * * *", "30 5 * * *", "0 9 * * 1-5", "*/45 * * * *"]:
        for tz in ["Asia/Kolkata", "Australia/Lord_Howe"]:
            row(expr, tz, "2025-07-01T00:00:00Z", "offset zone")

    # Daylight saving: both transitions of three zones, starting just before,
    # inside the gap and inside the repeated hour, and chained runs.
    dst = [
        # zone, spring-forward day (local), gap wall time, fall-back day, repeated wall time
        ("America/New_York", "2025-03-09", "02", "2025-11-02", "01"),
        ("Europe/Berlin", "2025-03-30", "02", "2025-10-26", "02"),
        ("Australia/Lord_Howe", "2025-10-05", "02", "2026-04-05", "01"),
    ]
    for tz, spring, gap_h, fall, rep_h in dst:
        z = ZoneInfo(tz)

        def at(day, hh, mm):
            naive = datetime.fromisoformat("%sT%s:%02d:00" % (day, hh, mm))
            return first_instant(naive, z)

        start_spring = at(spring, "00", 0)
        start_fall = at(fall, "00", 0)
        gap_exprs = ["30 %d * * *" % int(gap_h), "0 %d * * *" % int(gap_h),
                     "15 %d * * *" % int(gap_h), "45 %d * * *" % int(gap_h),
                     "*/15 * * * *", "0 * * * *", "*/30 %d-%d * * *" % (int(gap_h) - 1, int(gap_h) + 1),
                     "0 9 * * *"]
        for expr in gap_exprs:
            row(expr, tz, fmt_utc(start_spring), "spring forward, from local midnight")
        chain("*/20 * * * *", tz, fmt_utc(start_spring + timedelta(hours=1, minutes=30)), 6,
              "spring forward chain")
        chain("30 %d * * *" % int(gap_h), tz, fmt_utc(start_spring - timedelta(days=1)), 3,
              "skipped time fires once")
        rep_exprs = ["30 %d * * *" % int(rep_h), "0 %d * * *" % int(rep_h),
                     "*/15 * * * *", "0 * * * *", "59 %d * * *" % int(rep_h),
                     "*/30 %d-%d * * *" % (int(rep_h), int(rep_h) + 1), "0 12 * * *"]
        for expr in rep_exprs:
            row(expr, tz, fmt_utc(start_fall), "fall back, from local midnight")
        # Starting inside the second occurrence of the repeated hour.
        second = at(fall, rep_h, 10)
        off1 = second.astimezone(z).utcoffset()
        probe = second
        while probe.astimezone(z).utcoffset() == off1:
            probe += timedelta(minutes=5)
        inside_second = probe + timedelta(minutes=5)
        for expr in ["30 %d * * *" % int(rep_h), "*/15 * * * *", "0 * * * *", "45 %d * * *" % int(rep_h)]:
            row(expr, tz, fmt_utc(inside_second), "fall back, from inside the repeated hour")
        chain("*/20 * * * *", tz, fmt_utc(start_fall + timedelta(minutes=30)), 7,
              "fall back chain")
        chain("30 %d * * *" % int(rep_h), tz, fmt_utc(start_fall - timedelta(days=1)), 3,
              "repeated time fires once")

    # Far future (beyond the zone files' explicit transitions: POSIX rule).
    for tz in ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe"]:
        row("30 2 * * *", tz, "2045-03-01T00:00:00Z", "far future")
        row("0 12 * * *", tz, "2045-07-01T00:00:00Z", "far future")
    row("30 2 * * *", "America/New_York", "2045-03-11T12:00:00Z", "far future gap (Mar 12 2045)")
    row("30 1 * * *", "America/New_York", "2045-11-05T05:31:00Z", "far future repeated hour")


def main():
    build()
    out = sys.stdout
    out.write("# Reference next-fire times for visionbatch cron; generated by\n")
    out.write("# tests/tools/gen_cron_reference.py (read it for the method). Columns:\n")
    out.write("# expr\ttz\tafter\texpected\texpected_local\tsource\tcomment\n")
    disagreements = 0
    for expr, tz, after_s, note in ROWS:
        after = parse_utc(after_s)
        rule = by_rule(expr, tz, after)
        cron = by_croniter(expr, tz, after)
        exp = fmt_utc(rule) if rule else "NOT_FOUND"
        loc = fmt_local(rule, tz) if rule else "-"
        if rule == cron:
            source, comment = "croniter", note
        else:
            disagreements += 1
            source = "rule"
            said = fmt_utc(cron) if cron else "NOT_FOUND"
            comment = ("%s; " % note if note else "") + "croniter says " + said
        out.write("\t".join([expr, tz, fmt_utc(after), exp, loc, source, comment]) + "\n")
    sys.stderr.write("%d rows, %d where croniter differs\n" % (len(ROWS), disagreements))


if __name__ == "__main__":
    main()
