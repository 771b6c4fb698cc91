/* Unit tests of redact.c: registered secrets, Bearer/Authorization values,
 * URL userinfo and secret query parameters; redaction never lengthens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "visionbatch/redact.h"

static int reset(void **state)
{
    vb_redact_clear_secrets();
    return 0;
}

/* Redacts a copy of `in` and checks the result equals `want` and is no
 * longer than the input. */
static void expect_text(const char *in, const char *want)
{
    char *copy = strdup(in);
    assert_non_null(copy);
    vb_redact_text(copy);
    assert_string_equal(copy, want);
    assert_true(strlen(copy) <= strlen(in));
    free(copy);
}

static void expect_url(const char *in, const char *want)
{
    char out[1024];
    assert_ptr_equal(vb_redact_url(in, out, sizeof out), out);
    assert_string_equal(out, want);
}

static void url_masks_azure_sas_signature_only(void **state)
{
    expect_url("https://acct.blob.core.windows.net/c/img.jpg?sv=2022-11-02&ss=b&srt=o&sp=r"
               "&se=2026-01-01T00:00:00Z&st=2025-01-01&spr=https&sig=AbC%2Bdef%3D",
               "https://acct.blob.core.windows.net/c/img.jpg?sv=2022-11-02&ss=b&srt=o&sp=r"
               "&se=2026-01-01T00:00:00Z&st=2025-01-01&spr=https&sig=***");
}

static void url_masks_sig_at_end_and_first(void **state)
{
    expect_url("https://h/p?sig=abcdef", "https://h/p?sig=***");
    expect_url("https://h/p?a=1&sig=abcdef#frag", "https://h/p?a=1&sig=***#frag");
}

static void url_masks_secret_names_case_insensitively(void **state)
{
    expect_url("https://s3/x?X-Amz-Credential=AKIA123&X-Amz-Signature=deadbeef&X-Amz-Date=1",
               "https://s3/x?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Date=1");
    expect_url("http://h/?TOKEN=abc123&Api_Key=zzzz&password=hunter2&code=42",
               "http://h/?TOKEN=***&Api_Key=***&password=***&code=**");
    expect_url("http://h/?access_token=a.b.c&refresh_token=rrrr&client_secret=ssss",
               "http://h/?access_token=***&refresh_token=***&client_secret=***");
}

static void url_masks_percent_encoded_parameter_name(void **state)
{
    expect_url("http://h/?%73ig=abcdef&x=1", "http://h/?%73ig=***&x=1");
}

/* A URL (or a name=value pair) percent-encoded once or twice, as in an error
 * body echoing a query string or a URL passed inside another URL. */
static void text_masks_percent_encoded_name_value(void **state)
{
    expect_text("API returned 401: {\"error\":\"bad signature sig%3DAbC%252Bdef%253D\"}",
                "API returned 401: {\"error\":\"bad signature sig%3D***\"}");
    expect_text("forbidden: token%3Dsecret123 expired", "forbidden: token%3D*** expired");
    expect_text("u=https%3A%2F%2Fh%2Fp%3Fsv%3D1%26sig%3DS3cr3t%26se%3D2026",
                "u=https%3A%2F%2Fh%2Fp%3Fsv%3D1%26sig%3D***%26se%3D2026");
    expect_text("u=https%253A%252F%252Fh%253Fsp%253Dr%2526sig%253DS3cr3t%2526se%253D1",
                "u=https%253A%252F%252Fh%253Fsp%253Dr%2526sig%253D***%2526se%253D1");
    expect_text("x%3Fsig%25253Dtriple%252526sv%25253D1", "x%3Fsig%25253D***%252526sv%25253D1");
    expect_text("%26Access_Token%3Dabcd&x=1", "%26Access_Token%3D***&x=1");
    expect_text("sig%3dlower#frag", "sig%3d***#frag");
    /* harmless names and look-alikes stay */
    expect_text("design%3Dabc sv%3D2022 se%253D2026 a%3D%26b", "design%3Dabc sv%3D2022 "
                                                            "se%253D2026 a%3D%26b");
    expect_text("100%3D sig%3", "100%3D sig%3");
    expect_text("sig%3D", "sig%3D");
}

static void url_masks_userinfo(void **state)
{
    expect_url("https://user:pa55word@example.com:8443/path?q=1",
               "https://***@example.com:8443/path?q=1");
    expect_url("redis://:secretpw@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0");
    /* An '@' in the path is not userinfo. */
    expect_url("https://example.com/users/@me", "https://example.com/users/@me");
}

static void url_without_query_is_unchanged(void **state)
{
    expect_url("https://example.com/a/b.jpg", "https://example.com/a/b.jpg");
    expect_url("", "");
    expect_url("https://h/p?", "https://h/p?");
    expect_url("https://h/p?sig=", "https://h/p?sig=");
    expect_url("https://h/p?signal=1&keys=2", "https://h/p?signal=1&keys=2");
}

static void url_output_is_truncated_and_terminated(void **state)
{
    char out[16];
    vb_redact_url("https://example.com/long/path?sig=abcdef", out, sizeof out);
    assert_int_equal(strlen(out), sizeof out - 1);
    assert_string_equal(out, "https://example");
    char tiny[1] = {'x'};
    vb_redact_url("https://h", tiny, sizeof tiny);
    assert_int_equal(tiny[0], '\0');
    char n[8];
    assert_string_equal(vb_redact_url(NULL, n, sizeof n), "");
}

static void url_truncation_never_reveals_part_of_a_secret(void **state)
{
    char out[24];
    vb_redact_url("https://h/p?sig=abcdefghijklmnopqrstuvwxyz", out, sizeof out);
    assert_null(strstr(out, "abc"));
}

static void text_masks_bearer_token(void **state)
{
    expect_text("sending Authorization header Bearer eyJhbGciOi.eyJzdWIi.c2ln to api",
                "sending Authorization header Bearer *** to api");
    expect_text("bearer abc, next", "bearer ***, next");
    expect_text("\"Bearer xyz\"", "\"Bearer ***\"");
}

static void text_masks_authorization_to_end_of_line(void **state)
{
    expect_text("Authorization: Basic dXNlcjpwYXNz\nnext line",
                "Authorization: ***\nnext line");
    expect_text("proxy-authorization:  token123  ", "proxy-authorization:  ***  ");
    expect_text("Authorization:", "Authorization:");
    expect_text("no authorization here", "no authorization here");
}

static void text_masks_registered_secret_anywhere(void **state)
{
    vb_redact_add_secret("s3cr3t-key-value");
    expect_text("key=s3cr3t-key-value;again:s3cr3t-key-value.",
                "key=***;again:***.");
}

static void short_secrets_are_not_registered(void **state)
{
    vb_redact_add_secret("abc");
    vb_redact_add_secret("");
    vb_redact_add_secret(NULL);
    expect_text("abc abc", "abc abc");
}

static void longer_secret_containing_shorter_is_masked_whole(void **state)
{
    vb_redact_add_secret("abcd");
    vb_redact_add_secret("xxabcdyy");
    expect_text("[xxabcdyy] [abcd]", "[***] [***]");
}

/* Many registered secrets (a cron job's key each): the scan skips those
 * whose first bytes are nowhere in the text, yet masks exactly what the
 * secret-by-secret search masked, including a secret that only appears
 * once a longer one is masked ("***f" after "abcde" became "***"). */
static void many_secrets_mask_the_same_as_one_by_one(void **state)
{
    char s[32];
    for (int i = 0; i < 200; i++) {
        snprintf(s, sizeof s, "filler-secret-%03d", i);
        vb_redact_add_secret(s);
        vb_redact_add_secret(s); /* a repeat is not stored twice */
    }
    vb_redact_add_secret("abcde");
    vb_redact_add_secret("***f");
    expect_text("id abcdefgh and filler-secret-117, filler-secret-199 end",
                "id ***gh and ***, *** end");
    expect_text("filler-secret-000filler-secret-001", "******");
    expect_text("nothing secret here", "nothing secret here");
    expect_text("fill", "fill");
}

static void text_with_several_urls_masks_each(void **state)
{
    expect_text("download https://a.blob/x.jpg?sp=r&sig=AAAA failed; retry "
                "http://u:p@b.example/y?token=BBBB&page=2 ok",
                "download https://a.blob/x.jpg?sp=r&sig=*** failed; retry "
                "http://***@b.example/y?token=***&page=2 ok");
}

static void text_url_value_stops_at_quote(void **state)
{
    expect_text("{\"url\":\"https://h/p?sig=abcd\",\"n\":1}",
                "{\"url\":\"https://h/p?sig=***\",\"n\":1}");
}

static void short_values_are_masked_per_byte(void **state)
{
    expect_text("https://h/?sig=a&key=bc", "https://h/?sig=*&key=**");
    expect_text("Bearer x", "Bearer *");
}

static void empty_and_null_text_are_fine(void **state)
{
    expect_text("", "");
    vb_redact_text(NULL);
}

static void redaction_is_idempotent(void **state)
{
    expect_text("Bearer *** https://h/?sig=***", "Bearer *** https://h/?sig=***");
}

static void clear_forgets_secrets(void **state)
{
    vb_redact_add_secret("forget-me");
    vb_redact_clear_secrets();
    expect_text("forget-me", "forget-me");
    /* ... entirely: registered again, it is masked again */
    vb_redact_add_secret("forget-me");
    vb_redact_add_secret("forget-me");
    expect_text("forget-me", "***");
}

static void *register_many(void *arg)
{
    (void)arg;
    char secret[32];
    for (int i = 0; i < 200; i++) {
        snprintf(secret, sizeof secret, "concurrent-secret-%03d", i);
        vb_redact_add_secret(secret);
    }
    return NULL;
}

/* Secrets registered by one thread (past the size where scrubbing filters
 * by first bytes) while another redacts: each registered secret is masked,
 * and the registry is never read outside its lock (the ThreadSanitizer pass
 * runs this test). */
static void secrets_registered_while_redacting_are_masked(void **state)
{
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, register_many, NULL), 0);
    for (int i = 0; i < 2000; i++) {
        char text[] = "key concurrent-secret-000 and more text to scan";
        vb_redact_text(text);
    }
    assert_int_equal(pthread_join(t, NULL), 0);
    expect_text("a concurrent-secret-000 b concurrent-secret-199 c", "a *** b *** c");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(url_masks_azure_sas_signature_only, reset),
        cmocka_unit_test_setup(url_masks_sig_at_end_and_first, reset),
        cmocka_unit_test_setup(url_masks_secret_names_case_insensitively, reset),
        cmocka_unit_test_setup(url_masks_percent_encoded_parameter_name, reset),
        cmocka_unit_test_setup(text_masks_percent_encoded_name_value, reset),
        cmocka_unit_test_setup(url_masks_userinfo, reset),
        cmocka_unit_test_setup(url_without_query_is_unchanged, reset),
        cmocka_unit_test_setup(url_output_is_truncated_and_terminated, reset),
        cmocka_unit_test_setup(url_truncation_never_reveals_part_of_a_secret, reset),
        cmocka_unit_test_setup(text_masks_bearer_token, reset),
        cmocka_unit_test_setup(text_masks_authorization_to_end_of_line, reset),
        cmocka_unit_test_setup(text_masks_registered_secret_anywhere, reset),
        cmocka_unit_test_setup(short_secrets_are_not_registered, reset),
        cmocka_unit_test_setup(longer_secret_containing_shorter_is_masked_whole, reset),
        cmocka_unit_test_setup(many_secrets_mask_the_same_as_one_by_one, reset),
        cmocka_unit_test_setup(text_with_several_urls_masks_each, reset),
        cmocka_unit_test_setup(text_url_value_stops_at_quote, reset),
        cmocka_unit_test_setup(short_values_are_masked_per_byte, reset),
        cmocka_unit_test_setup(empty_and_null_text_are_fine, reset),
        cmocka_unit_test_setup(redaction_is_idempotent, reset),
        cmocka_unit_test_setup(clear_forgets_secrets, reset),
        cmocka_unit_test_setup(secrets_registered_while_redacting_are_masked, reset),
    };
    return cmocka_run_group_tests(tests, NULL, reset);
}
