#ifndef TG_CCURL_SHIM_H
#define TG_CCURL_SHIM_H
#include <curl/curl.h>

/* curl_easy_setopt / curl_easy_getinfo are variadic: one typed wrapper per argument kind. */
static inline CURLcode tg_curl_setopt_long(CURL *c, CURLoption o, long v) { return curl_easy_setopt(c, o, v); }
static inline CURLcode tg_curl_setopt_str(CURL *c, CURLoption o, const char *v) { return curl_easy_setopt(c, o, v); }
static inline CURLcode tg_curl_setopt_ptr(CURL *c, CURLoption o, void *v) { return curl_easy_setopt(c, o, v); }
static inline CURLcode tg_curl_setopt_slist(CURL *c, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(c, o, v); }
typedef size_t (*tg_curl_write_cb)(char *, size_t, size_t, void *);
static inline CURLcode tg_curl_setopt_write(CURL *c, tg_curl_write_cb cb) { return curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, cb); }
static inline CURLcode tg_curl_setopt_header(CURL *c, tg_curl_write_cb cb) { return curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, cb); }
typedef int (*tg_curl_xferinfo_cb)(void *, curl_off_t, curl_off_t, curl_off_t, curl_off_t);
static inline CURLcode tg_curl_setopt_xferinfo(CURL *c, tg_curl_xferinfo_cb cb) { return curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, cb); }
static inline CURLcode tg_curl_getinfo_long(CURL *c, CURLINFO i, long *v) { return curl_easy_getinfo(c, i, v); }
static inline CURLcode tg_curl_getinfo_double(CURL *c, CURLINFO i, double *v) { return curl_easy_getinfo(c, i, v); }
#endif
