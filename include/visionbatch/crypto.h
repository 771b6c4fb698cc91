/*
 * crypto.h — sealing secrets at rest (AES-256-GCM), comparing tokens in
 * constant time, and random identifiers.
 *
 * Sealed format: "v1:" + base64( 12-byte random nonce ‖ ciphertext ‖ 16-byte
 * GCM tag ). The "v1:" prefix is bound into the tag as additional data, so a
 * sealed value cannot be relabelled. A fresh nonce is drawn from OpenSSL's
 * RAND_bytes for every seal, so sealing the same text twice gives different
 * strings. A bound value (vb_crypto_seal_bound) has the same format and also
 * authenticates a context string that is not stored in it ("v1:" ‖ context
 * is the additional data): it opens only under the same context, so a value
 * sealed for one purpose or one record cannot be passed off for another, and
 * a bound value and a plain one never open as each other. Keys are 32 raw bytes, configured as base64 (VISIONBATCH_SECRET_KEY);
 * callers wipe them with vb_crypto_wipe() when done.
 *
 * Threading: every function is thread-safe (OpenSSL 3 needs no locking set-up).
 * Error messages never contain key material or plaintext.
 */
#ifndef VISIONBATCH_CRYPTO_H
#define VISIONBATCH_CRYPTO_H

#include <stddef.h>

#include "visionbatch/error.h"

#define VB_CRYPTO_KEY_SIZE 32
#define VB_CRYPTO_PLAIN_MAX (64 * 1024) /* longest secret sealed or opened */
#define VB_CRYPTO_BOUND_MAX (1024 * 1024) /* longest text sealed or opened bound */
#define VB_CRYPTO_CONTEXT_MAX 1024       /* longest context of a bound value */
#define VB_UUID_SIZE 37                 /* 36 characters + NUL */

/* Decodes `b64` (standard base64 with padding; surrounding blanks and a
 * trailing newline ignored) into key[0..31]. VB_ERR_CONFIG with a message
 * saying what is wrong (empty, not base64, decodes to N bytes instead of 32);
 * key is untouched on failure. */
vb_err vb_crypto_key_parse(const char *b64, unsigned char key[VB_CRYPTO_KEY_SIZE], vb_error *err);

/* Seals the NUL-terminated `plaintext` (≤ VB_CRYPTO_PLAIN_MAX bytes) under
 * `key`. On VB_OK *out_b64 is a new "v1:…" string the caller frees with
 * free(). VB_ERR_INVALID for a NULL or too long input, VB_ERR_CRYPTO when
 * OpenSSL fails (*out_b64 then NULL). */
vb_err vb_crypto_seal(const unsigned char key[VB_CRYPTO_KEY_SIZE], const char *plaintext,
                      char **out_b64, vb_error *err);

/* Opens a value made by vb_crypto_seal. On VB_OK *plain is a new
 * NUL-terminated string (free with vb_crypto_free_secret, which wipes it).
 * VB_ERR_CRYPTO when the value is malformed, was sealed under another key,
 * or was altered (GCM authentication failure); *plain is then NULL. */
vb_err vb_crypto_open(const unsigned char key[VB_CRYPTO_KEY_SIZE], const char *sealed, char **plain,
                      vb_error *err);

/* vb_crypto_seal bound to `context` (1..VB_CRYPTO_CONTEXT_MAX bytes,
 * NUL-terminated; authenticated, not stored), for texts of up to
 * VB_CRYPTO_BOUND_MAX bytes. VB_ERR_INVALID for a missing or empty context,
 * otherwise as vb_crypto_seal. */
vb_err vb_crypto_seal_bound(const unsigned char key[VB_CRYPTO_KEY_SIZE], const char *context,
                            const char *plaintext, char **out_b64, vb_error *err);

/* Opens a value of vb_crypto_seal_bound under the same `context`: as
 * vb_crypto_open, and VB_ERR_CRYPTO also when the context differs. */
vb_err vb_crypto_open_bound(const unsigned char key[VB_CRYPTO_KEY_SIZE], const char *context,
                            const char *sealed, char **plain, vb_error *err);

/* 1 when a[0..alen) equals b[0..blen), else 0, in time independent of the
 * contents (both sides are hashed with SHA-256 and the digests compared with
 * CRYPTO_memcmp). NULL with length 0 is the empty string. */
int vb_crypto_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Overwrites n bytes at p with zeros in a way the compiler cannot drop. */
void vb_crypto_wipe(void *p, size_t n);

/* Wipes and frees a NUL-terminated secret string. NULL is accepted. */
void vb_crypto_free_secret(char *s);

/* Fills buf with n cryptographically strong random bytes. VB_ERR_CRYPTO on
 * failure. */
vb_err vb_crypto_random(void *buf, size_t n, vb_error *err);

/* Writes a random (version 4) UUID, lower-case, "xxxxxxxx-xxxx-4xxx-yxxx-…". */
vb_err vb_crypto_uuid4(char out[VB_UUID_SIZE], vb_error *err);

#endif
