/* Unit tests of buf.c and error.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "visionbatch/buf.h"
#include "visionbatch/error.h"

static void buf_appends_and_terminates(void **state)
{
    vb_buf b = {0};
    assert_int_equal(vb_buf_append_str(&b, "abc"), VB_OK);
    assert_int_equal(vb_buf_printf(&b, "-%d-", 42), VB_OK);
    assert_string_equal(b.data, "abc-42-");
    assert_int_equal(b.len, 7);
    vb_buf_free(&b);
    assert_null(b.data);
}

static void buf_limit_rejects_and_keeps_content(void **state)
{
    vb_buf b = {.limit = 5};
    assert_int_equal(vb_buf_append_str(&b, "1234"), VB_OK);
    assert_int_equal(vb_buf_append_str(&b, "56"), VB_ERR_TOO_LARGE);
    assert_string_equal(b.data, "1234");
    assert_int_equal(vb_buf_append_str(&b, "5"), VB_OK);
    assert_int_equal(b.len, 5);
    vb_buf_free(&b);
}

static void buf_html_escapes_every_special_character(void **state)
{
    vb_buf b = {0};
    assert_int_equal(vb_buf_append_html(&b, "<a href=\"x\">&'</a>"), VB_OK);
    assert_string_equal(b.data, "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
    vb_buf_free(&b);
}

static void buf_html_failure_rolls_back(void **state)
{
    vb_buf b = {.limit = 8};
    assert_int_equal(vb_buf_append_str(&b, "ok"), VB_OK);
    assert_int_equal(vb_buf_append_html(&b, "<<<"), VB_ERR_TOO_LARGE);
    assert_string_equal(b.data, "ok");
    vb_buf_free(&b);
}

static void buf_steal_hands_over_data(void **state)
{
    vb_buf b = {0};
    char *empty = vb_buf_steal(&b);
    assert_string_equal(empty, "");
    free(empty);
    assert_int_equal(vb_buf_append_str(&b, "x"), VB_OK);
    char *s = vb_buf_steal(&b);
    assert_string_equal(s, "x");
    assert_null(b.data);
    free(s);
}

static void error_set_chains_messages(void **state)
{
    vb_error e;
    vb_error_clear(&e);
    assert_int_equal(vb_error_set(&e, VB_ERR_NETWORK, "connect %s", "refused"), VB_ERR_NETWORK);
    vb_error_set(&e, VB_ERR_NETWORK, "download failed");
    assert_string_equal(e.msg, "download failed: connect refused");
    assert_true(vb_error_is_transient(&e));
    e.code = VB_ERR_HTTP;
    e.http_status = 404;
    assert_false(vb_error_is_transient(&e));
    e.http_status = 503;
    assert_true(vb_error_is_transient(&e));
    assert_string_equal(vb_strerror(VB_ERR_TOO_LARGE), "size limit exceeded");
    assert_string_equal(vb_strerror((vb_err)999), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_appends_and_terminates),
        cmocka_unit_test(buf_limit_rejects_and_keeps_content),
        cmocka_unit_test(buf_html_escapes_every_special_character),
        cmocka_unit_test(buf_html_failure_rolls_back),
        cmocka_unit_test(buf_steal_hands_over_data),
        cmocka_unit_test(error_set_chains_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
