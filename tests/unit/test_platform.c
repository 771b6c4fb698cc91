/* Unit tests of the pure parts of platform.c: when to stop paging, the GET
 * URL, the report file name, page comparison and the derived HTTP policy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "platform_internal.h"
#include "visionbatch/platform.h"

static vb__paging_state page_state(long page, size_t items, long total, size_t collected)
{
    vb__paging_state st = {.page = page,
                           .max_pages = 1000,
                           .page_items = items,
                           .total = total,
                           .first_total = total,
                           .collected = collected};
    return st;
}

static void paging_stops_on_empty_page(void **state)
{
    vb__paging_state st = page_state(3, 0, -1, 100);
    assert_int_equal(vb__paging_next(&st), VB__PAGING_STOP_EMPTY);
    st = page_state(1, 0, 5, 0); /* even when the total claims more */
    assert_int_equal(vb__paging_next(&st), VB__PAGING_STOP_EMPTY);
}

static void paging_does_not_trust_the_total_alone(void **state)
{
    vb__paging_state st = page_state(1, 1, 1, 1); /* the guide: total 1, page_size 1 */
    assert_int_equal(vb__paging_next(&st), VB__PAGING_CONTINUE); /* the empty page decides */
    st = page_state(2, 50, 120, 100);
    assert_int_equal(vb__paging_next(&st), VB__PAGING_CONTINUE);
    st = page_state(3, 20, 120, 120); /* a total that is too small must not lose runs */
    assert_int_equal(vb__paging_next(&st), VB__PAGING_CONTINUE);
}

static void paging_distrusts_a_changing_total(void **state)
{
    vb__paging_state st = page_state(2, 50, 60, 100);
    st.first_total = 200; /* total moved between pages: rely on the empty page */
    assert_int_equal(vb__paging_next(&st), VB__PAGING_CONTINUE);
}

static void paging_continues_without_total(void **state)
{
    for (long total = -1; total <= 0; total++) {
        vb__paging_state st = page_state(7, 50, total, 350);
        assert_int_equal(vb__paging_next(&st), VB__PAGING_CONTINUE);
    }
}

static void paging_stops_on_repeated_page(void **state)
{
    vb__paging_state st = page_state(2, 50, -1, 50);
    st.repeated = 1;
    assert_int_equal(vb__paging_next(&st), VB__PAGING_STOP_REPEATED);
}

static void paging_is_bounded_by_max_pages(void **state)
{
    vb__paging_state st = page_state(10, 50, -1, 500);
    st.max_pages = 10;
    assert_int_equal(vb__paging_next(&st), VB__PAGING_STOP_MAX_PAGES);
    st.page = 9;
    assert_int_equal(vb__paging_next(&st), VB__PAGING_CONTINUE);
    st.max_pages = 0; /* unset: the default bound of 1000 pages */
    st.page = 1000;
    assert_int_equal(vb__paging_next(&st), VB__PAGING_STOP_MAX_PAGES);
    assert_string_equal(vb__paging_reason(VB__PAGING_STOP_MAX_PAGES), "max_pages reached");
}

static void same_ids_compares_ignoring_case(void **state)
{
    vb_run a[2] = {{.id = "AB-1"}, {.id = "cd-2"}};
    vb_run b[2] = {{.id = "ab-1"}, {.id = "CD-2"}};
    vb_run c[2] = {{.id = "ab-1"}, {.id = "ef-3"}};
    vb_run_list la = {a, 2}, lb = {b, 2}, lc = {c, 2}, one = {a, 1}, empty = {NULL, 0};
    assert_true(vb__same_ids(&la, &lb));
    assert_false(vb__same_ids(&la, &lc));
    assert_false(vb__same_ids(&la, &one));
    assert_false(vb__same_ids(&empty, &empty));
}

static void list_url_appends_paging_parameters(void **state)
{
    vb_buf b = {0};
    assert_int_equal(vb__platform_list_url("https://api/x/vision_analysis", 1, 50, &b), VB_OK);
    assert_string_equal(b.data,
                        "https://api/x/vision_analysis?is_processed=false&page=1&page_size=50");
    assert_int_equal(vb__platform_list_url("https://api/x?tenant=7", 3, 10, &b), VB_OK);
    assert_string_equal(b.data, "https://api/x?tenant=7&is_processed=false&page=3&page_size=10");
    assert_int_equal(vb__platform_list_url("https://api/x?", 2, 5, &b), VB_OK);
    assert_string_equal(b.data, "https://api/x?is_processed=false&page=2&page_size=5");
    assert_int_equal(vb__platform_list_url("https://api/x?a=1&", 2, 5, &b), VB_OK);
    assert_string_equal(b.data, "https://api/x?a=1&is_processed=false&page=2&page_size=5");
    assert_int_equal(vb__platform_list_url("https://api/x#frag", 1, 1, &b), VB_OK);
    assert_string_equal(b.data, "https://api/x?is_processed=false&page=1&page_size=1");
    assert_int_equal(vb__platform_list_url("", 1, 1, &b), VB_ERR_INVALID);
    vb_buf_free(&b);
}

static void report_filename_is_sanitised(void **state)
{
    char name[200];
    vb__report_filename("b-123_x.y", name, sizeof name);
    assert_string_equal(name, "report_b-123_x.y.html");
    vb__report_filename("../../etc/passwd\"\r\n", name, sizeof name);
    assert_string_equal(name, "report_.._.._etc_passwd___.html");
    vb__report_filename("", name, sizeof name);
    assert_string_equal(name, "report.html");
    vb__report_filename(NULL, name, sizeof name);
    assert_string_equal(name, "report.html");
    char longid[400];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    vb__report_filename(longid, name, sizeof name);
    assert_int_equal(strlen(name), strlen("report_.html") + 128);
}

static void policy_follows_config(void **state)
{
    vb_config cfg = {.connect_timeout_s = 7,
                     .request_timeout_s = 30,
                     .retries = 4,
                     .retry_base_ms = 250,
                     .retry_max_ms = 9000,
                     .max_response_bytes = 1234};
    atomic_int cancel = 0;
    vb_http_policy pol = vb_platform_policy(&cfg, &cancel);
    assert_int_equal(pol.connect_timeout_ms, 7000);
    assert_int_equal(pol.timeout_ms, 30000);
    assert_int_equal(pol.retries, 4);
    assert_int_equal(pol.retry_base_ms, 250);
    assert_int_equal(pol.retry_max_ms, 9000);
    assert_int_equal(pol.max_bytes, 1234);
    assert_true(pol.retry_on_5xx);
    assert_ptr_equal(pol.cancel, &cancel);
}

static void fetch_requires_url_and_organization(void **state)
{
    vb_config cfg = {0};
    vb_run_list out;
    vb_fetch_stats stats;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_platform_fetch_unprocessed(NULL, &cfg, NULL, &out, &stats, &err),
                     VB_ERR_CONFIG);
    assert_int_equal(out.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(paging_stops_on_empty_page),
        cmocka_unit_test(paging_does_not_trust_the_total_alone),
        cmocka_unit_test(paging_distrusts_a_changing_total),
        cmocka_unit_test(paging_continues_without_total),
        cmocka_unit_test(paging_stops_on_repeated_page),
        cmocka_unit_test(paging_is_bounded_by_max_pages),
        cmocka_unit_test(same_ids_compares_ignoring_case),
        cmocka_unit_test(list_url_appends_paging_parameters),
        cmocka_unit_test(report_filename_is_sanitised),
        cmocka_unit_test(policy_follows_config),
        cmocka_unit_test(fetch_requires_url_and_organization),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
