import TenantGateCore
import TenantGateHTTP
import TenantGateServing
import TenantGateStore
import TenantGateSystem

/// Reports this worker as alive (and its in-flight count) once a second, for `/metrics`, and keeps the
/// WAL bounded.
final class Heartbeat {
    private let dbPath: String
    private let log: AppLog
    private var db: (any SQLConnection)?
    private let started = Posix.wallMicros() / 1000

    init(dbPath: String, log: AppLog) {
        self.dbPath = dbPath
        self.log = log
        beat(inFlight: 0)
    }

    func beat(inFlight: Int) {
        do {
            let conn = try db ?? Database.open(path: dbPath, cacheKiB: 64)
            db = conn
            try WorkerRegistry(conn).beat(
                pid: Posix.pid, startedMs: started, nowMs: Posix.wallMicros() / 1000, inFlight: inFlight)
        } catch {
            log.event("heartbeat_failed", ["error": .string("\(error)")], level: "warn")
            db = nil
            return
        }
    }

    func stop() {
        if let db { try? WorkerRegistry(db).remove(pid: Posix.pid) }
    }
}
