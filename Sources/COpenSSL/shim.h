#ifndef TG_COPENSSL_SHIM_H
#define TG_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/ecdsa.h>
#include <openssl/bn.h>

static inline int tg_evp_gcm_set_ivlen(EVP_CIPHER_CTX *c, int n) { return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, n, NULL); }
static inline int tg_evp_gcm_get_tag(EVP_CIPHER_CTX *c, int n, void *t) { return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, n, t); }
static inline int tg_evp_gcm_set_tag(EVP_CIPHER_CTX *c, int n, void *t) { return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, n, t); }
/* ES256 JWTs carry r||s (32 bytes each); OpenSSL verifies DER. Returns the DER length written to out (<= 72), or -1. */
static inline int tg_ecdsa_raw_to_der(const unsigned char *raw, unsigned char *out, int outlen) {
    ECDSA_SIG *sig = ECDSA_SIG_new();
    if (!sig) return -1;
    BIGNUM *r = BN_bin2bn(raw, 32, NULL);
    BIGNUM *s = BN_bin2bn(raw + 32, 32, NULL);
    if (!r || !s || !ECDSA_SIG_set0(sig, r, s)) { BN_free(r); BN_free(s); ECDSA_SIG_free(sig); return -1; }
    int len = i2d_ECDSA_SIG(sig, NULL);
    if (len <= 0 || len > outlen) { ECDSA_SIG_free(sig); return -1; }
    unsigned char *p = out;
    len = i2d_ECDSA_SIG(sig, &p);
    ECDSA_SIG_free(sig);
    return len;
}
#endif
