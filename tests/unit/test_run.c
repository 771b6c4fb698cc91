/* Unit tests of run.c: parsing the platform's GET answer, validation of
 * hostile input, and the run JSON round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "visionbatch/buf.h"
#include "visionbatch/run.h"
#include "test_util.h"

static vb_err parse(const char *json, vb_run_page *page, vb_error *err)
{
    vb_error_clear(err);
    return vb_run_page_parse(json, strlen(json), page, err);
}

/* A page envelope around `runs` (a JSON array text). */
static char *envelope(const char *runs)
{
    vb_buf b = {0};
    assert_int_equal(vb_buf_printf(&b,
                                   "{\"code\":200,\"status\":\"success\",\"data\":{\"page\":0,"
                                   "\"page_size\":0,\"total\":1,\"vision_analysis\":%s}}",
                                   runs),
                     VB_OK);
    return vb_buf_steal(&b);
}

#define GOOD_DOC                                                                                 \
    "{\"document_path\":\"https://h/a.jpg?sig=x\",\"document_name\":\"a.jpg\","                \
    "\"is_input\":true,\"document_type\":\"image\"}"

static void run_page_parses_guide_example_exactly(void **state)
{
    size_t len;
    char *json = tu_read_data("guide_get_response.json", &len);
    vb_run_page page;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_run_page_parse(json, len, &page, &err), VB_OK);
    assert_int_equal(page.total, 1);
    assert_int_equal(page.invalid, 0);
    assert_int_equal(page.list.n, 1);
    const vb_run *r = &page.list.runs[0];
    assert_string_equal(r->id, "6004729D-E2C2-43D3-833C-79CE18E00646");
    assert_string_equal(r->run_code, "VISION_RUN_001");
    assert_int_equal(r->is_processed, 0);
    assert_string_equal(r->organization_id, "38162954-469A-40BC-B619-3E9F71DE6DB9");
    assert_string_equal(r->organization_name, "LexCorp");
    assert_string_equal(r->user_query, "Analyze these images for defects and anomalies");
    assert_string_equal(r->created_date, "2025-11-21T18:55:19Z");
    assert_int_equal(r->ndocs, 3);
    assert_string_equal(r->docs[0].documents_id, "D1356F80-84AB-4920-BCDF-1F3D29EBA300");
    assert_string_equal(r->docs[0].document_id, "A85B12FE-C172-4F59-A70D-9F4F10F89DA2");
    assert_string_equal(r->docs[0].path,
                        "https://storage.blob.core.windows.net/container/oceanix_01.jpg");
    assert_string_equal(r->docs[0].name, "oceanix_01.jpg");
    assert_int_equal(r->docs[0].is_input, 1);
    assert_int_equal(r->docs[0].type, VB_DOC_IMAGE);
    assert_string_equal(r->docs[1].name, "oceanix_02.jpg");
    assert_int_equal(r->docs[1].type, VB_DOC_IMAGE);
    assert_string_equal(r->docs[2].name, "descriptions_VISION_RUN_001.json");
    assert_string_equal(r->docs[2].document_id, "D3D95A0E-6B4F-4713-84EF-07F90B615550");
    assert_int_equal(r->docs[2].type, VB_DOC_JSON);
    vb_run_page_free(&page);
    free(json);
}

static void run_page_every_truncation_fails_cleanly(void **state)
{
    size_t len;
    char *json = tu_read_data("guide_get_response.json", &len);
    while (len > 0 && (json[len - 1] == '\n' || json[len - 1] == ' '))
        len--;
    for (size_t n = 0; n < len; n++) {
        vb_run_page page;
        vb_error err;
        vb_error_clear(&err);
        assert_int_equal(vb_run_page_parse(json, n, &page, &err), VB_ERR_PARSE);
        assert_int_equal(page.list.n, 0);
        assert_null(page.list.runs);
    }
    free(json);
}

static void run_page_non_200_code_is_api_error(void **state)
{
    vb_run_page page;
    vb_error err;
    assert_int_equal(parse("{\"code\":401,\"status\":\"success\",\"data\":{}}", &page, &err),
                     VB_ERR_API);
    assert_non_null(strstr(err.msg, "API returned"));
    assert_non_null(strstr(err.msg, "401"));
    assert_int_equal(page.list.n, 0);
}

static void run_page_error_status_is_api_error(void **state)
{
    vb_run_page page;
    vb_error err;
    assert_int_equal(parse("{\"code\":200,\"status\":\"error\",\"message\":\"token expired\"}",
                           &page, &err),
                     VB_ERR_API);
    assert_non_null(strstr(err.msg, "API returned"));
    assert_non_null(strstr(err.msg, "status=error"));
    assert_non_null(strstr(err.msg, "token expired"));
    assert_int_equal(parse("{\"code\":\"200\",\"status\":\"success\"}", &page, &err), VB_ERR_API);
    assert_int_equal(parse("{\"data\":{\"vision_analysis\":[]}}", &page, &err), VB_ERR_API);
}

static void run_page_malformed_json_is_parse_error(void **state)
{
    static const char *const bad[] = {"", "{", "[1,2]", "null", "\"x\"", "{\"code\":200,}",
                                      "{\"code\":200,\"status\":\"success\"}",
                                      "{\"code\":200,\"status\":\"success\",\"data\":[]}",
                                      "{\"code\":200,\"status\":\"success\",\"data\":{\"total\":3}}",
                                      "{\"code\":200,\"status\":\"success\",\"data\":"
                                      "{\"vision_analysis\":{}}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vb_run_page page;
        vb_error err;
        assert_int_equal(parse(bad[i], &page, &err), VB_ERR_PARSE);
        assert_true(err.msg[0] != '\0');
    }
}

static void run_page_without_runs_is_empty_page(void **state)
{
    vb_run_page page;
    vb_error err;
    assert_int_equal(parse("{\"code\":200,\"status\":\"success\",\"data\":{\"total\":0}}", &page,
                           &err),
                     VB_OK);
    assert_int_equal(page.list.n, 0);
    assert_int_equal(page.total, 0);
    assert_int_equal(parse("{\"code\":200,\"status\":\"success\",\"data\":"
                           "{\"vision_analysis\":null}}",
                           &page, &err),
                     VB_OK);
    assert_int_equal(page.list.n, 0);
    assert_int_equal(page.total, -1);
}

static void run_page_skips_invalid_runs_and_counts_them(void **state)
{
    char *json = envelope(
        "[{\"vision_analysis_id\":\"OK-1\",\"organization_id\":\"o\",\"user_query\":\"q\","
        "\"documents\":[" GOOD_DOC "]},"
        "{\"vision_analysis_id\":7,\"organization_id\":\"o\",\"user_query\":\"q\"},"
        "{\"organization_id\":\"o\",\"user_query\":\"q\"},"
        "{\"vision_analysis_id\":\"\",\"organization_id\":\"o\",\"user_query\":\"q\"},"
        "{\"vision_analysis_id\":\"a/../b\",\"organization_id\":\"o\",\"user_query\":\"q\"},"
        "{\"vision_analysis_id\":\"R3\",\"organization_id\":\"o\",\"user_query\":5},"
        "{\"vision_analysis_id\":\"R4\",\"organization_id\":null,\"user_query\":\"q\"},"
        "{\"vision_analysis_id\":\"R5\",\"organization_id\":\"o\",\"user_query\":\"q\","
        "\"documents\":{}},"
        "{\"vision_analysis_id\":\"R6\",\"organization_id\":\"o\",\"user_query\":\"q\","
        "\"documents\":[{\"document_path\":\"u\",\"document_name\":\"n\",\"is_input\":\"yes\","
        "\"document_type\":\"image\"}]},"
        "{\"vision_analysis_id\":\"R7\",\"organization_id\":\"o\",\"user_query\":\"q\","
        "\"documents\":[{\"document_name\":\"n\",\"is_input\":true,\"document_type\":\"image\"}]},"
        "{\"vision_analysis_id\":\"R8\",\"organization_id\":\"o\",\"user_query\":\"q\","
        "\"documents\":[7]},"
        "{\"vision_analysis_id\":\"R9\",\"organization_id\":\"o\",\"user_query\":\"q\","
        "\"is_processed\":\"no\"},"
        "\"not an object\", null, [],"
        "{\"vision_analysis_id\":\"OK-2\",\"organization_id\":\"o\",\"user_query\":\"\"}]");
    vb_run_page page;
    vb_error err;
    assert_int_equal(parse(json, &page, &err), VB_OK);
    assert_int_equal(page.list.n, 2);
    assert_int_equal(page.invalid, 14);
    assert_string_equal(page.list.runs[0].id, "OK-1");
    assert_int_equal(page.list.runs[0].ndocs, 1);
    assert_string_equal(page.list.runs[1].id, "OK-2");
    assert_string_equal(page.list.runs[1].user_query, "");
    assert_null(page.list.runs[1].organization_name);
    assert_int_equal(page.list.runs[1].ndocs, 0);
    vb_run_page_free(&page);
    free(json);
}

static void run_page_accepts_zero_and_one_as_booleans(void **state)
{
    char *json = envelope(
        "[{\"vision_analysis_id\":\"A\",\"organization_id\":\"o\",\"user_query\":\"q\","
        "\"is_processed\":1,\"documents\":[{\"document_path\":\"u\",\"document_name\":\"n\","
        "\"is_input\":0,\"document_type\":\"image\"}]},"
        "{\"vision_analysis_id\":\"B\",\"organization_id\":\"o\",\"user_query\":\"q\","
        "\"documents\":[{\"document_path\":\"u\",\"document_name\":\"n\",\"is_input\":2,"
        "\"document_type\":\"image\"}]}]");
    vb_run_page page;
    vb_error err;
    assert_int_equal(parse(json, &page, &err), VB_OK);
    assert_int_equal(page.list.n, 1);
    assert_int_equal(page.invalid, 1);
    assert_int_equal(page.list.runs[0].is_processed, 1);
    assert_int_equal(page.list.runs[0].docs[0].is_input, 0);
    vb_run_page_free(&page);
    free(json);
}

static void run_page_matches_document_type_ignoring_case(void **state)
{
    char *json = envelope(
        "[{\"vision_analysis_id\":\"A\",\"organization_id\":\"o\",\"user_query\":\"q\","
        "\"documents\":["
        "{\"document_path\":\"u\",\"document_name\":\"a\",\"is_input\":true,"
        "\"document_type\":\"IMAGE\"},"
        "{\"document_path\":\"u\",\"document_name\":\"b\",\"is_input\":true,"
        "\"document_type\":\"Json\"},"
        "{\"document_path\":\"u\",\"document_name\":\"c\",\"is_input\":true,"
        "\"document_type\":\"pdf\"}]}]");
    vb_run_page page;
    vb_error err;
    assert_int_equal(parse(json, &page, &err), VB_OK);
    assert_int_equal(page.list.n, 1);
    assert_int_equal(page.list.runs[0].docs[0].type, VB_DOC_IMAGE);
    assert_int_equal(page.list.runs[0].docs[1].type, VB_DOC_JSON);
    assert_int_equal(page.list.runs[0].docs[2].type, VB_DOC_OTHER);
    vb_run_page_free(&page);
    free(json);
}

static void run_page_refuses_more_than_ten_thousand_runs(void **state)
{
    vb_buf b = {0};
    assert_int_equal(vb_buf_append_str(&b, "["), VB_OK);
    for (int i = 0; i < VB_RUN_MAX_PER_PAGE + 1; i++)
        assert_int_equal(vb_buf_append_str(&b, i ? ",{}" : "{}"), VB_OK);
    assert_int_equal(vb_buf_append_str(&b, "]"), VB_OK);
    char *json = envelope(b.data);
    vb_run_page page;
    vb_error err;
    assert_int_equal(parse(json, &page, &err), VB_ERR_TOO_LARGE);
    assert_int_equal(page.list.n, 0);
    vb_buf_free(&b);
    free(json);
}

static void run_with_too_many_documents_is_invalid(void **state)
{
    vb_buf b = {0};
    for (int extra = 0; extra <= 1; extra++) {
        vb_buf_reset(&b);
        assert_int_equal(vb_buf_append_str(&b, "[{\"vision_analysis_id\":\"A\",\"organization_id\":"
                                               "\"o\",\"user_query\":\"q\",\"documents\":["),
                         VB_OK);
        for (int i = 0; i < VB_RUN_MAX_DOCS + extra; i++)
            assert_int_equal(vb_buf_printf(&b, "%s" GOOD_DOC, i ? "," : ""), VB_OK);
        assert_int_equal(vb_buf_append_str(&b, "]}]"), VB_OK);
        char *json = envelope(b.data);
        vb_run_page page;
        vb_error err;
        assert_int_equal(parse(json, &page, &err), VB_OK);
        assert_int_equal(page.list.n, extra ? 0 : 1);
        assert_int_equal(page.invalid, extra ? 1 : 0);
        if (!extra)
            assert_int_equal(page.list.runs[0].ndocs, VB_RUN_MAX_DOCS);
        vb_run_page_free(&page);
        free(json);
    }
    vb_buf_free(&b);
}

static void run_page_survives_deep_nesting(void **state)
{
    vb_buf b = {0};
    for (int i = 0; i < 100000; i++)
        assert_int_equal(vb_buf_append_str(&b, "["), VB_OK);
    vb_run_page page;
    vb_error err;
    assert_int_equal(parse(b.data, &page, &err), VB_ERR_PARSE);
    /* Nesting inside a field: within cJSON's limit, so parsed, then refused by type. */
    vb_buf_reset(&b);
    assert_int_equal(vb_buf_append_str(&b, "[{\"vision_analysis_id\":\"A\",\"organization_id\":"
                                           "\"o\",\"user_query\":"),
                     VB_OK);
    for (int i = 0; i < 900; i++)
        assert_int_equal(vb_buf_append_str(&b, "["), VB_OK);
    for (int i = 0; i < 900; i++)
        assert_int_equal(vb_buf_append_str(&b, "]"), VB_OK);
    assert_int_equal(vb_buf_append_str(&b, "}]"), VB_OK);
    char *json = envelope(b.data);
    assert_int_equal(parse(json, &page, &err), VB_OK);
    assert_int_equal(page.list.n, 0);
    assert_int_equal(page.invalid, 1);
    vb_run_page_free(&page);
    free(json);
    vb_buf_free(&b);
}

static void run_enforces_string_limits(void **state)
{
    vb_buf b = {0};
    char id[VB_RUN_MAX_ID + 2];
    memset(id, 'A', sizeof id - 1);
    id[sizeof id - 1] = '\0'; /* 129 characters */
    char *query = malloc(VB_RUN_MAX_QUERY + 2);
    memset(query, 'q', VB_RUN_MAX_QUERY + 1);
    query[VB_RUN_MAX_QUERY + 1] = '\0';
    assert_int_equal(vb_buf_printf(&b,
                                   "[{\"vision_analysis_id\":\"%s\",\"organization_id\":\"o\","
                                   "\"user_query\":\"q\"},",
                                   id),
                     VB_OK);
    assert_int_equal(vb_buf_printf(&b,
                                   "{\"vision_analysis_id\":\"B\",\"organization_id\":\"o\","
                                   "\"user_query\":\"%s\"},",
                                   query),
                     VB_OK);
    query[VB_RUN_MAX_QUERY] = '\0'; /* exactly at the limit: accepted */
    id[VB_RUN_MAX_ID] = '\0';
    assert_int_equal(vb_buf_printf(&b,
                                   "{\"vision_analysis_id\":\"%s\",\"organization_id\":\"o\","
                                   "\"user_query\":\"%s\"}]",
                                   id, query),
                     VB_OK);
    char *json = envelope(b.data);
    vb_run_page page;
    vb_error err;
    assert_int_equal(parse(json, &page, &err), VB_OK);
    assert_int_equal(page.invalid, 2);
    assert_int_equal(page.list.n, 1);
    assert_int_equal(strlen(page.list.runs[0].id), VB_RUN_MAX_ID);
    assert_int_equal(strlen(page.list.runs[0].user_query), VB_RUN_MAX_QUERY);
    vb_run_page_free(&page);
    free(json);
    free(query);
    vb_buf_free(&b);
}

/* Bytes that are not UTF-8 must not reach the backend or Kafka as invalid
 * JSON: each becomes U+FFFD, valid text (é, €, 𝄞) stays as it is. */
static void run_strings_are_repaired_to_valid_utf8(void **state)
{
    char *json = envelope("[{\"vision_analysis_id\":\"R1\",\"organization_id\":\"o\xc3\","
                          "\"user_query\":\"caf\xc3\xa9 \xff\xfe \xe2\x82\xac \xed\xa0\x80 "
                          "\xf0\x9d\x84\x9e \xc0\xaf \xe2\x82\"}]");
    vb_run_page page;
    vb_error err;
    assert_int_equal(parse(json, &page, &err), VB_OK);
    assert_int_equal(page.list.n, 1);
    const vb_run *r = &page.list.runs[0];
    assert_string_equal(r->user_query, "caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd \xe2\x82\xac "
                                       "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
                                       "\xf0\x9d\x84\x9e \xef\xbf\xbd\xef\xbf\xbd "
                                       "\xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(r->organization_id, "o\xef\xbf\xbd");
    /* what goes on to Kafka parses back as the same run */
    char *out = vb_run_to_json(r);
    assert_non_null(out);
    vb_run back;
    assert_int_equal(vb_run_parse_json(out, strlen(out), &back, &err), VB_OK);
    assert_string_equal(back.user_query, r->user_query);
    vb_run_free(&back);
    free(out);
    vb_run_page_free(&page);
    free(json);
}

/* A page served again is recognised by its entries, valid or not, whatever
 * the envelope says (a server ignoring paging may still echo the page). */
static void run_page_content_hash_ignores_the_envelope(void **state)
{
    const char *bad = "[{\"vision_analysis_id\":\"R1\"},{\"vision_analysis_id\":\"R2\"}]";
#define PAGE_FMT                                                                                   \
    "{\"code\":200,\"status\":\"success\",\"data\":{\"page\":%d,\"page_size\":2,\"total\":9,"        \
    "\"vision_analysis\":%s}}"
    char a[512], b[512], c[512];
    snprintf(a, sizeof a, PAGE_FMT, 1, bad);
    snprintf(b, sizeof b, PAGE_FMT, 2, bad);
    snprintf(c, sizeof c, PAGE_FMT, 2, "[{\"vision_analysis_id\":\"R3\"}]");
#undef PAGE_FMT
    vb_run_page pa, pb, pc, empty;
    vb_error err;
    assert_int_equal(parse(a, &pa, &err), VB_OK);
    assert_int_equal(parse(b, &pb, &err), VB_OK);
    assert_int_equal(parse(c, &pc, &err), VB_OK);
    assert_int_equal(pa.list.n, 0);
    assert_int_equal(pa.invalid, 2);
    assert_true(pa.content_hash != 0);
    assert_true(pa.content_hash == pb.content_hash);
    assert_true(pc.content_hash != pa.content_hash);
    char *e = envelope("[]");
    assert_int_equal(parse(e, &empty, &err), VB_OK);
    assert_true(empty.content_hash == 0);
    free(e);
    vb_run_page_free(&pa);
    vb_run_page_free(&pb);
    vb_run_page_free(&pc);
    vb_run_page_free(&empty);
}

static void run_json_round_trips(void **state)
{
    size_t len;
    char *json = tu_read_data("guide_get_response.json", &len);
    vb_run_page page;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_run_page_parse(json, len, &page, &err), VB_OK);
    const vb_run *a = &page.list.runs[0];
    char *text = vb_run_to_json(a);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"vision_analysis_id\":\"6004729D-E2C2-43D3-833C-79CE18E00646\""));
    assert_non_null(strstr(text, "\"document_type\":\"json\""));
    vb_run b;
    assert_int_equal(vb_run_parse_json(text, strlen(text), &b, &err), VB_OK);
    assert_string_equal(b.id, a->id);
    assert_string_equal(b.run_code, a->run_code);
    assert_string_equal(b.organization_id, a->organization_id);
    assert_string_equal(b.organization_name, a->organization_name);
    assert_string_equal(b.user_query, a->user_query);
    assert_string_equal(b.created_date, a->created_date);
    assert_int_equal(b.is_processed, a->is_processed);
    assert_int_equal(b.ndocs, a->ndocs);
    for (size_t i = 0; i < a->ndocs; i++) {
        assert_string_equal(b.docs[i].documents_id, a->docs[i].documents_id);
        assert_string_equal(b.docs[i].document_id, a->docs[i].document_id);
        assert_string_equal(b.docs[i].path, a->docs[i].path);
        assert_string_equal(b.docs[i].name, a->docs[i].name);
        assert_int_equal(b.docs[i].is_input, a->docs[i].is_input);
        assert_int_equal(b.docs[i].type, a->docs[i].type);
    }
    /* Optional fields left NULL survive as null. */
    free(b.run_code);
    b.run_code = NULL;
    char *text2 = vb_run_to_json(&b);
    vb_run c;
    assert_int_equal(vb_run_parse_json(text2, strlen(text2), &c, &err), VB_OK);
    assert_null(c.run_code);
    vb_run_free(&c);
    vb_run_free(&b);
    free(text2);
    free(text);
    vb_run_page_free(&page);
    free(json);
}

static void run_parse_json_names_the_bad_field(void **state)
{
    vb_run r;
    vb_error err;
    vb_error_clear(&err);
    const char *j = "{\"vision_analysis_id\":\"A\",\"organization_id\":\"o\"}";
    assert_int_equal(vb_run_parse_json(j, strlen(j), &r, &err), VB_ERR_PARSE);
    assert_non_null(strstr(err.msg, "user_query"));
    assert_null(r.id);
    vb_error_clear(&err);
    assert_int_equal(vb_run_parse_json("{\"a\"", 4, &r, &err), VB_ERR_PARSE);
}

static void run_copy_and_list_push_are_deep(void **state)
{
    vb_document d = {.path = "p", .name = "n", .is_input = 1, .type = VB_DOC_IMAGE};
    vb_run r = {.id = "X", .organization_id = "o", .user_query = "q", .docs = &d, .ndocs = 1};
    vb_run_list list = {0};
    assert_int_equal(vb_run_list_push(&list, &r), VB_OK);
    assert_int_equal(vb_run_list_push(&list, &r), VB_OK);
    assert_int_equal(list.n, 2);
    assert_ptr_not_equal(list.runs[1].id, r.id);
    assert_string_equal(list.runs[1].docs[0].path, "p");
    assert_null(list.runs[1].run_code);
    vb_run_list_free(&list);
    assert_int_equal(list.n, 0);
    vb_run_list_free(NULL);
    vb_run_free(NULL);
}

static void id_equal_ignores_case(void **state)
{
    assert_true(vb_id_equal("38162954-469a-40bc", "38162954-469A-40BC"));
    assert_false(vb_id_equal("abc", "abd"));
    assert_false(vb_id_equal(NULL, "a"));
    assert_true(vb_run_id_valid("6004729D-E2C2-43D3-833C-79CE18E00646"));
    assert_false(vb_run_id_valid(".."));
    assert_false(vb_run_id_valid("a b"));
    assert_false(vb_run_id_valid("a\nb"));
    assert_false(vb_run_id_valid(""));
}

/* The one run id rule every layer uses (store, API, messages, executions). */
static void run_id_rule_allows_colon_and_caps_the_length(void **state)
{
    (void)state;
    const char *good[] = {"a", "A:B", "org:run:1", "run.1_2-3", ".a", "a..b", "0"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        assert_true(vb_run_id_valid(good[i]));
    const char *bad[] = {NULL, "", ".", "...", "a/b", "a\\b", "a%3Ab", "a;b", "\xc3\xa9",
                         "a\tb", "a\"b", "a*b"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(vb_run_id_valid(bad[i]));
    char id[VB_RUN_MAX_ID + 2];
    memset(id, 'x', sizeof id);
    id[VB_RUN_MAX_ID] = '\0';
    assert_true(vb_run_id_valid(id));
    id[VB_RUN_MAX_ID] = 'x';
    id[VB_RUN_MAX_ID + 1] = '\0';
    assert_false(vb_run_id_valid(id));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(run_id_rule_allows_colon_and_caps_the_length),
        cmocka_unit_test(run_page_parses_guide_example_exactly),
        cmocka_unit_test(run_page_every_truncation_fails_cleanly),
        cmocka_unit_test(run_page_non_200_code_is_api_error),
        cmocka_unit_test(run_page_error_status_is_api_error),
        cmocka_unit_test(run_page_malformed_json_is_parse_error),
        cmocka_unit_test(run_page_without_runs_is_empty_page),
        cmocka_unit_test(run_page_skips_invalid_runs_and_counts_them),
        cmocka_unit_test(run_page_accepts_zero_and_one_as_booleans),
        cmocka_unit_test(run_page_matches_document_type_ignoring_case),
        cmocka_unit_test(run_page_refuses_more_than_ten_thousand_runs),
        cmocka_unit_test(run_with_too_many_documents_is_invalid),
        cmocka_unit_test(run_page_survives_deep_nesting),
        cmocka_unit_test(run_enforces_string_limits),
        cmocka_unit_test(run_strings_are_repaired_to_valid_utf8),
        cmocka_unit_test(run_page_content_hash_ignores_the_envelope),
        cmocka_unit_test(run_json_round_trips),
        cmocka_unit_test(run_parse_json_names_the_bad_field),
        cmocka_unit_test(run_copy_and_list_push_are_deep),
        cmocka_unit_test(id_equal_ignores_case),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
