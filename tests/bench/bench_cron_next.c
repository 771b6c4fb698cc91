/*
 * Benchmark of vb_cron_next(): the cost of one next-fire-time search for
 * everyday schedules over three zones, and for the slowest kinds (schedules
 * that never fire, decided from their fields, and the rarest ones that do,
 * decades apart). Prints microseconds per call; docs/benchmarks.md records
 * the results. Correctness is the unit tests' business (tests/unit/test_cron.c);
 * this program only checks that every call answers as expected, so its quick
 * form in `ctest -L bench` cannot rot.
 *
 *   bench_cron_next [--quick]
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "visionbatch/cron.h"
#include "visionbatch/tz.h"

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int parse(const char *expr, vb_cron *c)
{
    char err[160];
    if (vb_cron_parse(expr, c, err, sizeof err) != VB_OK) {
        fprintf(stderr, "bench_cron_next: '%s' rejected: %s\n", expr, err);
        return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: bench_cron_next [--quick]\n"
                   "Prints the cost of vb_cron_next() in microseconds per call.\n");
            return 0;
        } else {
            fprintf(stderr, "bench_cron_next: unknown argument '%s' (try --help)\n", argv[i]);
            return 2;
        }
    }
    static const char *const exprs[] = {"0 * * * *", "0 9 * * 1", "*/30 * * * *",
                                        "0 0 29 2 *", "30 2 * * *", "0 0 13 * 5"};
    static const char *const zones[] = {"UTC", "America/New_York", "Australia/Lord_Howe"};
    int per = quick ? 200 : 20000, calls = 0;
    vb_cron c;
    double t0 = now_us();
    for (size_t e = 0; e < sizeof exprs / sizeof exprs[0]; e++) {
        if (!parse(exprs[e], &c))
            return 1;
        for (size_t z = 0; z < sizeof zones / sizeof zones[0]; z++)
            for (int i = 0; i < per; i++, calls++) {
                time_t next, after = 1735689600 + (time_t)i * 86413;
                if (vb_cron_next(&c, zones[z], after, &next) != VB_OK || next <= after) {
                    fprintf(stderr, "bench_cron_next: '%s' in %s found no time\n", exprs[e],
                            zones[z]);
                    return 1;
                }
            }
    }
    printf("%-28s %8.2f us per call (%d calls, 6 schedules x 3 zones)\n", "everyday schedules",
           (now_us() - t0) / calls, calls);

    /* The slowest: the first two never fire, the last two fire decades apart. */
    static const struct {
        const char *expr;
        vb_err want;
    } slow[] = {{"* * 31 2,4,6,9,11 *", VB_ERR_NOT_FOUND},
                {"0 0 30 2 *", VB_ERR_NOT_FOUND},
                {"59 23 29 2 */7", VB_OK},
                {"59 23 31 2,4,6,9,11 */7", VB_ERR_NOT_FOUND}};
    time_t from = (time_t)(vb_tz_days_from_civil(2088, 3, 1) * 86400);
    int n = quick ? 50 : 5000;
    for (size_t e = 0; e < sizeof slow / sizeof slow[0]; e++) {
        if (!parse(slow[e].expr, &c))
            return 1;
        t0 = now_us();
        for (int i = 0; i < n; i++) {
            time_t next;
            if (vb_cron_next(&c, "America/New_York", from + i * 60, &next) != slow[e].want) {
                fprintf(stderr, "bench_cron_next: '%s' answered unexpectedly\n", slow[e].expr);
                return 1;
            }
        }
        printf("%-28s %8.2f us per call (%d calls, %s)\n", slow[e].expr, (now_us() - t0) / n, n,
               slow[e].want == VB_OK ? "fires" : "never fires");
    }
    return 0;
}
