import TenantGateSystem

/// The worker processes alive, as each reports itself (host and pid, start, last seen, requests in
/// flight): on a PostgreSQL store, the workers of every host.
public struct WorkerRegistry {
    private let db: any SQLConnection
    private let host: String

    /// A registry over `db`, for workers of `host` (this machine's name by default).
    public init(_ db: any SQLConnection, host: String = Posix.hostName) {
        self.db = db
        self.host = host
    }

    /// Worker `pid` of this host is alive with `inFlight` requests; rows unseen for a minute (of any
    /// host) are dropped.
    public func beat(pid: Int32, startedMs: Int64, nowMs: Int64, inFlight: Int) throws {
        try db.statement(
            """
            INSERT INTO workers(host, pid, started_ms, seen_ms, in_flight) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT(host, pid) DO UPDATE SET started_ms = excluded.started_ms, seen_ms = excluded.seen_ms,
              in_flight = excluded.in_flight
            """
        ).run([.text(host), .int(Int64(pid)), .int(startedMs), .int(nowMs), .int(Int64(inFlight))])
        try db.statement("DELETE FROM workers WHERE seen_ms < ?").run([.int(nowMs - 60_000)])
    }

    /// Worker `pid` of this host exited.
    public func remove(pid: Int32) throws {
        try db.statement("DELETE FROM workers WHERE host = ? AND pid = ?").run([.text(host), .int(Int64(pid))])
    }

    /// Workers seen since `sinceMs`, and their requests in flight.
    public func alive(sinceMs: Int64) throws -> (workers: Int64, inFlight: Int64) {
        let row = try db.statement("SELECT COUNT(*), COALESCE(SUM(in_flight), 0) FROM workers WHERE seen_ms > ?")
            .all([.int(sinceMs)]).first
        return (row?[0].int ?? 0, row?[1].int ?? 0)
    }
}

/// Housekeeping every worker does on its own connections.
public enum Maintenance {
    /// WAL frames past which a checkpoint restarts the log (32 MiB of 4 KiB pages).
    public static let restartFrames = 8192

    /// Copies what it can of the WAL into the database without waiting for readers (SQLite; PostgreSQL
    /// checkpoints by itself).
    public static func checkpoint(_ db: any SQLConnection) throws {
        if let sqlite = db as? SQLiteConnection { _ = try sqlite.checkpoint() }
    }

    /// Checkpoints, and past `restartFrames` makes the WAL start over (briefly holding writers back):
    /// under constant load passive checkpoints never let it start over and its file grows without bound.
    public static func boundWAL(_ db: any SQLConnection) throws {
        guard let sqlite = db as? SQLiteConnection else { return }
        if try sqlite.checkpoint() > restartFrames { _ = try sqlite.checkpoint(restart: true) }
    }
}
