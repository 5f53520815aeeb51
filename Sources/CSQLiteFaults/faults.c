#include "tg_sqlite_faults.h"
#include <sqlite3.h>

/* The VFS of tg_sqlite_faults.h. Used by tests only; unreachable unless a connection names "tgfault". */
typedef struct tg_fault_state {
    int mask, countdown, persistent, errcode, hits, failing;
} tg_fault_state;
static tg_fault_state tg_fault;
static sqlite3_vfs tg_fault_vfs;
static sqlite3_vfs *tg_fault_base;

typedef struct tg_fault_file {
    sqlite3_file base;
    sqlite3_file *real; /* allocated right after this struct */
} tg_fault_file;

static inline int tg_fault_check(int op) {
    if (!(tg_fault.mask & op)) return SQLITE_OK;
    if (tg_fault.failing) return tg_fault.errcode;
    if (tg_fault.countdown > 0) { tg_fault.countdown--; return SQLITE_OK; }
    if (tg_fault.countdown < 0) return SQLITE_OK;
    tg_fault.hits++;
    tg_fault.countdown = -1;
    if (tg_fault.persistent) tg_fault.failing = 1;
    return tg_fault.errcode;
}

#define TG_REAL(f) (((tg_fault_file *)(f))->real)
static int tg_f_close(sqlite3_file *f) {
    int rc = TG_REAL(f)->pMethods ? TG_REAL(f)->pMethods->xClose(TG_REAL(f)) : SQLITE_OK;
    return rc;
}
static int tg_f_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o) {
    return TG_REAL(f)->pMethods->xRead(TG_REAL(f), b, n, o);
}
static int tg_f_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o) {
    int rc = tg_fault_check(TG_FAULT_WRITE);
    return rc != SQLITE_OK ? rc : TG_REAL(f)->pMethods->xWrite(TG_REAL(f), b, n, o);
}
static int tg_f_truncate(sqlite3_file *f, sqlite3_int64 size) {
    int rc = tg_fault_check(TG_FAULT_TRUNCATE);
    return rc != SQLITE_OK ? rc : TG_REAL(f)->pMethods->xTruncate(TG_REAL(f), size);
}
static int tg_f_sync(sqlite3_file *f, int flags) {
    int rc = tg_fault_check(TG_FAULT_SYNC);
    return rc != SQLITE_OK ? rc : TG_REAL(f)->pMethods->xSync(TG_REAL(f), flags);
}
static int tg_f_size(sqlite3_file *f, sqlite3_int64 *s) { return TG_REAL(f)->pMethods->xFileSize(TG_REAL(f), s); }
static int tg_f_lock(sqlite3_file *f, int l) { return TG_REAL(f)->pMethods->xLock(TG_REAL(f), l); }
static int tg_f_unlock(sqlite3_file *f, int l) { return TG_REAL(f)->pMethods->xUnlock(TG_REAL(f), l); }
static int tg_f_reserved(sqlite3_file *f, int *r) {
    return TG_REAL(f)->pMethods->xCheckReservedLock(TG_REAL(f), r);
}
static int tg_f_control(sqlite3_file *f, int op, void *a) {
    return TG_REAL(f)->pMethods->xFileControl(TG_REAL(f), op, a);
}
static int tg_f_sector(sqlite3_file *f) { return TG_REAL(f)->pMethods->xSectorSize(TG_REAL(f)); }
static int tg_f_chars(sqlite3_file *f) { return TG_REAL(f)->pMethods->xDeviceCharacteristics(TG_REAL(f)); }
static int tg_f_shmmap(sqlite3_file *f, int i, int sz, int w, void volatile **p) {
    return TG_REAL(f)->pMethods->xShmMap(TG_REAL(f), i, sz, w, p);
}
static int tg_f_shmlock(sqlite3_file *f, int o, int n, int fl) {
    return TG_REAL(f)->pMethods->xShmLock(TG_REAL(f), o, n, fl);
}
static void tg_f_shmbarrier(sqlite3_file *f) { TG_REAL(f)->pMethods->xShmBarrier(TG_REAL(f)); }
static int tg_f_shmunmap(sqlite3_file *f, int d) { return TG_REAL(f)->pMethods->xShmUnmap(TG_REAL(f), d); }
static int tg_f_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **p) {
    return TG_REAL(f)->pMethods->xFetch(TG_REAL(f), o, n, p);
}
static int tg_f_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p) {
    return TG_REAL(f)->pMethods->xUnfetch(TG_REAL(f), o, p);
}
static const sqlite3_io_methods tg_fault_io = {
    3, tg_f_close, tg_f_read, tg_f_write, tg_f_truncate, tg_f_sync, tg_f_size, tg_f_lock, tg_f_unlock,
    tg_f_reserved, tg_f_control, tg_f_sector, tg_f_chars, tg_f_shmmap, tg_f_shmlock, tg_f_shmbarrier,
    tg_f_shmunmap, tg_f_fetch, tg_f_unfetch,
};

static int tg_fault_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out) {
    tg_fault_file *f = (tg_fault_file *)file;
    f->real = (sqlite3_file *)(f + 1);
    int rc = tg_fault_base->xOpen(tg_fault_base, name, f->real, flags, out);
    /* The base VFS set real->pMethods (or not, on failure); ours close the real file through them. */
    file->pMethods = f->real->pMethods ? &tg_fault_io : 0;
    return rc;
}
static int tg_fault_delete(sqlite3_vfs *v, const char *n, int s) { return tg_fault_base->xDelete(tg_fault_base, n, s); }
static int tg_fault_access(sqlite3_vfs *v, const char *n, int fl, int *r) {
    return tg_fault_base->xAccess(tg_fault_base, n, fl, r);
}
static int tg_fault_full(sqlite3_vfs *v, const char *n, int sz, char *out) {
    return tg_fault_base->xFullPathname(tg_fault_base, n, sz, out);
}
static void *tg_fault_dlopen(sqlite3_vfs *v, const char *n) { return tg_fault_base->xDlOpen(tg_fault_base, n); }
static void tg_fault_dlerror(sqlite3_vfs *v, int n, char *m) { tg_fault_base->xDlError(tg_fault_base, n, m); }
static void (*tg_fault_dlsym(sqlite3_vfs *v, void *p, const char *s))(void) {
    return tg_fault_base->xDlSym(tg_fault_base, p, s);
}
static void tg_fault_dlclose(sqlite3_vfs *v, void *p) { tg_fault_base->xDlClose(tg_fault_base, p); }
static int tg_fault_random(sqlite3_vfs *v, int n, char *out) { return tg_fault_base->xRandomness(tg_fault_base, n, out); }
static int tg_fault_sleep(sqlite3_vfs *v, int us) { return tg_fault_base->xSleep(tg_fault_base, us); }
static int tg_fault_time(sqlite3_vfs *v, double *t) { return tg_fault_base->xCurrentTime(tg_fault_base, t); }
static int tg_fault_lasterr(sqlite3_vfs *v, int n, char *m) {
    return tg_fault_base->xGetLastError ? tg_fault_base->xGetLastError(tg_fault_base, n, m) : 0;
}
static int tg_fault_time64(sqlite3_vfs *v, sqlite3_int64 *t) {
    return tg_fault_base->xCurrentTimeInt64(tg_fault_base, t);
}

int tg_fault_register(void) {
    if (tg_fault_base) return SQLITE_OK;
    sqlite3_vfs *base = sqlite3_vfs_find(0);
    if (!base) return SQLITE_ERROR;
    tg_fault_base = base;
    tg_fault.countdown = -1;
    tg_fault_vfs.iVersion = 2;
    tg_fault_vfs.szOsFile = (int)sizeof(tg_fault_file) + base->szOsFile;
    tg_fault_vfs.mxPathname = base->mxPathname;
    tg_fault_vfs.zName = "tgfault";
    tg_fault_vfs.xOpen = tg_fault_open;
    tg_fault_vfs.xDelete = tg_fault_delete;
    tg_fault_vfs.xAccess = tg_fault_access;
    tg_fault_vfs.xFullPathname = tg_fault_full;
    tg_fault_vfs.xDlOpen = tg_fault_dlopen;
    tg_fault_vfs.xDlError = tg_fault_dlerror;
    tg_fault_vfs.xDlSym = tg_fault_dlsym;
    tg_fault_vfs.xDlClose = tg_fault_dlclose;
    tg_fault_vfs.xRandomness = tg_fault_random;
    tg_fault_vfs.xSleep = tg_fault_sleep;
    tg_fault_vfs.xCurrentTime = tg_fault_time;
    tg_fault_vfs.xGetLastError = tg_fault_lasterr;
    tg_fault_vfs.xCurrentTimeInt64 = tg_fault_time64;
    return sqlite3_vfs_register(&tg_fault_vfs, 0);
}
void tg_fault_arm(int mask, int countdown, int persistent, int errcode) {
    tg_fault.mask = mask;
    tg_fault.countdown = countdown;
    tg_fault.persistent = persistent;
    tg_fault.errcode = errcode;
    tg_fault.failing = 0;
    tg_fault.hits = 0;
}
void tg_fault_disarm(void) {
    tg_fault.mask = 0;
    tg_fault.countdown = -1;
    tg_fault.failing = 0;
}
int tg_fault_hits(void) { return tg_fault.hits; }
