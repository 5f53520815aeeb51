#ifndef TG_SQLITE_FAULTS_H
#define TG_SQLITE_FAULTS_H
/* A fault-injecting SQLite VFS ("tgfault") over the default one, for the storage-fault tests: after
   `countdown` more of the armed operations (TG_FAULT_WRITE, TG_FAULT_SYNC, TG_FAULT_TRUNCATE) the next one
   fails with `errcode` (SQLITE_FULL, SQLITE_IOERR_WRITE, SQLITE_IOERR_FSYNC, …) and, when `persistent`,
   every later one too (a full disk) until disarmed. Connections opened with another VFS never see it.
   Process-wide state: one test at a time. */
#define TG_FAULT_WRITE 1
#define TG_FAULT_SYNC 2
#define TG_FAULT_TRUNCATE 4

/* Registers "tgfault" (once); 0 (SQLITE_OK) on success. */
int tg_fault_register(void);
void tg_fault_arm(int mask, int countdown, int persistent, int errcode);
void tg_fault_disarm(void);
/* How many faults fired since the last arm. */
int tg_fault_hits(void);
#endif
