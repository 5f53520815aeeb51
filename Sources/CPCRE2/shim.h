#ifndef TG_CPCRE2_SHIM_H
#define TG_CPCRE2_SHIM_H
/* The 8-bit library: pcre2.h needs the code unit width before it is included. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* PCRE2_ZERO_TERMINATED and PCRE2_UNSET are casts Swift cannot import. */
static inline size_t tg_pcre2_unset(void) { return PCRE2_UNSET; }
#endif
