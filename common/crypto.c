/*
 * crypto.c — AES-256-GCM sealing, constant-time comparison and random ids on
 * top of OpenSSL's EVP interface (see crypto.h for the format).
 *
 * Every buffer that held key material or plaintext is wiped with
 * OPENSSL_cleanse before it is freed. Stateless; thread-safe.
 */
#include "visionbatch/crypto.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define NONCE_LEN 12
#define TAG_LEN 16
#define PREFIX "v1:"
#define PREFIX_LEN 3

void vb_crypto_wipe(void *p, size_t n)
{
    if (p && n)
        OPENSSL_cleanse(p, n);
}

void vb_crypto_free_secret(char *s)
{
    if (!s)
        return;
    vb_crypto_wipe(s, strlen(s));
    free(s);
}

vb_err vb_crypto_random(void *buf, size_t n, vb_error *err)
{
    if (n > (size_t)0x7fffffff || RAND_bytes(buf, (int)n) != 1)
        return vb_error_set(err, VB_ERR_CRYPTO, "random number generator failed");
    return VB_OK;
}

vb_err vb_crypto_uuid4(char out[VB_UUID_SIZE], vb_error *err)
{
    unsigned char b[16];
    vb_err rc = vb_crypto_random(b, sizeof b, err);
    if (rc != VB_OK)
        return rc;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, VB_UUID_SIZE,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return VB_OK;
}

/* Strict base64 decode: length a multiple of 4, only the alphabet, '=' only
 * as the last one or two characters. Returns the decoded length or -1. */
static long b64_decode(const char *s, size_t n, unsigned char *out, size_t outcap)
{
    if (n == 0 || n % 4 != 0 || n / 4 * 3 > outcap + 2 || n > 0x7ffffff0)
        return -1;
    size_t pad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '=') {
            if (i < n - 2)
                return -1;
            pad++;
        } else if (pad || !(isalnum(c) || c == '+' || c == '/')) {
            return -1;
        }
    }
    unsigned char *tmp = malloc(n / 4 * 3 + 1);
    if (!tmp)
        return -1;
    int got = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)n);
    long len = got < 0 ? -1 : (long)got - (long)pad;
    if (len >= 0 && (size_t)len <= outcap)
        memcpy(out, tmp, (size_t)len);
    else
        len = -1;
    OPENSSL_cleanse(tmp, n / 4 * 3 + 1);
    free(tmp);
    return len;
}

vb_err vb_crypto_key_parse(const char *b64, unsigned char key[VB_CRYPTO_KEY_SIZE], vb_error *err)
{
    if (!b64)
        return vb_error_set(err, VB_ERR_CONFIG, "secret key is not set");
    while (*b64 && isspace((unsigned char)*b64))
        b64++;
    size_t n = strlen(b64);
    while (n && isspace((unsigned char)b64[n - 1]))
        n--;
    if (n == 0)
        return vb_error_set(err, VB_ERR_CONFIG, "secret key is empty");
    unsigned char tmp[64];
    long len = b64_decode(b64, n, tmp, sizeof tmp);
    if (len < 0 && n <= 88) {
        OPENSSL_cleanse(tmp, sizeof tmp);
        return vb_error_set(err, VB_ERR_CONFIG,
                            "secret key is not valid base64 (expected 44 characters encoding 32 "
                            "bytes, e.g. from `openssl rand -base64 32`)");
    }
    if (len != VB_CRYPTO_KEY_SIZE) {
        OPENSSL_cleanse(tmp, sizeof tmp);
        if (len < 0)
            return vb_error_set(err, VB_ERR_CONFIG,
                                "secret key is too long: it must encode exactly 32 bytes");
        return vb_error_set(err, VB_ERR_CONFIG,
                            "secret key decodes to %ld bytes; it must be exactly 32 bytes", len);
    }
    memcpy(key, tmp, VB_CRYPTO_KEY_SIZE);
    OPENSSL_cleanse(tmp, sizeof tmp);
    return VB_OK;
}

/* Seals plaintext (at most `max` bytes) with "v1:" ‖ context as additional
 * data; context "" for the values of vb_crypto_seal. */
static vb_err seal_with(const unsigned char key[VB_CRYPTO_KEY_SIZE], const char *context,
                        size_t max, const char *plaintext, char **out_b64, vb_error *err)
{
    vb_err rc = VB_ERR_CRYPTO;
    EVP_CIPHER_CTX *ctx = NULL;
    unsigned char *raw = NULL;
    char *out = NULL;
    size_t plen = plaintext ? strlen(plaintext) : 0, rawlen = 0;
    int n = 0, fin = 0;

    if (out_b64)
        *out_b64 = NULL;
    if (!key || !plaintext || !out_b64)
        return vb_error_set(err, VB_ERR_INVALID, "seal: missing argument");
    if (plen > max)
        return vb_error_set(err, VB_ERR_INVALID, "seal: secret longer than %zu bytes", max);
    rawlen = NONCE_LEN + plen + TAG_LEN;
    raw = malloc(rawlen);
    out = malloc(PREFIX_LEN + (rawlen + 2) / 3 * 4 + 1);
    if (!raw || !out) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "seal: out of memory");
        goto fail;
    }
    if (vb_crypto_random(raw, NONCE_LEN, err) != VB_OK)
        goto fail;
    ctx = EVP_CIPHER_CTX_new();
    if (!ctx || EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_EncryptInit_ex(ctx, NULL, NULL, key, raw) != 1 ||
        EVP_EncryptUpdate(ctx, NULL, &n, (const unsigned char *)PREFIX, PREFIX_LEN) != 1 ||
        (*context && EVP_EncryptUpdate(ctx, NULL, &n, (const unsigned char *)context,
                                       (int)strlen(context)) != 1) ||
        EVP_EncryptUpdate(ctx, raw + NONCE_LEN, &n, (const unsigned char *)plaintext,
                          (int)plen) != 1 ||
        EVP_EncryptFinal_ex(ctx, raw + NONCE_LEN + n, &fin) != 1 ||
        (size_t)(n + fin) != plen ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, raw + NONCE_LEN + plen) != 1) {
        vb_error_set(err, VB_ERR_CRYPTO, "seal: AES-256-GCM encryption failed");
        goto fail;
    }
    memcpy(out, PREFIX, PREFIX_LEN);
    EVP_EncodeBlock((unsigned char *)out + PREFIX_LEN, raw, (int)rawlen);
    *out_b64 = out;
    out = NULL;
    rc = VB_OK;
fail:
    EVP_CIPHER_CTX_free(ctx);
    if (raw)
        OPENSSL_cleanse(raw, rawlen);
    free(raw);
    free(out);
    return rc;
}

vb_err vb_crypto_seal(const unsigned char key[VB_CRYPTO_KEY_SIZE], const char *plaintext,
                      char **out_b64, vb_error *err)
{
    return seal_with(key, "", VB_CRYPTO_PLAIN_MAX, plaintext, out_b64, err);
}

/* Opens a value of seal_with under the same context and maximum. */
static vb_err open_with(const unsigned char key[VB_CRYPTO_KEY_SIZE], const char *context,
                        size_t max, const char *sealed, char **plain, vb_error *err)
{
    vb_err rc = VB_ERR_CRYPTO;
    EVP_CIPHER_CTX *ctx = NULL;
    unsigned char *raw = NULL;
    char *out = NULL;
    size_t rawcap = 0, clen = 0;
    long rawlen = -1;
    int n = 0, fin = 0;

    if (plain)
        *plain = NULL;
    if (!key || !sealed || !plain)
        return vb_error_set(err, VB_ERR_INVALID, "open: missing argument");
    size_t slen = strlen(sealed);
    if (slen < PREFIX_LEN || memcmp(sealed, PREFIX, PREFIX_LEN) != 0)
        return vb_error_set(err, VB_ERR_CRYPTO, "sealed secret has an unknown format");
    if (slen - PREFIX_LEN > (max + NONCE_LEN + TAG_LEN + 2) / 3 * 4)
        return vb_error_set(err, VB_ERR_CRYPTO, "sealed secret is too long");
    rawcap = (slen - PREFIX_LEN) / 4 * 3 + 3;
    raw = malloc(rawcap);
    if (!raw) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "open: out of memory");
        goto fail;
    }
    rawlen = b64_decode(sealed + PREFIX_LEN, slen - PREFIX_LEN, raw, rawcap);
    if (rawlen < NONCE_LEN + TAG_LEN) {
        vb_error_set(err, VB_ERR_CRYPTO, "sealed secret is malformed");
        goto fail;
    }
    clen = (size_t)rawlen - NONCE_LEN - TAG_LEN;
    out = malloc(clen + 1);
    if (!out) {
        rc = vb_error_set(err, VB_ERR_NOMEM, "open: out of memory");
        goto fail;
    }
    ctx = EVP_CIPHER_CTX_new();
    if (!ctx || EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_DecryptInit_ex(ctx, NULL, NULL, key, raw) != 1 ||
        EVP_DecryptUpdate(ctx, NULL, &n, (const unsigned char *)PREFIX, PREFIX_LEN) != 1 ||
        (*context && EVP_DecryptUpdate(ctx, NULL, &n, (const unsigned char *)context,
                                       (int)strlen(context)) != 1) ||
        EVP_DecryptUpdate(ctx, (unsigned char *)out, &n, raw + NONCE_LEN, (int)clen) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, raw + NONCE_LEN + clen) != 1 ||
        EVP_DecryptFinal_ex(ctx, (unsigned char *)out + n, &fin) != 1 ||
        (size_t)(n + fin) != clen) {
        vb_error_set(err, VB_ERR_CRYPTO,
                     "sealed secret failed authentication (wrong key or altered data)");
        goto fail;
    }
    out[clen] = '\0';
    if (strlen(out) != clen) {
        vb_error_set(err, VB_ERR_CRYPTO, "sealed secret contains a NUL byte");
        goto fail;
    }
    *plain = out;
    out = NULL;
    rc = VB_OK;
fail:
    EVP_CIPHER_CTX_free(ctx);
    if (raw)
        OPENSSL_cleanse(raw, rawcap);
    free(raw);
    if (out)
        OPENSSL_cleanse(out, clen + 1);
    free(out);
    return rc;
}

vb_err vb_crypto_open(const unsigned char key[VB_CRYPTO_KEY_SIZE], const char *sealed, char **plain,
                      vb_error *err)
{
    return open_with(key, "", VB_CRYPTO_PLAIN_MAX, sealed, plain, err);
}

/* VB_OK when `context` is a usable context of a bound value. */
static vb_err check_context(const char *context, const char *what, vb_error *err)
{
    if (!context || !*context || strlen(context) > VB_CRYPTO_CONTEXT_MAX)
        return vb_error_set(err, VB_ERR_INVALID, "%s: a context of 1 to %d bytes is required",
                            what, VB_CRYPTO_CONTEXT_MAX);
    return VB_OK;
}

vb_err vb_crypto_seal_bound(const unsigned char key[VB_CRYPTO_KEY_SIZE], const char *context,
                            const char *plaintext, char **out_b64, vb_error *err)
{
    if (out_b64)
        *out_b64 = NULL;
    vb_err rc = check_context(context, "seal", err);
    return rc != VB_OK ? rc : seal_with(key, context, VB_CRYPTO_BOUND_MAX, plaintext, out_b64, err);
}

vb_err vb_crypto_open_bound(const unsigned char key[VB_CRYPTO_KEY_SIZE], const char *context,
                            const char *sealed, char **plain, vb_error *err)
{
    if (plain)
        *plain = NULL;
    vb_err rc = check_context(context, "open", err);
    return rc != VB_OK ? rc : open_with(key, context, VB_CRYPTO_BOUND_MAX, sealed, plain, err);
}

int vb_crypto_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
    unsigned int la = 0, lb = 0;
    static const unsigned char empty = 0;
    if (EVP_Digest(a ? a : &empty, a ? alen : 0, da, &la, EVP_sha256(), NULL) != 1 ||
        EVP_Digest(b ? b : &empty, b ? blen : 0, db, &lb, EVP_sha256(), NULL) != 1)
        return 0;
    int same = CRYPTO_memcmp(da, db, sizeof da) == 0;
    OPENSSL_cleanse(da, sizeof da);
    OPENSSL_cleanse(db, sizeof db);
    return same && alen == blen;
}
