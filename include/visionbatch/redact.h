/*
 * redact.h — keeps secrets out of logs, error messages and reports.
 *
 * Three layers: (1) registered secrets (the API key, tokens) are replaced
 * wherever they occur; (2) "Bearer <x>" / "Authorization: <x>" values are
 * masked; (3) URL query values whose names look secret (sig, token, key,
 * signature, password, secret, access_token, code, se/sp/sv/… SAS fields are
 * kept only if harmless) are replaced by "REDACTED". The replacement text is
 * "***". The registry is process-wide and thread-safe.
 */
#ifndef VISIONBATCH_REDACT_H
#define VISIONBATCH_REDACT_H

#include <stddef.h>

/* Registers a secret to scrub from every log line (ignored if shorter than 4
 * bytes, to avoid scrubbing ordinary words). Copied. */
void vb_redact_add_secret(const char *secret);
void vb_redact_clear_secrets(void);

/* Writes a copy of `url` with secret query values masked and any userinfo
 * (user:pass@) removed into out (always NUL-terminated, truncated to outlen).
 * Returns out. */
char *vb_redact_url(const char *url, char *out, size_t outlen);

/* Redacts `text` in place (registered secrets, Bearer tokens, secret query
 * values inside URLs). The result is never longer than the input. */
void vb_redact_text(char *text);

#endif
