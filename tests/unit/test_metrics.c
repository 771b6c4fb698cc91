/* Unit tests of metrics.c: registration rules, label handling, text
 * exposition of counters, gauges and histograms, series cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "visionbatch/metrics.h"

static void metrics_render_counter_gauge_with_escaped_labels(void **state)
{
    vb_metrics *r = vb_metrics_new();
    vb_metric *c = vb_metrics_counter(r, "vb_requests_total", "Requests.", "route,code");
    vb_metric *g = vb_metrics_gauge(r, "vb_inflight", "In flight.", NULL);
    assert_non_null(c);
    assert_non_null(g);
    const char *l1[] = {"/a\"b\\c\n", "200"};
    vb_metric_inc(c, l1);
    vb_metric_add(c, l1, 2);
    vb_metric_add(c, l1, -5); /* counters never go down */
    vb_metric_set(g, NULL, 7);
    assert_true(vb_metric_value(c, l1) == 3.0);
    char *text = NULL;
    assert_int_equal(vb_metrics_render(r, &text, NULL), VB_OK);
    assert_non_null(strstr(text, "# TYPE vb_requests_total counter\n"));
    assert_non_null(strstr(text, "vb_requests_total{route=\"/a\\\"b\\\\c\\n\",code=\"200\"} 3\n"));
    assert_non_null(strstr(text, "# TYPE vb_inflight gauge\nvb_inflight 7\n"));
    free(text);
    vb_metrics_free(r);
}

static void metrics_histogram_buckets_are_cumulative(void **state)
{
    vb_metrics *r = vb_metrics_new();
    const double b[] = {0.1, 1};
    vb_metric *h = vb_metrics_histogram(r, "vb_seconds", "Time.", "op", b, 2);
    const char *l[] = {"x"};
    vb_metric_observe(h, l, 0.05);
    vb_metric_observe(h, l, 0.5);
    vb_metric_observe(h, l, 5);
    char *text = NULL;
    assert_int_equal(vb_metrics_render(r, &text, NULL), VB_OK);
    assert_non_null(strstr(text, "vb_seconds_bucket{op=\"x\",le=\"0.10000000000000001\"} 1\n"));
    assert_non_null(strstr(text, "vb_seconds_bucket{op=\"x\",le=\"1\"} 2\n"));
    assert_non_null(strstr(text, "vb_seconds_bucket{op=\"x\",le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(text, "vb_seconds_sum{op=\"x\"} 5.5499999999999998\n"));
    assert_non_null(strstr(text, "vb_seconds_count{op=\"x\"} 3\n"));
    free(text);
    vb_metrics_free(r);
}

static void metrics_add_on_a_histogram_creates_an_empty_series(void **state)
{
    vb_metrics *r = vb_metrics_new();
    const double b[] = {1};
    vb_metric *h = vb_metrics_histogram(r, "vb_wait_seconds", "Wait.", NULL, b, 1);
    vb_metric_add(h, NULL, 7);
    char *text = NULL;
    assert_int_equal(vb_metrics_render(r, &text, NULL), VB_OK);
    assert_non_null(strstr(text, "vb_wait_seconds_bucket{le=\"1\"} 0\n"));
    assert_non_null(strstr(text, "vb_wait_seconds_bucket{le=\"+Inf\"} 0\n"));
    assert_non_null(strstr(text, "vb_wait_seconds_sum 0\n"));
    assert_non_null(strstr(text, "vb_wait_seconds_count 0\n"));
    free(text);
    vb_metrics_free(r);
}

static void metrics_registration_rules(void **state)
{
    vb_metrics *r = vb_metrics_new();
    vb_metric *a = vb_metrics_counter(r, "vb_x_total", "", "a");
    assert_ptr_equal(vb_metrics_counter(r, "vb_x_total", "", "a"), a); /* idempotent */
    assert_null(vb_metrics_gauge(r, "vb_x_total", "", "a"));            /* other type */
    assert_null(vb_metrics_counter(r, "vb_x_total", "", "b"));          /* other labels */
    assert_null(vb_metrics_counter(r, "1bad", "", NULL));
    assert_null(vb_metrics_counter(r, "vb_y", "", "le"));
    assert_null(vb_metrics_counter(r, "vb_z", "", "a,,b"));
    const double bad[] = {1, 1};
    assert_null(vb_metrics_histogram(r, "vb_h", "", NULL, bad, 2));
    vb_metric_inc(NULL, NULL); /* ignored */
    vb_metric_inc(a, NULL);    /* labelled family without values: ignored */
    assert_true(vb_metric_value(a, NULL) == 0.0);
    vb_metrics_free(r);
}

static void metrics_series_are_capped(void **state)
{
    vb_metrics *r = vb_metrics_new();
    vb_metric *c = vb_metrics_counter(r, "vb_c_total", "", "id");
    char v[32];
    const char *l[] = {v};
    for (int i = 0; i < VB_METRICS_SERIES_MAX + 5; i++) {
        snprintf(v, sizeof v, "%d", i);
        vb_metric_inc(c, l);
    }
    snprintf(v, sizeof v, "%d", VB_METRICS_SERIES_MAX + 1);
    assert_true(vb_metric_value(c, l) == 0.0);
    char *text = NULL;
    assert_int_equal(vb_metrics_render(r, &text, NULL), VB_OK);
    assert_non_null(strstr(text, "visionbatch_metrics_dropped_series_total 5\n"));
    free(text);
    vb_metrics_free(r);
}

/* Series are found by their values through the index, whatever their
 * number: each of VB_METRICS_SERIES_MAX series counts only its own
 * increments, and values that concatenate alike stay apart. */
static void metrics_every_series_keeps_its_own_count(void **state)
{
    (void)state;
    vb_metrics *r = vb_metrics_new();
    vb_metric *c = vb_metrics_counter(r, "vb_many_total", "", "id");
    vb_metric *two = vb_metrics_counter(r, "vb_two_total", "", "a,b");
    char v[32];
    const char *l[] = {v};
    for (int round = 1; round <= 3; round++)
        for (int i = 0; i < VB_METRICS_SERIES_MAX; i++) {
            snprintf(v, sizeof v, "job-%d", i);
            if (i % 3 < round) /* series i ends with 1, 2 or 3 by i % 3 */
                vb_metric_inc(c, l);
        }
    for (int i = 0; i < VB_METRICS_SERIES_MAX; i++) {
        snprintf(v, sizeof v, "job-%d", i);
        assert_true(vb_metric_value(c, l) == (double)(3 - i % 3));
    }
    snprintf(v, sizeof v, "job-%d", VB_METRICS_SERIES_MAX);
    assert_true(vb_metric_value(c, l) == 0.0);
    const char *ab[] = {"ab", ""}, *a_b[] = {"a", "b"}, *b_a[] = {"", "ab"};
    vb_metric_inc(two, ab);
    vb_metric_add(two, a_b, 2);
    vb_metric_add(two, b_a, 4);
    assert_true(vb_metric_value(two, ab) == 1.0);
    assert_true(vb_metric_value(two, a_b) == 2.0);
    assert_true(vb_metric_value(two, b_a) == 4.0);
    char *text = NULL;
    assert_int_equal(vb_metrics_render(r, &text, NULL), VB_OK);
    assert_non_null(strstr(text, "vb_many_total{id=\"job-998\"} 1\n"));
    assert_non_null(strstr(text, "vb_two_total{a=\"a\",b=\"b\"} 2\n"));
    assert_non_null(strstr(text, "visionbatch_metrics_dropped_series_total 0\n"));
    free(text);
    vb_metrics_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(metrics_render_counter_gauge_with_escaped_labels),
        cmocka_unit_test(metrics_histogram_buckets_are_cumulative),
        cmocka_unit_test(metrics_add_on_a_histogram_creates_an_empty_series),
        cmocka_unit_test(metrics_registration_rules),
        cmocka_unit_test(metrics_series_are_capped),
        cmocka_unit_test(metrics_every_series_keeps_its_own_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
