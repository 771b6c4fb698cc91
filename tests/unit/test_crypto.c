/* Unit tests of crypto.c: key parsing, AES-256-GCM sealing (round trip,
 * tampering, wrong key), constant-time comparison and UUIDs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "visionbatch/crypto.h"

/* base64 of bytes 0x00..0x1f */
#define KEY_B64 "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
/* base64 of 32 bytes of 0xff */
#define KEY2_B64 "//////////////////////////////////////////8="

static void key_parse_accepts_32_bytes_with_whitespace(void **state)
{
    unsigned char k[VB_CRYPTO_KEY_SIZE];
    vb_error err = {0};
    assert_int_equal(vb_crypto_key_parse("  " KEY_B64 "\n", k, &err), VB_OK);
    for (int i = 0; i < 32; i++)
        assert_int_equal(k[i], i);
}

static void key_parse_rejects_wrong_sizes_and_garbage(void **state)
{
    unsigned char k[VB_CRYPTO_KEY_SIZE] = {0};
    vb_error err = {0};
    assert_int_equal(vb_crypto_key_parse("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd", k, &err),
                     VB_ERR_CONFIG); /* 30 bytes */
    assert_non_null(strstr(err.msg, "30 bytes"));
    vb_error_clear(&err);
    assert_int_equal(vb_crypto_key_parse("not base64 at all!!", k, &err), VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "base64"));
    vb_error_clear(&err);
    assert_int_equal(vb_crypto_key_parse("", k, &err), VB_ERR_CONFIG);
    assert_non_null(strstr(err.msg, "empty"));
    assert_int_equal(vb_crypto_key_parse(NULL, k, NULL), VB_ERR_CONFIG);
    assert_int_equal(vb_crypto_key_parse("AAECAw=QFBgcI", k, NULL), VB_ERR_CONFIG);
    for (int i = 0; i < 32; i++)
        assert_int_equal(k[i], 0); /* untouched on failure */
}

static void seal_open_round_trip(void **state)
{
    unsigned char k[VB_CRYPTO_KEY_SIZE];
    vb_error err = {0};
    char *s1 = NULL, *s2 = NULL, *plain = NULL;
    assert_int_equal(vb_crypto_key_parse(KEY_B64, k, &err), VB_OK);
    assert_int_equal(vb_crypto_seal(k, "your_jwt_token", &s1, &err), VB_OK);
    assert_int_equal(vb_crypto_seal(k, "your_jwt_token", &s2, &err), VB_OK);
    assert_true(strncmp(s1, "v1:", 3) == 0);
    assert_null(strstr(s1, "your_jwt_token"));
    assert_string_not_equal(s1, s2); /* fresh nonce each time */
    assert_int_equal(vb_crypto_open(k, s1, &plain, &err), VB_OK);
    assert_string_equal(plain, "your_jwt_token");
    vb_crypto_free_secret(plain);
    free(s1);
    free(s2);
    /* the empty string seals too */
    assert_int_equal(vb_crypto_seal(k, "", &s1, &err), VB_OK);
    assert_int_equal(vb_crypto_open(k, s1, &plain, &err), VB_OK);
    assert_string_equal(plain, "");
    vb_crypto_free_secret(plain);
    free(s1);
}

static void open_detects_tampering(void **state)
{
    unsigned char k[VB_CRYPTO_KEY_SIZE];
    vb_error err = {0};
    char *s = NULL, *plain = (char *)"x";
    assert_int_equal(vb_crypto_key_parse(KEY_B64, k, &err), VB_OK);
    assert_int_equal(vb_crypto_seal(k, "secret-value", &s, &err), VB_OK);
    size_t n = strlen(s);
    for (size_t i = 3; i < n; i++) {
        char *t = strdup(s);
        if (t[i] == '=') {
            free(t);
            continue;
        }
        /* flip the top bit of the 6-bit digit: always a data bit, even in
         * the last digit before the padding */
        static const char alphabet[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *pos = strchr(alphabet, t[i]);
        assert_non_null(pos);
        t[i] = alphabet[(pos - alphabet) ^ 32];
        vb_error_clear(&err);
        vb_err rc = vb_crypto_open(k, t, &plain, &err);
        assert_int_equal(rc, VB_ERR_CRYPTO);
        assert_null(plain);
        free(t);
    }
    /* truncation, wrong prefix */
    char *t = strndup(s, n - 4);
    assert_int_equal(vb_crypto_open(k, t, &plain, NULL), VB_ERR_CRYPTO);
    free(t);
    t = strdup(s);
    t[1] = '2';
    assert_int_equal(vb_crypto_open(k, t, &plain, NULL), VB_ERR_CRYPTO);
    free(t);
    assert_int_equal(vb_crypto_open(k, "v1:", &plain, NULL), VB_ERR_CRYPTO);
    assert_int_equal(vb_crypto_open(k, "v1:!!!!", &plain, NULL), VB_ERR_CRYPTO);
    free(s);
}

static void open_with_wrong_key_fails_without_leaking(void **state)
{
    unsigned char k1[VB_CRYPTO_KEY_SIZE], k2[VB_CRYPTO_KEY_SIZE];
    vb_error err = {0};
    char *s = NULL, *plain = NULL;
    assert_int_equal(vb_crypto_key_parse(KEY_B64, k1, &err), VB_OK);
    assert_int_equal(vb_crypto_key_parse(KEY2_B64, k2, &err), VB_OK);
    assert_int_equal(vb_crypto_seal(k1, "secret-value", &s, &err), VB_OK);
    assert_int_equal(vb_crypto_open(k2, s, &plain, &err), VB_ERR_CRYPTO);
    assert_null(plain);
    assert_non_null(strstr(err.msg, "authentication"));
    assert_null(strstr(err.msg, "secret-value"));
    free(s);
}

static void equal_compares_contents_and_lengths(void **state)
{
    assert_true(vb_crypto_equal("token", 5, "token", 5));
    assert_false(vb_crypto_equal("token", 5, "tokeN", 5));
    assert_false(vb_crypto_equal("token", 5, "token2", 6));
    assert_false(vb_crypto_equal("token", 4, "token", 5));
    assert_true(vb_crypto_equal(NULL, 0, "", 0));
    assert_false(vb_crypto_equal(NULL, 0, "a", 1));
}

static void bound_values_open_only_under_their_context(void **state)
{
    unsigned char k[VB_CRYPTO_KEY_SIZE];
    vb_error err = {0};
    char *s = NULL, *plain = NULL, *p = NULL;
    assert_int_equal(vb_crypto_key_parse(KEY_B64, k, &err), VB_OK);
    assert_int_equal(vb_crypto_seal_bound(k, "ctx-A", "payload", &s, &err), VB_OK);
    assert_true(strncmp(s, "v1:", 3) == 0);
    assert_null(strstr(s, "ctx-A"));
    assert_int_equal(vb_crypto_open_bound(k, "ctx-A", s, &plain, &err), VB_OK);
    assert_string_equal(plain, "payload");
    vb_crypto_free_secret(plain);
    plain = NULL;
    /* another context, or no context at all, does not open it */
    assert_int_equal(vb_crypto_open_bound(k, "ctx-B", s, &plain, &err), VB_ERR_CRYPTO);
    assert_null(plain);
    assert_int_equal(vb_crypto_open(k, s, &plain, &err), VB_ERR_CRYPTO);
    assert_null(plain);
    free(s);
    /* and a plain value does not open as a bound one */
    assert_int_equal(vb_crypto_seal(k, "payload", &p, &err), VB_OK);
    assert_int_equal(vb_crypto_open_bound(k, "ctx-A", p, &plain, &err), VB_ERR_CRYPTO);
    free(p);
    /* a context is required */
    assert_int_equal(vb_crypto_seal_bound(k, "", "x", &s, &err), VB_ERR_INVALID);
    assert_null(s);
    assert_int_equal(vb_crypto_open_bound(k, NULL, "v1:AAAA", &plain, &err), VB_ERR_INVALID);
}

static void bound_values_take_texts_beyond_the_secret_limit(void **state)
{
    unsigned char k[VB_CRYPTO_KEY_SIZE];
    vb_error err = {0};
    size_t n = VB_CRYPTO_PLAIN_MAX * 4;
    char *big = malloc(n + 1), *s = NULL, *plain = NULL;
    assert_non_null(big);
    memset(big, 'u', n);
    big[n] = '\0';
    assert_int_equal(vb_crypto_key_parse(KEY_B64, k, &err), VB_OK);
    assert_int_equal(vb_crypto_seal(k, big, &s, &err), VB_ERR_INVALID);
    assert_int_equal(vb_crypto_seal_bound(k, "ctx", big, &s, &err), VB_OK);
    assert_int_equal(vb_crypto_open_bound(k, "ctx", s, &plain, &err), VB_OK);
    assert_int_equal(strlen(plain), n);
    vb_crypto_free_secret(plain);
    free(s);
    free(big);
}

static void uuid4_has_version_and_variant(void **state)
{
    char a[VB_UUID_SIZE], b[VB_UUID_SIZE];
    assert_int_equal(vb_crypto_uuid4(a, NULL), VB_OK);
    assert_int_equal(vb_crypto_uuid4(b, NULL), VB_OK);
    assert_int_equal(strlen(a), 36);
    assert_int_equal(a[14], '4');
    assert_non_null(strchr("89ab", a[19]));
    assert_int_equal(a[8], '-');
    assert_int_equal(a[23], '-');
    assert_string_not_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(key_parse_accepts_32_bytes_with_whitespace),
        cmocka_unit_test(key_parse_rejects_wrong_sizes_and_garbage),
        cmocka_unit_test(seal_open_round_trip),
        cmocka_unit_test(open_detects_tampering),
        cmocka_unit_test(open_with_wrong_key_fails_without_leaking),
        cmocka_unit_test(equal_compares_contents_and_lengths),
        cmocka_unit_test(bound_values_open_only_under_their_context),
        cmocka_unit_test(bound_values_take_texts_beyond_the_secret_limit),
        cmocka_unit_test(uuid4_has_version_and_variant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
