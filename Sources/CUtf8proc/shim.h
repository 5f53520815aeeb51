#ifndef TG_CUTF8PROC_SHIM_H
#define TG_CUTF8PROC_SHIM_H
#include <utf8proc.h>
#endif
