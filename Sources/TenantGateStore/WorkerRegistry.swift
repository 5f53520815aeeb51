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

    /// Commits leave checkpoints to the `Checkpointer` up to this many WAL pages (64 MiB), and only past
    /// it (should no process be checkpointing) checkpoint by themselves.
    public static let fallbackAutoCheckpointPages = 16384

    /// Makes commits on SQLite connections opened from now on in this process leave checkpoints to the
    /// one `Checkpointer` of the processes sharing the database (up to the fallback above).
    public static func leaveCheckpointsToOneProcess() {
        SQLiteConnection.setAutoCheckpoint(pages: fallbackAutoCheckpointPages)
    }

    /// Checkpoints, and past `restartFrames` makes the WAL start over (briefly holding writers back):
    /// under constant load passive checkpoints never let it start over and its file grows without bound.
    public static func boundWAL(_ db: any SQLConnection) throws {
        guard let sqlite = db as? SQLiteConnection else { return }
        if try sqlite.checkpoint() > restartFrames { _ = try sqlite.checkpoint(restart: true) }
    }
}

/// One process among those sharing a SQLite database checkpoints it, off every request's path: whoever
/// holds the lock file `<db>-checkpointer`. A checkpoint syncs the WAL and the database file; done by
/// every process (SQLite's default: the commit that passes 1,000 WAL pages checkpoints, in the
/// committing connection) it made answers that wait for their settlement's commit wait for those syncs
/// too, and the syncs of several processes stall one another. When the holder ends (or is killed), the
/// kernel releases the lock and the next process to `claim` it takes the role over.
public final class Checkpointer {
    private let lockPath: String
    private var file: FileLock?
    private var resigned = false
    private var tried = false

    /// For the database at `dbPath` (SQLite only: PostgreSQL checkpoints by itself).
    public init(dbPath: String) { lockPath = dbPath + "-checkpointer" }

    /// Whether this process holds the role.
    public var holds: Bool { file?.held ?? false }

    /// Gives the role up for good (a draining worker): another process's next `claim` takes it.
    public func resign() {
        file?.unlock()
        resigned = true
    }

    /// Takes the role if it is free (and this one has not resigned); true when it has just taken it.
    public func claim() -> Bool {
        guard !resigned, !holds else { return false }
        if file == nil {
            file = FileLock(path: lockPath)
            tried = true
        }
        return file?.tryLock() ?? false
    }

    /// The lock file could not be opened (a directory or file this process may not read or create): this
    /// process never takes the role.
    public var lockUnavailable: Bool { tried && file == nil }

    /// When this process holds the role, copies the WAL into the database and bounds it
    /// (`Maintenance.boundWAL`).
    public func checkpoint(_ db: any SQLConnection) throws {
        if holds { try Maintenance.boundWAL(db) }
    }
}
