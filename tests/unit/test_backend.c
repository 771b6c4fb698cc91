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
#include "backend_poll.h"
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
    atomic_int cancel = 1;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_backend_wait(NULL, &cfg, "b-1", 1, &cancel, NULL, NULL, NULL, &err), VB_ERR_CANCELLED);
}

/* A fake backend on a fake clock: the batch is done `done_at` ms after the
 * wait began; each status poll records its instant. */
typedef struct fake_batch {
    long long now;
    long long done_at;
    long long polls[64];
    int npolls;
} fake_batch;

static long long fake_now(void *ctx)
{
    return ((fake_batch *)ctx)->now;
}

static int fake_sleep(void *ctx, long long ms, const atomic_int *cancel)
{
    fake_batch *f = ctx;
    if (cancel && *cancel)
        return 1;
    f->now += ms;
    return 0;
}

static vb_err fake_status(void *ctx, const char *batch_id, vb_batch_status *st, vb_error *err)
{
    fake_batch *f = ctx;
    (void)batch_id;
    (void)err;
    memset(st, 0, sizeof *st);
    assert_true(f->npolls < 64);
    f->polls[f->npolls++] = f->now;
    st->state = f->now >= f->done_at ? VB_BATCH_COMPLETED : VB_BATCH_PROCESSING;
    return VB_OK;
}

/* Waits for one batch done after done_at ms, starting the fake clock at 0;
 * returns the number of polls, their instants in f->polls. */
static int wait_fake(fake_batch *f, const vb_config *cfg, size_t nimages, long long done_at)
{
    memset(f, 0, sizeof *f);
    f->done_at = done_at;
    vb__backend_hooks hooks = {fake_now, fake_sleep, fake_status, f};
    vb__backend_set_hooks(&hooks);
    vb_error err;
    vb_error_clear(&err);
    vb_err rc = vb_backend_wait(NULL, cfg, "b-1", nimages, NULL, NULL, NULL, NULL, &err);
    vb__backend_set_hooks(NULL);
    assert_int_equal(rc, VB_OK);
    return f->npolls;
}

static void wait_polls_short_then_doubling_when_nothing_is_learned(void **state)
{
    vb__poll_forget();
    vb_config cfg = {.backend_api_url = "http://b", .batch_timeout_s = 3600,
                     .status_poll_min_ms = 50, .status_poll_max_ms = 1000};
    fake_batch f;
    /* Not at once: the first poll after 50 ms, then intervals 50, 100, 200,
     * 400, 800 and the 1000 ms cap. */
    assert_int_equal(wait_fake(&f, &cfg, 5, 2700), 8);
    const long long want[] = {50, 100, 200, 400, 800, 1600, 2600, 3600};
    for (int i = 0; i < 8; i++)
        assert_int_equal(f.polls[i], want[i]); /* done seen at 3600 */
    vb__poll_forget();
}

static void wait_first_poll_comes_near_the_learned_duration(void **state)
{
    vb__poll_forget();
    vb_config cfg = {.backend_api_url = "http://b", .batch_timeout_s = 3600,
                     .status_poll_min_ms = 50, .status_poll_max_ms = 30000};
    fake_batch f;
    /* A 500 ms batch: cold, polls at 50, 100, 200, 400 (pending), 800 (done):
     * learned midpoint 600. */
    assert_int_equal(wait_fake(&f, &cfg, 5, 500), 5);
    assert_int_equal(f.polls[4], 800);
    assert_int_equal(vb__poll_learned_ms("http://b", 5), 600);
    /* Next batch of the same size: nothing before 9/10 of 600 = 540, where it
     * is done — one poll. */
    assert_int_equal(wait_fake(&f, &cfg, 5, 500), 1);
    assert_int_equal(f.polls[0], 540);
    /* Done at once (no pending poll): sample 270, learned (600 + 270) / 2. */
    assert_int_equal(vb__poll_learned_ms("http://b", 5), 435);
    /* First poll at 391 is early; then every 50 ms near the expected end
     * (441, 491) until the batch is seen done at 541. */
    assert_int_equal(wait_fake(&f, &cfg, 5, 500), 4);
    assert_int_equal(f.polls[0], 391);
    assert_int_equal(f.polls[1], 441);
    assert_int_equal(f.polls[2], 491);
    assert_int_equal(f.polls[3], 541);
    /* Keyed by batch size and backend: others still start cold. */
    assert_int_equal(wait_fake(&f, &cfg, 20, 500), 5);
    assert_int_equal(f.polls[0], 50);
    cfg.backend_api_url = "http://other";
    assert_int_equal(wait_fake(&f, &cfg, 5, 40), 1);
    assert_int_equal(f.polls[0], 50);
    vb__poll_forget();
}

static void wait_keeps_short_intervals_after_a_learned_first_poll(void **state)
{
    vb__poll_forget();
    vb_config cfg = {.backend_api_url = "http://b", .batch_timeout_s = 3600,
                     .status_poll_min_ms = 50, .status_poll_max_ms = 30000};
    vb__poll_learn("http://b", 5, 500, 500); /* learned: 500 ms */
    fake_batch f;
    /* A batch slower than learned (done at 640): first poll at 450, then
     * three intervals of 50 (500, 550, 600), then doubling (700): seen done
     * at 700, where doubling at once (500, 600, 800) would see it at 800. */
    assert_int_equal(wait_fake(&f, &cfg, 5, 640), 5);
    const long long want[] = {450, 500, 550, 600, 700};
    for (int i = 0; i < 5; i++)
        assert_int_equal(f.polls[i], want[i]);
    /* Far slower: after the three short intervals the doubling goes on as
     * before (100, 200, 400 …), so a long batch costs few polls. */
    vb__poll_forget();
    vb__poll_learn("http://b", 5, 500, 500);
    assert_int_equal(wait_fake(&f, &cfg, 5, 2000), 8);
    const long long slow[] = {450, 500, 550, 600, 700, 900, 1300, 2100};
    for (int i = 0; i < 8; i++)
        assert_int_equal(f.polls[i], slow[i]);
    vb__poll_forget();
}

static void wait_first_poll_is_capped_by_the_max_interval(void **state)
{
    vb__poll_forget();
    vb_config cfg = {.backend_api_url = "http://b", .batch_timeout_s = 3600,
                     .status_poll_min_ms = 50, .status_poll_max_ms = 2000};
    vb__poll_learn("http://b", 20, 60000, 60000);
    assert_int_equal(vb__poll_first_ms("http://b", 20, 50, 2000), 2000);
    fake_batch f;
    wait_fake(&f, &cfg, 20, 10);
    assert_int_equal(f.polls[0], 2000);
    vb__poll_forget();
}

static void wait_learns_from_many_sizes_without_losing_recent_ones(void **state)
{
    vb__poll_forget();
    for (size_t n = 1; n <= 200; n++)
        vb__poll_learn("http://b", n, 0, 1000 + (long long)n);
    assert_int_equal(vb__poll_learned_ms("http://b", 200), 600); /* midpoint of 0..1200 */
    assert_int_equal(vb__poll_learned_ms("http://b", 1), 0);     /* replaced */
    vb__poll_forget();
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
        cmocka_unit_test(wait_polls_short_then_doubling_when_nothing_is_learned),
        cmocka_unit_test(wait_first_poll_comes_near_the_learned_duration),
        cmocka_unit_test(wait_keeps_short_intervals_after_a_learned_first_poll),
        cmocka_unit_test(wait_first_poll_is_capped_by_the_max_interval),
        cmocka_unit_test(wait_learns_from_many_sizes_without_losing_recent_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
