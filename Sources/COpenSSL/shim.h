#ifndef TG_COPENSSL_SHIM_H
#define TG_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>

static inline int tg_evp_gcm_set_ivlen(EVP_CIPHER_CTX *c, int n) { return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, n, NULL); }
static inline int tg_evp_gcm_get_tag(EVP_CIPHER_CTX *c, int n, void *t) { return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, n, t); }
static inline int tg_evp_gcm_set_tag(EVP_CIPHER_CTX *c, int n, void *t) { return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, n, t); }
#endif
