/* Unit tests of seal.c: a run sealed into its Kafka message — round trip
 * with the document URLs intact, nothing readable in the message, and every
 * way a sealed value must refuse to open (another key, another run,
 * altered, not a sealed value) — and of the message's "sealed" field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "visionbatch/message.h"
#include "visionbatch/seal.h"

#define KEY_B64 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define KEY2_B64 "//////////////////////////////////////////8="
#define RUN_ID "6004729D-E2C2-43D3-833C-79CE18E00646"
#define OTHER_ID "7104729D-E2C2-43D3-833C-79CE18E00647"
#define URL "https://blob.example/c/oceanix_01.jpg?sv=2024&sig=SECRETSIG%3D"

static void make_run(vb_run *r, vb_document *d)
{
    memset(r, 0, sizeof *r);
    memset(d, 0, sizeof *d);
    r->id = RUN_ID;
    r->organization_id = "38162954-469A-40BC-B619-3E9F71DE6DB9";
    r->organization_name = "LexCorp";
    r->user_query = "Analyze";
    r->run_code = "VISION_RUN_001";
    d->path = URL;
    d->name = "oceanix_01.jpg";
    d->is_input = 1;
    d->type = VB_DOC_IMAGE;
    r->docs = d;
    r->ndocs = 1;
}

static void key(const char *b64, unsigned char k[VB_CRYPTO_KEY_SIZE])
{
    assert_int_equal(vb_crypto_key_parse(b64, k, NULL), VB_OK);
}

static void sealed_run_opens_with_its_urls(void **state)
{
    unsigned char k[VB_CRYPTO_KEY_SIZE];
    key(KEY_B64, k);
    vb_run r, out;
    vb_document d;
    make_run(&r, &d);
    char *s1 = NULL, *s2 = NULL;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_seal_run(k, &r, &s1, &err), VB_OK);
    assert_int_equal(vb_seal_run(k, &r, &s2, &err), VB_OK);
    assert_string_not_equal(s1, s2); /* a fresh nonce each time */
    assert_null(strstr(s1, "SECRETSIG"));
    assert_null(strstr(s1, "blob.example"));
    /* the id opens it whatever its case */
    assert_int_equal(vb_seal_open_run(k, "6004729d-e2c2-43d3-833c-79ce18e00646", s1, &out, &err),
                     VB_OK);
    assert_string_equal(out.id, RUN_ID);
    assert_string_equal(out.user_query, "Analyze");
    assert_string_equal(out.organization_name, "LexCorp");
    assert_int_equal(out.ndocs, 1);
    assert_string_equal(out.docs[0].path, URL);
    assert_int_equal(out.docs[0].type, VB_DOC_IMAGE);
    vb_run_free(&out);
    free(s1);
    free(s2);
}

static void sealed_run_refuses_another_key_run_or_alteration(void **state)
{
    unsigned char k[VB_CRYPTO_KEY_SIZE], k2[VB_CRYPTO_KEY_SIZE];
    key(KEY_B64, k);
    key(KEY2_B64, k2);
    vb_run r, out;
    vb_document d;
    make_run(&r, &d);
    char *s = NULL;
    vb_error err;
    vb_error_clear(&err);
    assert_int_equal(vb_seal_run(k, &r, &s, &err), VB_OK);

    assert_int_equal(vb_seal_open_run(k2, RUN_ID, s, &out, &err), VB_ERR_CRYPTO);
    assert_null(out.id);
    assert_null(strstr(err.msg, "SECRETSIG"));
    vb_error_clear(&err);
    /* moved to another run's message */
    assert_int_equal(vb_seal_open_run(k, OTHER_ID, s, &out, &err), VB_ERR_CRYPTO);
    assert_null(out.id);
    /* any byte changed */
    size_t n = strlen(s);
    for (size_t i = 3; i < n; i += 7) {
        char *t = strdup(s);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        assert_int_not_equal(vb_seal_open_run(k, RUN_ID, t, &out, NULL), VB_OK);
        assert_null(out.id);
        free(t);
    }
    /* not a sealed value at all, and a sealed API key (no run binding) */
    assert_int_equal(vb_seal_open_run(k, RUN_ID, "v1:", &out, NULL), VB_ERR_CRYPTO);
    assert_int_equal(vb_seal_open_run(k, RUN_ID, "plain text", &out, NULL), VB_ERR_CRYPTO);
    char *apikey = NULL;
    assert_int_equal(vb_crypto_seal(k, "{\"vision_analysis_id\":\"" RUN_ID "\"}", &apikey, NULL),
                     VB_OK);
    assert_int_equal(vb_seal_open_run(k, RUN_ID, apikey, &out, NULL), VB_ERR_CRYPTO);
    /* arguments */
    assert_int_equal(vb_seal_open_run(k, "../x", s, &out, NULL), VB_ERR_INVALID);
    assert_int_equal(vb_seal_open_run(k, RUN_ID, NULL, &out, NULL), VB_ERR_INVALID);
    free(apikey);
    free(s);
}

static void sealed_text_that_is_not_a_run_of_that_id_is_refused(void **state)
{
    unsigned char k[VB_CRYPTO_KEY_SIZE];
    key(KEY_B64, k);
    vb_run out;
    char *s = NULL;
    vb_error err;
    /* properly sealed and bound, but the text names another run */
    char ctx[256];
    snprintf(ctx, sizeof ctx, "%s%s", VB_SEAL_RUN_CONTEXT, "6004729d-e2c2-43d3-833c-79ce18e00646");
    assert_int_equal(vb_crypto_seal_bound(k, ctx,
                                          "{\"vision_analysis_id\":\"" OTHER_ID "\","
                                          "\"organization_id\":\"o\",\"user_query\":\"q\","
                                          "\"documents\":[]}",
                                          &s, NULL),
                     VB_OK);
    vb_error_clear(&err);
    assert_int_equal(vb_seal_open_run(k, RUN_ID, s, &out, &err), VB_ERR_PARSE);
    assert_null(out.id);
    free(s);
    assert_int_equal(vb_crypto_seal_bound(k, ctx, "not json", &s, NULL), VB_OK);
    assert_int_equal(vb_seal_open_run(k, RUN_ID, s, &out, &err), VB_ERR_PARSE);
    free(s);
}

static void message_carries_the_sealed_field_as_is(void **state)
{
    unsigned char k[VB_CRYPTO_KEY_SIZE];
    key(KEY_B64, k);
    vb_run r;
    vb_document d;
    make_run(&r, &d);
    char *sealed = NULL, *json = NULL;
    assert_int_equal(vb_seal_run(k, &r, &sealed, NULL), VB_OK);
    assert_int_equal(vb_run_msg_encode_ex(&r, NULL, NULL, "t", 1, sealed, &json, NULL), VB_OK);
    assert_null(strstr(json, "SECRETSIG"));
    assert_null(strstr(json, "sig="));
    vb_run_msg m;
    assert_int_equal(vb_run_msg_decode(json, strlen(json), &m, NULL), VB_OK);
    assert_string_equal(m.sealed, sealed);
    assert_false(m.sealed_invalid);
    assert_string_equal(m.run.docs[0].path, "https://blob.example/c/oceanix_01.jpg");
    vb_run out;
    assert_int_equal(vb_seal_open_run(k, m.run_id, m.sealed, &out, NULL), VB_OK);
    assert_string_equal(out.docs[0].path, URL);
    vb_run_free(&out);
    vb_run_msg_free(&m);
    free(json);
    free(sealed);
}

static void message_without_or_with_a_bad_sealed_field_still_decodes(void **state)
{
    vb_run_msg m;
    const char *tails[] = {"", ",\"sealed\":null", ",\"sealed\":42", ",\"sealed\":{}"};
    for (size_t i = 0; i < sizeof tails / sizeof *tails; i++) {
        char json[512];
        snprintf(json, sizeof json,
                 "{\"schema\":1,\"run_id\":\"" RUN_ID "\",\"credentials\":{\"source\":"
                 "\"config\"}%s}",
                 tails[i]);
        assert_int_equal(vb_run_msg_decode(json, strlen(json), &m, NULL), VB_OK);
        assert_null(m.sealed);
        assert_int_equal(m.sealed_invalid, i >= 2);
        vb_run_msg_free(&m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sealed_run_opens_with_its_urls),
        cmocka_unit_test(sealed_run_refuses_another_key_run_or_alteration),
        cmocka_unit_test(sealed_text_that_is_not_a_run_of_that_id_is_refused),
        cmocka_unit_test(message_carries_the_sealed_field_as_is),
        cmocka_unit_test(message_without_or_with_a_bad_sealed_field_still_decodes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
