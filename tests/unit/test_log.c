/* Unit tests of log.c: text and JSON lines in a file, run ids, redaction,
 * escaping, truncation, level filtering, fallback to stderr, threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "visionbatch/log.h"
#include "visionbatch/redact.h"

static char dir[64];
static char path[128];

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/vb_test_log_XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/out.log", dir);
    vb_log_set_stderr(0);
    vb_log_set_run(NULL);
    vb_redact_clear_secrets();
    return 0;
}

static int teardown(void **state)
{
    vb_log_close();
    vb_log_set_stderr(1);
    unlink(path);
    rmdir(dir);
    return 0;
}

/* The whole file as a heap string. */
static char *slurp(const char *p)
{
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    char *data = calloc(1, 1 << 20);
    assert_non_null(data);
    size_t n = fread(data, 1, (1 << 20) - 1, f);
    data[n] = '\0';
    fclose(f);
    return data;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void text_line_has_timestamp_level_run_and_message(void **state)
{
    vb_log_open(path, VB_LOG_TEXT, VB_LOG_INFO);
    vb_log_set_run("RUN-42");
    VB_INFO("processed %d images", 3);
    vb_log_set_run(NULL);
    VB_WARN("no run here");
    vb_log_close();
    char *s = slurp(path);
    /* 2026-11-28T12:00:00.123Z */
    assert_true(strlen(s) > 24);
    assert_int_equal(s[4], '-');
    assert_int_equal(s[10], 'T');
    assert_int_equal(s[19], '.');
    assert_int_equal(s[23], 'Z');
    assert_non_null(strstr(s, " INFO  run=RUN-42 processed 3 images\n"));
    char *second = strchr(s, '\n') + 1;
    assert_non_null(strstr(second, " WARNING no run here\n"));
    assert_null(strstr(second, "run="));
    assert_int_equal(count_lines(s), 2);
    free(s);
}

static void json_line_parses_with_all_fields(void **state)
{
    vb_log_open(path, VB_LOG_JSON, VB_LOG_DEBUG);
    vb_log_set_run("ABC-1");
    VB_ERROR("API returned status \"%s\"", "fail");
    vb_log_close();
    char *s = slurp(path);
    assert_int_equal(count_lines(s), 1);
    cJSON *j = cJSON_Parse(s);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "level")->valuestring, "error");
    assert_string_equal(cJSON_GetObjectItem(j, "run")->valuestring, "ABC-1");
    assert_string_equal(cJSON_GetObjectItem(j, "msg")->valuestring,
                        "API returned status \"fail\"");
    const char *ts = cJSON_GetObjectItem(j, "ts")->valuestring;
    assert_int_equal(strlen(ts), 24);
    assert_int_equal(ts[23], 'Z');
    cJSON_Delete(j);
    free(s);
}

static void json_escapes_control_characters_quotes_and_backslashes(void **state)
{
    vb_log_open(path, VB_LOG_JSON, VB_LOG_INFO);
    const char *msg = "a\"b\\c\nd\re\tf\x01g\x1fh\x7f";
    VB_INFO("%s", msg);
    vb_log_close();
    char *s = slurp(path);
    assert_int_equal(count_lines(s), 1);
    assert_non_null(strstr(s, "a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u001fh\\u007f"));
    cJSON *j = cJSON_Parse(s);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "msg")->valuestring, msg);
    cJSON_Delete(j);
    free(s);
}

static void invalid_utf8_is_replaced(void **state)
{
    vb_log_open(path, VB_LOG_JSON, VB_LOG_INFO);
    VB_INFO("ok \xc3\xa9 bad \xff \xc0\xaf \xed\xa0\x80 end");
    vb_log_close();
    char *s = slurp(path);
    assert_null(strstr(s, "\xff"));
    assert_null(strstr(s, "\xc0"));
    assert_null(strstr(s, "\xed\xa0"));
    assert_non_null(strstr(s, "ok \xc3\xa9 bad \xef\xbf\xbd "));
    cJSON *j = cJSON_Parse(s);
    assert_non_null(j);
    cJSON_Delete(j);
    free(s);
}

static void text_newlines_do_not_split_the_event(void **state)
{
    vb_log_open(path, VB_LOG_TEXT, VB_LOG_INFO);
    VB_INFO("first\nINFO forged line");
    vb_log_close();
    char *s = slurp(path);
    assert_int_equal(count_lines(s), 1);
    assert_non_null(strstr(s, "first\\nINFO forged line"));
    free(s);
}

static void registered_secret_is_redacted_in_the_file(void **state)
{
    vb_redact_add_secret("sk-live-123456");
    vb_log_open(path, VB_LOG_TEXT, VB_LOG_INFO);
    VB_INFO("key is sk-live-123456, header Authorization: Bearer abc.def, url "
            "https://h/x.jpg?sp=r&sig=SIGSIG");
    vb_log_close();
    vb_log_open(path, VB_LOG_JSON, VB_LOG_INFO);
    VB_INFO("json key sk-live-123456 \"Bearer zzzz\"");
    vb_log_close();
    char *s = slurp(path);
    assert_null(strstr(s, "sk-live"));
    assert_null(strstr(s, "abc.def"));
    assert_null(strstr(s, "SIGSIG"));
    assert_null(strstr(s, "zzzz"));
    assert_non_null(strstr(s, "key is ***"));
    assert_non_null(strstr(s, "json key ***"));
    free(s);
}

static void secret_past_the_line_cap_is_still_redacted(void **state)
{
    vb_redact_add_secret("TOPSECRETVALUE");
    char *pad = malloc(9000);
    assert_non_null(pad);
    memset(pad, 'x', 8150);
    pad[8150] = '\0';
    vb_log_open(path, VB_LOG_TEXT, VB_LOG_INFO);
    VB_INFO("%s TOPSECRETVALUE", pad);
    vb_log_close();
    char *s = slurp(path);
    assert_null(strstr(s, "TOPSEC"));
    free(s);
    free(pad);
}

static void long_message_is_truncated_with_ellipsis(void **state)
{
    char *big = malloc(20001);
    assert_non_null(big);
    memset(big, 'y', 20000);
    big[20000] = '\0';
    vb_log_open(path, VB_LOG_JSON, VB_LOG_INFO);
    VB_INFO("%s", big);
    vb_log_close();
    char *s = slurp(path);
    size_t n = strlen(s);
    assert_true(n <= 8192);
    assert_true(n > 8000);
    assert_int_equal(count_lines(s), 1);
    assert_non_null(strstr(s, "y\xe2\x80\xa6\"}\n"));
    cJSON *j = cJSON_Parse(s);
    assert_non_null(j);
    cJSON_Delete(j);
    free(s);
    free(big);
}

static void lines_below_the_level_are_dropped(void **state)
{
    vb_log_open(path, VB_LOG_TEXT, VB_LOG_WARN);
    VB_DEBUG("debug");
    VB_INFO("info");
    VB_WARN("warn");
    VB_ERROR("error");
    vb_log_close();
    char *s = slurp(path);
    assert_int_equal(count_lines(s), 2);
    assert_null(strstr(s, " info"));
    assert_non_null(strstr(s, "WARNING warn"));
    assert_non_null(strstr(s, "ERROR error"));
    free(s);
}

static void unopenable_path_falls_back_to_stderr(void **state)
{
    char errpath[160];
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", dir);
    int saved = dup(STDERR_FILENO);
    int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, STDERR_FILENO);
    close(fd);
    vb_log_open("/nonexistent-dir-vb/sub/x.log", VB_LOG_TEXT, VB_LOG_INFO);
    VB_INFO("still logged");
    vb_log_close();
    dup2(saved, STDERR_FILENO);
    close(saved);
    char *s = slurp(errpath);
    assert_non_null(strstr(s, "cannot open log file /nonexistent-dir-vb/sub/x.log"));
    assert_non_null(strstr(s, "INFO  still logged\n"));
    assert_int_equal(count_lines(s), 2);
    free(s);
    unlink(errpath);
}

static void level_and_format_names_parse(void **state)
{
    assert_int_equal(vb_log_level_parse("debug"), VB_LOG_DEBUG);
    assert_int_equal(vb_log_level_parse("INFO"), VB_LOG_INFO);
    assert_int_equal(vb_log_level_parse("warn"), VB_LOG_WARN);
    assert_int_equal(vb_log_level_parse("warning"), VB_LOG_WARN);
    assert_int_equal(vb_log_level_parse("error"), VB_LOG_ERROR);
    assert_int_equal(vb_log_level_parse("verbose"), -1);
    assert_int_equal(vb_log_level_parse(NULL), -1);
    assert_int_equal(vb_log_format_parse("text"), VB_LOG_TEXT);
    assert_int_equal(vb_log_format_parse("json"), VB_LOG_JSON);
    assert_int_equal(vb_log_format_parse("xml"), -1);
}

static void *writer(void *arg)
{
    char id[16];
    snprintf(id, sizeof id, "T%d", (int)(intptr_t)arg);
    vb_log_set_run(id);
    for (int i = 0; i < 200; i++)
        VB_INFO("line %d from %s %s", i, id, "padding-padding-padding-padding-padding");
    return NULL;
}

static void threads_never_interleave_lines(void **state)
{
    vb_log_open(path, VB_LOG_JSON, VB_LOG_INFO);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer, (void *)(intptr_t)i), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    vb_log_close();
    char *s = slurp(path);
    assert_int_equal(count_lines(s), 800);
    char *save = NULL;
    for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        assert_non_null(j);
        const char *run = cJSON_GetObjectItem(j, "run")->valuestring;
        const char *msg = cJSON_GetObjectItem(j, "msg")->valuestring;
        /* Each thread's lines carry that thread's run id. */
        assert_non_null(strstr(msg, run));
        cJSON_Delete(j);
    }
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(text_line_has_timestamp_level_run_and_message, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(json_line_parses_with_all_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(json_escapes_control_characters_quotes_and_backslashes,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(invalid_utf8_is_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(text_newlines_do_not_split_the_event, setup, teardown),
        cmocka_unit_test_setup_teardown(registered_secret_is_redacted_in_the_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(secret_past_the_line_cap_is_still_redacted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(long_message_is_truncated_with_ellipsis, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(lines_below_the_level_are_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(unopenable_path_falls_back_to_stderr, setup, teardown),
        cmocka_unit_test(level_and_format_names_parse),
        cmocka_unit_test_setup_teardown(threads_never_interleave_lines, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
