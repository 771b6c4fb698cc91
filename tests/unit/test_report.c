/* Unit tests of report.c: one part copied as is, several parts combined in
 * order under an escaped run header, <body> extraction, failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "visionbatch/report.h"
#include "test_util.h"

static vb_run hostile_run(void)
{
    vb_run r = {.id = "6004729D-E2C2-43D3-833C-79CE18E00646",
                .run_code = "RUN_<b>1</b>",
                .organization_id = "org",
                .organization_name = "Lex<script>alert(1)</script>Corp",
                .user_query = "Find \"defects\" & <img src=x onerror=alert(2)>",
                .created_date = "2025-11-21T18:55:19Z"};
    return r;
}

static char *out_path(void)
{
    char *p = tu_write_temp("");
    return p;
}

/* Position of needle in hay, or -1. */
static long find(const char *hay, const char *needle)
{
    const char *p = strstr(hay, needle);
    return p ? (long)(p - hay) : -1;
}

static void report_single_part_is_copied_unchanged(void **state)
{
    const char *doc = "<!DOCTYPE html><html><head><title>B</title></head>"
                      "<body class=x><p>only part</p></body></html>\n";
    char *part = tu_write_temp(doc);
    char *out = out_path();
    vb_run run = hostile_run();
    const char *const names[] = {"a.jpg"};
    vb_report_part p = {.batch_id = "b1", .html_path = part, .image_names = names, .nimages = 1};
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_report_combine(&run, &p, 1, out, &err), VB_OK);
    char *got = tu_slurp(out);
    assert_string_equal(got, doc);
    free(got);
    unlink(part);
    unlink(out);
    free(part);
    free(out);
}

static void report_combines_parts_in_order_with_escaped_header(void **state)
{
    char *p1 = tu_write_temp("<!DOCTYPE html>\n<HTML><HEAD><TITLE>first title</TITLE>"
                             "<style type=\"text/css\">.card{color:red}</style></HEAD>\n"
                             "<BODY data-x=\"a>b\" class='r'><div class=card>FIRST</div>"
                             "</BODY></HTML>");
    char *p2 = tu_write_temp("<div>SECOND, a fragment without body</div>");
    char *p3 = tu_write_temp("<html><head><title>t3</title></head><body>\n<p>THIRD</p>\n"
                             "<pre>&lt;/body&gt; in text</pre></body >\n</html>");
    char *out = out_path();
    vb_run run = hostile_run();
    const char *const n1[] = {"a.jpg", "b.jpg"};
    const char *const n2[] = {"c<i>.jpg"};
    const char *const n3[] = {"d.jpg"};
    vb_report_part parts[3] = {
        {.batch_id = "batch-1", .html_path = p1, .image_names = n1, .nimages = 2},
        {.batch_id = "batch-2", .html_path = p2, .image_names = n2, .nimages = 1},
        {.batch_id = "batch-3", .html_path = p3, .image_names = n3, .nimages = 1},
    };
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_report_combine(&run, parts, 3, out, &err), VB_OK);
    char *html = tu_slurp(out);
    assert_non_null(html);

    /* One complete document. */
    assert_int_equal(find(html, "<!DOCTYPE html>"), 0);
    assert_non_null(strstr(html, "</body>\n</html>\n"));
    assert_null(strstr(html, "<HTML>"));
    assert_null(strstr(html, "<BODY"));
    assert_null(strstr(html, "first title"));
    assert_null(strstr(html, "<title>t3</title>"));

    /* Header: every run field, escaped. */
    assert_non_null(strstr(html, "6004729D-E2C2-43D3-833C-79CE18E00646"));
    assert_non_null(strstr(html, "RUN_&lt;b&gt;1&lt;/b&gt;"));
    assert_non_null(strstr(html, "Lex&lt;script&gt;alert(1)&lt;/script&gt;Corp"));
    assert_non_null(
        strstr(html, "Find &quot;defects&quot; &amp; &lt;img src=x onerror=alert(2)&gt;"));
    assert_non_null(strstr(html, "2025-11-21T18:55:19Z"));
    assert_null(strstr(html, "<script>"));
    assert_null(strstr(html, "<img src=x"));
    assert_non_null(strstr(html, "3 batches, 4 images"));

    /* Parts in order, each with its heading. */
    long h1 = find(html, "Part 1 of 3 — batch batch-1, images a.jpg, b.jpg</h2>");
    long h2 = find(html, "Part 2 of 3 — batch batch-2, images c&lt;i&gt;.jpg</h2>");
    long h3 = find(html, "Part 3 of 3 — batch batch-3, images d.jpg</h2>");
    long c1 = find(html, "<div class=card>FIRST</div>");
    long c2 = find(html, "<div>SECOND, a fragment without body</div>");
    long c3 = find(html, "<p>THIRD</p>");
    assert_true(h1 > 0 && h1 < c1 && c1 < h2 && h2 < c2 && c2 < h3 && h3 < c3);

    /* The head's style block travels with its part; the text after the last
     * </body> does not. */
    long s1 = find(html, "<style type=\"text/css\">.card{color:red}</style>");
    assert_true(s1 > h1 && s1 < c1);
    assert_non_null(strstr(html, "<pre>&lt;/body&gt; in text</pre>"));
    assert_null(strstr(html, "</body >"));
    free(html);
    unlink(p1);
    unlink(p2);
    unlink(p3);
    unlink(out);
    free(p1);
    free(p2);
    free(p3);
    free(out);
}

static void report_body_without_closing_tag_runs_to_the_end(void **state)
{
    char *p1 = tu_write_temp("<html><body><p>one</p>");
    char *p2 = tu_write_temp("<html><body><p>two</p></body></html>");
    char *out = out_path();
    vb_run run = hostile_run();
    vb_report_part parts[2] = {{.batch_id = "b1", .html_path = p1},
                               {.batch_id = "b2", .html_path = p2}};
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_report_combine(&run, parts, 2, out, &err), VB_OK);
    char *html = tu_slurp(out);
    assert_non_null(strstr(html, "<div class=\"vb-part-body\">\n<p>one</p>\n</div>"));
    assert_non_null(strstr(html, "<div class=\"vb-part-body\">\n<p>two</p>\n</div>"));
    assert_non_null(strstr(html, "Part 1 of 2 — batch b1</h2>"));
    free(html);
    unlink(p1);
    unlink(p2);
    unlink(out);
    free(p1);
    free(p2);
    free(out);
}

static void report_failures_leave_no_output(void **state)
{
    char *p1 = tu_write_temp("<p>x</p>");
    char *out = out_path();
    vb_run run = hostile_run();
    vb_report_part parts[2] = {{.batch_id = "b1", .html_path = p1},
                               {.batch_id = "b2", .html_path = "/nonexistent/part.html"}};
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_report_combine(&run, parts, 2, out, &err), VB_ERR_IO);
    assert_int_not_equal(access(out, F_OK), 0);
    assert_non_null(strstr(err.msg, "part 2"));
    vb_error_clear(&err);
    assert_int_equal(vb_report_combine(&run, parts, 0, out, &err), VB_ERR_INVALID);
    vb_report_part same = {.batch_id = "b", .html_path = p1};
    assert_int_equal(vb_report_combine(&run, &same, 1, p1, &err), VB_ERR_INVALID);
    char *kept = tu_slurp(p1);
    assert_string_equal(kept, "<p>x</p>"); /* the part was not truncated */
    free(kept);
    unlink(p1);
    free(p1);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(report_single_part_is_copied_unchanged),
        cmocka_unit_test(report_combines_parts_in_order_with_escaped_header),
        cmocka_unit_test(report_body_without_closing_tag_runs_to_the_end),
        cmocka_unit_test(report_failures_leave_no_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
