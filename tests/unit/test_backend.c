/* Unit tests of the pure parts of backend.c: the batch-analyze body, status
 * and batch-id parsing, poll backoff, image type detection and file names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "visionbatch/backend.h"
#include "test_util.h"

static const char *const two_ids[] = {"img-1", "img-2"};

static cJSON *build(const vb_backend_analyze *req)
{
    char *json = NULL;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_backend_analyze_body(req, &json, &err), VB_OK);
    cJSON *root = cJSON_Parse(json);
    assert_non_null(root);
    free(json);
    return root;
}

static void analyze_body_without_descriptions_sends_null(void **state)
{
    vb_backend_analyze req = {.image_ids = two_ids,
                              .nimages = 2,
                              .prompt = "Find <defects> & \"anomalies\"",
                              .organization = "LexCorp"};
    cJSON *root = build(&req);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(root, "image_ids");
    assert_int_equal(cJSON_GetArraySize(ids), 2);
    assert_string_equal(cJSON_GetArrayItem(ids, 0)->valuestring, "img-1");
    assert_string_equal(cJSON_GetArrayItem(ids, 1)->valuestring, "img-2");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(root, "analysis_prompt")->valuestring,
                        "Find <defects> & \"anomalies\"");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(root, "report_format")->valuestring,
                        "html");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(root, "organization")->valuestring,
                        "LexCorp");
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(root, "descriptions_map")));
    cJSON_Delete(root);
}

static void analyze_body_with_descriptions_sends_object(void **state)
{
    vb_backend_description d[] = {{"oceanix_01.jpg", "Port side hull"},
                                  {"oceanix_02.jpg", "Starboard deck"},
                                  {"oceanix_01.jpg", "Port side hull, waterline"},
                                  {NULL, "skipped"}};
    vb_backend_analyze req = {
        .image_ids = two_ids, .nimages = 2, .prompt = "q", .descriptions = d, .ndescriptions = 4};
    cJSON *root = build(&req);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "descriptions_map");
    assert_true(cJSON_IsObject(map));
    assert_int_equal(cJSON_GetArraySize(map), 2);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(map, "oceanix_01.jpg")->valuestring,
                        "Port side hull, waterline");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(map, "oceanix_02.jpg")->valuestring,
                        "Starboard deck");
    /* A missing organization is sent as "". */
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(root, "organization")->valuestring, "");
    cJSON_Delete(root);

    vb_backend_analyze empty = {
        .image_ids = two_ids, .nimages = 1, .prompt = "q", .descriptions = d, .ndescriptions = 0};
    root = build(&empty);
    map = cJSON_GetObjectItemCaseSensitive(root, "descriptions_map");
    assert_true(cJSON_IsObject(map));
    assert_int_equal(cJSON_GetArraySize(map), 0);
    cJSON_Delete(root);
}

static void analyze_body_requires_images_and_prompt(void **state)
{
    char *json = NULL;
    vb_error err;
    vb_error_clear(&err);
    vb_backend_analyze none = {.image_ids = two_ids, .nimages = 0, .prompt = "q"};
    assert_int_equal(vb_backend_analyze_body(&none, &json, &err), VB_ERR_INVALID);
    assert_null(json);
    vb_backend_analyze noprompt = {.image_ids = two_ids, .nimages = 2};
    assert_int_equal(vb_backend_analyze_body(&noprompt, &json, &err), VB_ERR_INVALID);
    const char *const holes[] = {"a", NULL};
    vb_backend_analyze hole = {.image_ids = holes, .nimages = 2, .prompt = "q"};
    assert_int_equal(vb_backend_analyze_body(&hole, &json, &err), VB_ERR_INVALID);
    assert_null(json);
}

static vb_err status_of(const char *json, vb_batch_status *st)
{
    vb_error err;
    vb_error_clear(&err);
    return vb_backend_parse_status(json, strlen(json), st, &err);
}

static void status_parses_every_state(void **state)
{
    static const struct {
        const char *json;
        vb_batch_state state;
    } cases[] = {
        {"{\"batch_id\":\"b\",\"status\":\"queued\"}", VB_BATCH_QUEUED},
        {"{\"status\":\"processing\",\"processed_count\":3,\"total_images\":7}",
         VB_BATCH_PROCESSING},
        {"{\"status\":\"COMPLETED\"}", VB_BATCH_COMPLETED},
        {"{\"status\":\"failed\",\"error\":\"model crashed\"}", VB_BATCH_FAILED},
        {"{\"status\":\"paused\"}", VB_BATCH_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        vb_batch_status st;
        assert_int_equal(status_of(cases[i].json, &st), VB_OK);
        assert_int_equal(st.state, cases[i].state);
    }
    vb_batch_status st;
    assert_int_equal(status_of("{\"status\":\"processing\",\"processed_count\":3,"
                               "\"total_images\":7}",
                               &st),
                     VB_OK);
    assert_int_equal(st.processed, 3);
    assert_int_equal(st.total, 7);
    assert_int_equal(status_of("{\"status\":\"failed\",\"error\":\"model\\ncrashed\"}", &st),
                     VB_OK);
    assert_string_equal(st.detail, "model crashed"); /* control characters flattened */
    assert_int_equal(status_of("{\"status\":\"queued\",\"processed_count\":\"3\"}", &st), VB_OK);
    assert_int_equal(st.processed, -1);
    assert_int_equal(st.total, -1);
    assert_string_equal(vb_backend_state_name(VB_BATCH_COMPLETED), "completed");
}

static void status_rejects_malformed_answers(void **state)
{
    static const char *const bad[] = {"", "{", "[]", "null", "{\"status\":3}",
                                      "{\"state\":\"completed\"}", "<html>502</html>"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vb_batch_status st;
        assert_int_equal(status_of(bad[i], &st), VB_ERR_PARSE);
        assert_int_equal(st.state, VB_BATCH_UNKNOWN);
    }
}

static void batch_id_is_validated(void **state)
{
    assert_true(vb_backend_batch_id_valid("3f2a9c1e-7d7b-4a57-9b0e-111111111111"));
    assert_true(vb_backend_batch_id_valid("batch_01.x"));
    assert_false(vb_backend_batch_id_valid(""));
    assert_false(vb_backend_batch_id_valid(NULL));
    assert_false(vb_backend_batch_id_valid(".."));
    assert_false(vb_backend_batch_id_valid("a/b"));
    assert_false(vb_backend_batch_id_valid("a?x=1"));
    assert_false(vb_backend_batch_id_valid("a b"));
    char longid[VB_BACKEND_MAX_ID + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    assert_false(vb_backend_batch_id_valid(longid));
    longid[VB_BACKEND_MAX_ID] = '\0';
    assert_true(vb_backend_batch_id_valid(longid));

    char *id = NULL;
    vb_error err;
    vb_error_clear(&err);
    const char *ok = "{\"batch_id\":\"b-42\",\"status\":\"queued\",\"total_images\":2}";
    assert_int_equal(vb_backend_parse_batch_id(ok, strlen(ok), &id, &err), VB_OK);
    assert_string_equal(id, "b-42");
    free(id);
    const char *num = "{\"batch_id\":42}";
    assert_int_equal(vb_backend_parse_batch_id(num, strlen(num), &id, &err), VB_OK);
    assert_string_equal(id, "42");
    free(id);
    static const char *const bad[] = {"{\"batch_id\":\"../x\"}", "{\"batch_id\":\"\"}",
                                      "{\"batch_id\":null}", "{}", "not json",
                                      "{\"batch_id\":1.5}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vb_error_clear(&err);
        assert_int_equal(vb_backend_parse_batch_id(bad[i], strlen(bad[i]), &id, &err),
                         VB_ERR_PARSE);
        assert_null(id);
    }
}

static void poll_delay_doubles_within_bounds(void **state)
{
    assert_int_equal(vb_backend_next_poll_ms(0, 1000, 30000), 1000);
    assert_int_equal(vb_backend_next_poll_ms(1000, 1000, 30000), 2000);
    assert_int_equal(vb_backend_next_poll_ms(16000, 1000, 30000), 30000);
    assert_int_equal(vb_backend_next_poll_ms(30000, 1000, 30000), 30000);
    assert_int_equal(vb_backend_next_poll_ms(100, 500, 400), 500); /* max below min */
    assert_int_equal(vb_backend_next_poll_ms(0, 0, 0), 1000);
}

static void upload_refuses_a_file_that_is_not_an_image(void **state)
{
    char *path = tu_write_temp("<html>not an image</html>");
    vb_config cfg = {.backend_api_url = "http://127.0.0.1:9"};
    char *id = NULL;
    vb_error err;
    vb_error_clear(&err);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(vb_backend_upload_image(NULL, &cfg, fd, "a.jpg", NULL, &id, &err),
                     VB_ERR_CONTENT);
    assert_null(id);
    assert_non_null(strstr(err.msg, "a.jpg"));
    close(fd);
    unlink(path);
    free(path);
    vb_error_clear(&err);
    assert_int_equal(vb_backend_upload_image(NULL, &cfg, -1, "x.jpg", NULL, &id, &err),
                     VB_ERR_IO);
}

static void wait_returns_cancelled_when_flag_is_set(void **state)
{
    vb_config cfg = {.batch_timeout_s = 5};
    volatile sig_atomic_t cancel = 1;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_backend_wait(NULL, &cfg, "b-1", &cancel, NULL, NULL, NULL, &err), VB_ERR_CANCELLED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(analyze_body_without_descriptions_sends_null),
        cmocka_unit_test(analyze_body_with_descriptions_sends_object),
        cmocka_unit_test(analyze_body_requires_images_and_prompt),
        cmocka_unit_test(status_parses_every_state),
        cmocka_unit_test(status_rejects_malformed_answers),
        cmocka_unit_test(batch_id_is_validated),
        cmocka_unit_test(poll_delay_doubles_within_bounds),
        cmocka_unit_test(upload_refuses_a_file_that_is_not_an_image),
        cmocka_unit_test(wait_returns_cancelled_when_flag_is_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
