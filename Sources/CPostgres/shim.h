#ifndef TG_CPOSTGRES_SHIM_H
#define TG_CPOSTGRES_SHIM_H
/* libpq, PostgreSQL's client library (Debian libpq-dev; pkg-config libpq adds /usr/include/postgresql). */
#include <libpq-fe.h>
#include <poll.h>

/* Waits until the connection's socket is readable, up to `ms`: 1 readable, 0 timeout, -1 error. */
static inline int tg_pq_wait_readable(PGconn *conn, int ms) {
    struct pollfd p = { PQsocket(conn), POLLIN, 0 };
    if (p.fd < 0) return -1;
    return poll(&p, 1, ms);
}
#endif
