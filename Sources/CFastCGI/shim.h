#ifndef TG_CFASTCGI_SHIM_H
#define TG_CFASTCGI_SHIM_H
#include <fcgiapp.h>
#include <fcgios.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

/* The request struct is allocated by Swift; libfcgi keeps pointers into it. */
static inline FCGX_Request *tg_fcgx_request_new(void) {
    FCGX_Request *r = (FCGX_Request *)calloc(1, sizeof(FCGX_Request));
    return r;
}
static inline void tg_fcgx_request_free(FCGX_Request *r) { free(r); }
static inline FCGX_Stream *tg_fcgx_in(FCGX_Request *r) { return r->in; }
static inline FCGX_Stream *tg_fcgx_out(FCGX_Request *r) { return r->out; }
static inline char **tg_fcgx_envp(FCGX_Request *r) { return r->envp; }
/* After FCGX_Finish_r: the web server asked to keep the connection (fastcgi_keep_conn on), so the next
   FCGX_Accept_r reads the next request from it instead of accepting a new one. */
static inline int tg_fcgx_kept(FCGX_Request *r) { return r->keepConnection && r->ipcFd >= 0; }
/* A timeout on the listening socket makes every blocked accept return EAGAIN after `ms`: threads see a
   pending shutdown without being signalled (a signal can land after accept, in libfcgi's poll or read of
   the params, and libfcgi then closes the connection it has just accepted). 0 on success. */
static inline int tg_fcgx_accept_timeout(int listen_fd, int ms) {
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    return setsockopt(listen_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}
/* TCP connections inherit the listener's receive timeout: the accepted connection must not keep it. */
static inline void tg_fcgx_clear_timeout(FCGX_Request *r) {
    struct timeval tv = { 0, 0 };
    if (r->ipcFd >= 0) (void)setsockopt(r->ipcFd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}
#endif
