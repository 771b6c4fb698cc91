/*
 * redact.h — keeps secrets out of logs, error messages and reports.
 *
 * Three layers: (1) registered secrets (the API key, tokens) are replaced
 * wherever they occur; (2) "Bearer <x>" / "Authorization: <x>" values are
 * masked (the Authorization value to the end of its line); (3) URLs: userinfo
 * (user:pass@) and the values of query/fragment parameters whose names look
 * secret (sig, signature, token, access_token, key, api_key, password, secret,
 * client_secret, code, X-Amz-Signature, X-Amz-Credential, …; case-insensitive)
 * are masked, also when the "name=value" pair is itself percent-encoded once
 * or more ("sig%3D…", "sig%253D…", value up to an encoded '&' or '#').
 * Harmless SAS fields (se, sp, sv, sr, st) stay visible.
 * The replacement text is "***" (or one '*' per byte for values shorter than
 * three bytes), so redaction never lengthens a string and works in place.
 * The registry is process-wide and thread-safe.
 */
#ifndef VISIONBATCH_REDACT_H
#define VISIONBATCH_REDACT_H

#include <stddef.h>

/* Registers a secret to scrub from every log line (ignored if NULL or shorter
 * than 4 bytes, to avoid scrubbing ordinary words). Copied; duplicates are
 * kept once. Thread-safe. */
void vb_redact_add_secret(const char *secret);
/* Forgets (and wipes) every registered secret. Thread-safe. */
void vb_redact_clear_secrets(void);

/* Writes a copy of `url` with secret query values, any userinfo (user:pass@)
 * and registered secrets masked into out (always NUL-terminated when
 * outlen > 0, truncated to outlen - 1 bytes). A NULL url yields "".
 * Returns out. Thread-safe. */
char *vb_redact_url(const char *url, char *out, size_t outlen);

/* Redacts `text` (NUL-terminated, may be NULL) in place: registered secrets,
 * Authorization/X-Api-Key/Cookie values, Bearer tokens, URL userinfo and
 * secret query values anywhere in the text. The result is never longer than
 * the input. Thread-safe. */
void vb_redact_text(char *text);

#endif
