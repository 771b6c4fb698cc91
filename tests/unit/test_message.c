/* Unit tests of message.c: the Kafka run message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "visionbatch/message.h"

static void make_run(vb_run *r, vb_document *d)
{
    memset(r, 0, sizeof *r);
    memset(d, 0, sizeof *d);
    r->id = "6004729D-E2C2-43D3-833C-79CE18E00646";
    r->organization_id = "38162954-469A-40BC-B619-3E9F71DE6DB9";
    r->organization_name = "LexCorp";
    r->user_query = "Analyze";
    r->run_code = "VISION_RUN_001";
    d->path = "https://blob.example/c/oceanix_01.jpg?sv=2024&sig=SECRETSIG%3D";
    d->name = "oceanix_01.jpg";
    d->is_input = 1;
    d->type = VB_DOC_IMAGE;
    r->docs = d;
    r->ndocs = 1;
}

static void message_round_trip_keeps_run_without_secrets(void **state)
{
    vb_run r;
    vb_document d;
    make_run(&r, &d);
    char *json = NULL;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_run_msg_encode(&r, NULL, "exec-1", "trace-1", 2, &json, &err), VB_OK);
    assert_null(strstr(json, "SECRETSIG"));
    assert_null(strstr(json, "sig="));
    vb_run_msg m;
    assert_int_equal(vb_run_msg_decode(json, strlen(json), &m, &err), VB_OK);
    assert_string_equal(m.run_id, r.id);
    assert_string_equal(m.cred_source, "config");
    assert_null(m.job_id);
    assert_string_equal(m.execution_id, "exec-1");
    assert_string_equal(m.trace_id, "trace-1");
    assert_int_equal(m.attempt, 2);
    assert_true(m.has_run);
    assert_int_equal(m.run.ndocs, 1);
    assert_string_equal(m.run.docs[0].path, "https://blob.example/c/oceanix_01.jpg");
    assert_string_equal(m.run.organization_name, "LexCorp");
    vb_run_msg_free(&m);
    free(json);
}

static void message_names_job_credentials(void **state)
{
    vb_run r;
    vb_document d;
    make_run(&r, &d);
    char *json = NULL;
    assert_int_equal(vb_run_msg_encode(&r, "job-42", NULL, NULL, 1, &json, NULL), VB_OK);
    vb_run_msg m;
    assert_int_equal(vb_run_msg_decode(json, strlen(json), &m, NULL), VB_OK);
    assert_string_equal(m.cred_source, "job");
    assert_string_equal(m.job_id, "job-42");
    assert_null(m.execution_id);
    vb_run_msg_free(&m);
    free(json);
}

static void message_rejects_poison(void **state)
{
    const char *bad[] = {
        "",
        "not json",
        "[1,2,3]",
        "{\"schema\":2,\"run_id\":\"A\",\"credentials\":{\"source\":\"config\"}}",
        "{\"schema\":1,\"credentials\":{\"source\":\"config\"}}",
        "{\"schema\":1,\"run_id\":\"../../x\",\"credentials\":{\"source\":\"config\"}}",
        "{\"schema\":1,\"run_id\":\"A\"}",
        "{\"schema\":1,\"run_id\":\"A\",\"credentials\":{\"source\":\"env\"}}",
        "{\"schema\":1,\"run_id\":\"A\",\"credentials\":{\"source\":\"job\"}}",
        "{\"schema\":1,\"run_id\":5,\"credentials\":{\"source\":\"config\"}}",
        "{\"schema\":1,\"run_id\":\"A\",\"credentials\":{\"source\":\"config\"},\"run\":{\"x\":1}}",
        "{\"schema\":1,\"run_id\":\"A\",\"credentials\":{\"source\":\"config\"},\"trace_id\":[]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        vb_run_msg m;
        vb_error err;
        vb_error_clear(&err);
        if (vb_run_msg_decode(bad[i], strlen(bad[i]), &m, &err) != VB_ERR_PARSE)
            fail_msg("accepted poison message %zu: %s", i, bad[i]);
        assert_true(err.msg[0] != '\0');
        assert_null(m.run_id);
    }
}

static void message_rejects_run_id_mismatch(void **state)
{
    const char *j = "{\"schema\":1,\"run_id\":\"AAA\",\"credentials\":{\"source\":\"config\"},"
                    "\"run\":{\"vision_analysis_id\":\"BBB\",\"organization_id\":\"O\","
                    "\"user_query\":\"q\",\"documents\":[]}}";
    vb_run_msg m;
    assert_int_equal(vb_run_msg_decode(j, strlen(j), &m, NULL), VB_ERR_PARSE);
}

static void strip_query_removes_query_and_fragment(void **state)
{
    char out[64];
    vb_url_strip_query("https://h/p.jpg?sig=x#f", out, sizeof out);
    assert_string_equal(out, "https://h/p.jpg");
    vb_url_strip_query("https://h/p.jpg", out, sizeof out);
    assert_string_equal(out, "https://h/p.jpg");
    vb_url_strip_query("https://h/very-long-path", out, 8);
    assert_string_equal(out, "https:/");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(message_round_trip_keeps_run_without_secrets),
        cmocka_unit_test(message_names_job_credentials),
        cmocka_unit_test(message_rejects_poison),
        cmocka_unit_test(message_rejects_run_id_mismatch),
        cmocka_unit_test(strip_query_removes_query_and_fragment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
