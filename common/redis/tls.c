/*
 * tls.c — TLS for rediss:// connections (see redis.h): the process's one
 * OpenSSL client context (CA bundle, optional client certificate and key)
 * and the handshake of a fresh hiredis connection.
 *
 * The context is our own SSL_CTX rather than hiredis's redisSSLContext, so
 * the server's name is verified against its certificate (hiredis only sends
 * it as SNI) and an encrypted key can be opened with a password. hiredis
 * takes the SSL object with redisInitiateSSL() (hiredis_ssl, >= 1.0); a
 * build without it (VB_HAVE_REDIS_TLS unset, e.g. hiredis 0.14 of Debian 12)
 * compiles the stubs at the end, and url.c refuses rediss:// instead.
 *
 * Threading: the context is swapped and read under one mutex; SSL_new()
 * holds its own reference, so a reconfiguration never frees a context a
 * handshake is using. The key password is only read while the key loads.
 */
#include "redis/redis.h"

#include <stdio.h>
#include <string.h>

#ifdef VB_HAVE_REDIS_TLS

#include <arpa/inet.h>
#include <hiredis/hiredis_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *g_ctx; /* NULL until configured or first needed */

int vb__redis_tls_available(void)
{
    return 1;
}

/* The last OpenSSL error's reason ("no such file", "bad decrypt", …). */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown error";
}

/* PEM password callback: the configured password, never a terminal prompt. */
static int key_password_cb(char *buf, int size, int rwflag, void *userdata)
{
    const char *pw = userdata;
    size_t n = pw ? strlen(pw) : 0;
    if (!pw || n == 0 || n >= (size_t)size)
        return -1;
    memcpy(buf, pw, n);
    return (int)n;
}

static int set(const char *s)
{
    return s && s[0];
}

/* A new client context from `o` (NULL = defaults) into *out. */
static vb_err make_ctx(const vb__redis_tls_opts *o, SSL_CTX **out, vb_error *err)
{
    vb_err rc = VB_ERR_CONFIG;
    *out = NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return vb_error_set(err, VB_ERR_CRYPTO, "Redis TLS: cannot create a context: %s",
                            ssl_reason());
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_default_passwd_cb(ctx, key_password_cb);
    if (o && set(o->ca_file)) {
        if (SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1) {
            vb_error_set(err, VB_ERR_CONFIG, "redis_tls_ca_file %s: cannot load: %s", o->ca_file,
                         ssl_reason());
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        vb_error_set(err, VB_ERR_CONFIG, "Redis TLS: cannot load the system's CA certificates: %s",
                     ssl_reason());
        goto fail;
    }
    if (o && (set(o->cert_file) || set(o->key_file))) {
        if (!set(o->cert_file) || !set(o->key_file)) {
            vb_error_set(err, VB_ERR_CONFIG,
                         "redis_tls_cert_file and redis_tls_key_file go together: set both");
            goto fail;
        }
        if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1) {
            vb_error_set(err, VB_ERR_CONFIG, "redis_tls_cert_file %s: cannot load: %s",
                         o->cert_file, ssl_reason());
            goto fail;
        }
        SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)o->key_password);
        int ok = SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM) == 1;
        SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
        int mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        if (!ok && !mismatch) {
            vb_error_set(err, VB_ERR_CONFIG, "redis_tls_key_file %s: cannot load: %s%s",
                         o->key_file, ssl_reason(),
                         set(o->key_password) ? " (is redis_tls_key_password right?)"
                                              : " (an encrypted key needs redis_tls_key_password)");
            goto fail;
        }
        if (mismatch || SSL_CTX_check_private_key(ctx) != 1) {
            vb_error_set(err, VB_ERR_CONFIG,
                         "redis_tls_key_file %s does not belong to redis_tls_cert_file %s",
                         o->key_file, o->cert_file);
            goto fail;
        }
    }
    *out = ctx;
    return VB_OK;
fail:
    SSL_CTX_free(ctx);
    return rc;
}

vb_err vb__redis_tls_configure(const vb__redis_tls_opts *o, vb_error *err)
{
    SSL_CTX *ctx;
    vb_err rc = make_ctx(o, &ctx, err);
    if (rc != VB_OK)
        return rc;
    pthread_mutex_lock(&g_lock);
    SSL_CTX *old = g_ctx;
    g_ctx = ctx;
    pthread_mutex_unlock(&g_lock);
    SSL_CTX_free(old);
    return VB_OK;
}

void vb__redis_tls_reset(void)
{
    pthread_mutex_lock(&g_lock);
    SSL_CTX *old = g_ctx;
    g_ctx = NULL;
    pthread_mutex_unlock(&g_lock);
    SSL_CTX_free(old);
}

/* A new SSL object of the process's context (made with defaults on first
 * use when none was configured), set to verify `host`. */
static SSL *new_ssl(const char *host, char *why, size_t whylen)
{
    vb_error e = {0};
    pthread_mutex_lock(&g_lock);
    if (!g_ctx)
        (void)make_ctx(NULL, &g_ctx, &e);
    SSL *ssl = g_ctx ? SSL_new(g_ctx) : NULL;
    pthread_mutex_unlock(&g_lock);
    if (!ssl) {
        snprintf(why, whylen, "%s", e.msg[0] ? e.msg : "cannot create a TLS session");
        return NULL;
    }
    unsigned char addr[sizeof(struct in6_addr)];
    int is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
    int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1
                   : SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1;
    if (!ok) {
        snprintf(why, whylen, "cannot set the server name to verify");
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

vb_err vb__redis_tls_handshake(redisContext *ctx, const char *host, char *why, size_t whylen)
{
    SSL *ssl = new_ssl(host, why, whylen);
    if (!ssl)
        return VB_ERR_REDIS;
    ERR_clear_error();
    if (redisInitiateSSL(ctx, ssl) == REDIS_OK)
        return VB_OK; /* hiredis owns ssl now */
    long v = SSL_get_verify_result(ssl);
    if (v != X509_V_OK)
        snprintf(why, whylen, "TLS handshake failed: server certificate not trusted: %s",
                 X509_verify_cert_error_string(v));
    else
        snprintf(why, whylen, "TLS handshake failed: %s", ctx->errstr[0] ? ctx->errstr : "?");
    SSL_free(ssl);
    return VB_ERR_REDIS;
}

#else /* no TLS in this build */

int vb__redis_tls_available(void)
{
    return 0;
}

vb_err vb__redis_tls_configure(const vb__redis_tls_opts *o, vb_error *err)
{
    return vb_error_set(err, VB_ERR_CONFIG, "%s", VB__REDIS_NO_TLS);
}

void vb__redis_tls_reset(void)
{
}

vb_err vb__redis_tls_handshake(redisContext *ctx, const char *host, char *why, size_t whylen)
{
    snprintf(why, whylen, "%s", VB__REDIS_NO_TLS);
    return VB_ERR_REDIS;
}

#endif
