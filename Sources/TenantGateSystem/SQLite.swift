import CSQLite
import CSQLiteFaults

#if canImport(Glibc)
    import Glibc
#endif

/// SQLite's own busy handler sleeps 1, 2, 5 … 100 ms between retries, which turns short write
/// contention between processes into long stalls; this one retries every 50–200 µs for up to ~10 s.
private enum BusyHandler {
    static let retry: @convention(c) (UnsafeMutableRawPointer?, Int32) -> Int32 = { _, count in
        if count > 50_000 { return 0 }
        usleep(count < 20 ? 50 : 200)
        return 1
    }
}

/// An error reported by SQLite, with its result code and message.
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    /// The primary or extended SQLite result code.
    public let code: Int32
    /// SQLite's message for the failure.
    public let message: String
    /// True when the database was busy or locked past the busy timeout.
    public var isBusy: Bool { code & 0xff == SQLITE_BUSY || code & 0xff == SQLITE_LOCKED }
    /// True when a UNIQUE or PRIMARY KEY constraint refused the write.
    public var isConstraint: Bool { code & 0xff == SQLITE_CONSTRAINT }
    /// True when the storage, not the statement, failed: busy or locked past the timeout, disk or database
    /// full (`TENANTGATE_DB_MAX_MB`), an I/O error, a read-only or unopenable file.
    public var isStorageFailure: Bool {
        [SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL, SQLITE_IOERR, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_NOMEM]
            .contains(code & 0xff)
    }
    /// A short reason for a storage failure, for error messages (never a path or SQL).
    public var reason: String {
        switch code & 0xff {
        case SQLITE_BUSY, SQLITE_LOCKED: return "busy"
        case SQLITE_FULL: return "full"
        case SQLITE_IOERR: return "I/O error"
        case SQLITE_READONLY: return "read-only"
        default: return "unavailable"
        }
    }
    public var description: String { "sqlite error \(code): \(message)" }
}

/// A value bound to or read from a statement.
public enum SQLValue: Sendable, Equatable {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
    case blob([UInt8])
}

/// One SQLite connection. Not thread-safe: each thread opens its own (SQLITE_OPEN_NOMUTEX).
public final class SQLiteConnection {
    private var handle: OpaquePointer?
    private var cache: [String: SQLiteStatement] = [:]
    /// The database file.
    public let path: String

    /// Opens (creating if needed) the database at `path` in WAL mode with a busy timeout; `vfs` names
    /// another SQLite VFS (the storage-fault tests' `SQLiteFaults.vfs`).
    public init(path: String, cacheKiB: Int = 512, vfs: String? = nil) throws {
        self.path = path
        var db: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, vfs)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close_v2(db)
            throw SQLiteError(code: rc, message: "\(message) (\(path))")
        }
        handle = db
        sqlite3_busy_handler(db, BusyHandler.retry, nil)
        sqlite3_extended_result_codes(db, 1)
        try execute("PRAGMA journal_mode=WAL")
        try execute("PRAGMA synchronous=NORMAL")
        try execute("PRAGMA foreign_keys=ON")
        try execute("PRAGMA cache_size=-\(cacheKiB)")
        // After the WAL starts over, its file is cut back to 64 MiB.
        try execute("PRAGMA journal_size_limit=67108864")
        if let pages = SQLiteConnection.maxPages { try execute("PRAGMA max_page_count=\(pages)") }
        if let pages = SQLiteConnection.autoCheckpointPages.withLock({ $0 }) {
            try execute("PRAGMA wal_autocheckpoint=\(pages)")
        }
    }

    /// The WAL size (pages) past which a commit checkpoints in the committing connection, for connections
    /// opened from now on; nil: SQLite's default (1,000 pages). A checkpoint syncs the files, so a pool
    /// whose one process checkpoints in the background raises this to a fallback far above what it keeps
    /// (`Maintenance.fallbackAutoCheckpointPages`): no commit on a request's path waits for a sync.
    public static func setAutoCheckpoint(pages: Int?) { autoCheckpointPages.withLock { $0 = pages } }
    private static let autoCheckpointPages = Locked<Int?>(nil)

    /// `TENANTGATE_DB_MAX_MB`: the database may not grow past this many MiB (4 KiB pages); a write that
    /// would is refused (SQLITE_FULL) and rolled back, so the disk never fills under the gateway.
    static let maxPages: Int? = Posix.env("TENANTGATE_DB_MAX_MB").flatMap { Int($0) }.flatMap {
        $0 > 0 && $0 <= 1 << 24 ? $0 * 256 : nil
    }

    deinit {
        cache.removeAll()
        sqlite3_close_v2(handle)
    }

    private func error(_ rc: Int32) -> SQLiteError {
        let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "closed"
        return SQLiteError(code: rc, message: message)
    }

    /// Runs one or more statements that return no rows.
    public func execute(_ sql: String) throws {
        var errmsg: UnsafeMutablePointer<CChar>?
        // errmsg is allocated by SQLite and freed with sqlite3_free below.
        let rc = sqlite3_exec(handle, sql, nil, nil, &errmsg)
        if rc != SQLITE_OK {
            let message = errmsg.map { String(cString: $0) } ?? "error"
            sqlite3_free(errmsg)
            throw SQLiteError(code: rc, message: message)
        }
    }

    /// A prepared statement for `sql`, prepared once per connection and reused.
    public func statement(_ sql: String) throws -> SQLiteStatement {
        if let cached = cache[sql] {
            return cached
        }
        // Statements naming per-collection tables differ by table; the cache starts over rather than grow
        // without bound (a statement still held by a caller stays valid: it owns its handle).
        if cache.count >= 512 { cache.removeAll(keepingCapacity: true) }
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc) }
        let statement = SQLiteStatement(stmt, connection: self)
        cache[sql] = statement
        return statement
    }

    /// Runs `sql` with `bindings` and returns every row.
    @discardableResult
    public func query(_ sql: String, _ bindings: [SQLValue] = []) throws -> [[SQLValue]] {
        let stmt = try statement(sql)
        return try stmt.all(bindings)
    }

    /// Runs `body` inside `BEGIN IMMEDIATE … COMMIT`, rolling back if it throws.
    /// (A worker's request threads write accounting, settlements and circuits through its one
    /// `SharedWriter`, which queues them on its lock; its other writers, the admin page's two connections,
    /// the config poller and the heartbeat, wait on SQLite's busy handler.)
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        // Prepared once per connection: no SQL parsing per transaction.
        try statement("BEGIN IMMEDIATE").run()
        do {
            let value = try body()
            try statement("COMMIT").run()
            return value
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// Copies what it can of the WAL into the database without waiting for (or blocking) readers and
    /// writers, or with `restart`, waits for them so the next commit starts the WAL file over (under
    /// constant load a passive checkpoint never lets that happen and the file grows without bound).
    /// Returns the frames in the WAL before it. Run off the request path.
    @discardableResult
    public func checkpoint(restart: Bool = false) throws -> Int {
        let row = try query(restart ? "PRAGMA wal_checkpoint(RESTART)" : "PRAGMA wal_checkpoint(PASSIVE)").first
        return Int(row?[1].int ?? 0)
    }

    /// Rows changed by the last statement.
    public var changes: Int { Int(sqlite3_changes(handle)) }

    fileprivate func stepError(_ rc: Int32) -> SQLiteError { error(rc) }
}

/// A prepared statement owned by its connection; reset after every use.
public final class SQLiteStatement {
    private let stmt: OpaquePointer
    private unowned let connection: SQLiteConnection

    /// The statement's parameters (`?` count).
    private let parameters: Int

    fileprivate init(_ stmt: OpaquePointer, connection: SQLiteConnection) {
        self.stmt = stmt
        self.connection = connection
        parameters = Int(sqlite3_bind_parameter_count(stmt))
    }

    deinit { sqlite3_finalize(stmt) }

    private func bind(_ values: [SQLValue]) throws {
        sqlite3_reset(stmt)
        // Every parameter is bound below when the values cover them all (a multi-row insert has hundreds):
        // clearing first would only write each of them twice. Fewer values leave the rest NULL, as before.
        if values.count < parameters { sqlite3_clear_bindings(stmt) }
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            let rc: Int32
            switch value {
            case .null: rc = sqlite3_bind_null(stmt, index)
            case .int(let v): rc = sqlite3_bind_int64(stmt, index, v)
            case .double(let v): rc = sqlite3_bind_double(stmt, index, v)
            case .text(var v):
                // The bytes are copied by SQLite (SQLITE_TRANSIENT) before the closure returns; read in place
                // (no C string copy). An empty string binds '' (a NULL pointer would bind NULL).
                rc = v.withUTF8 { buf in
                    guard let base = buf.baseAddress, !buf.isEmpty else {
                        return tg_sqlite3_bind_text_transient(stmt, index, "", 0)
                    }
                    return base.withMemoryRebound(to: CChar.self, capacity: buf.count) {
                        tg_sqlite3_bind_text_transient(stmt, index, $0, Int32(buf.count))
                    }
                }
            case .blob(let v):
                // Copied by SQLite before the closure returns.
                rc = v.withUnsafeBytes { buf in
                    tg_sqlite3_bind_blob_transient(stmt, index, buf.baseAddress, Int32(buf.count))
                }
            }
            if rc != SQLITE_OK { throw connection.stepError(rc) }
        }
    }

    private func column(_ index: Int32) -> SQLValue {
        switch sqlite3_column_type(stmt, index) {
        case SQLITE_INTEGER: return .int(sqlite3_column_int64(stmt, index))
        case SQLITE_FLOAT: return .double(sqlite3_column_double(stmt, index))
        case SQLITE_TEXT:
            guard let ptr = sqlite3_column_text(stmt, index) else { return .text("") }
            let count = Int(sqlite3_column_bytes(stmt, index))
            // The pointer is valid until the next step/reset; the String copies it now.
            return .text(String(decoding: UnsafeBufferPointer(start: ptr, count: count), as: UTF8.self))
        case SQLITE_BLOB:
            let count = Int(sqlite3_column_bytes(stmt, index))
            guard count > 0, let ptr = sqlite3_column_blob(stmt, index) else { return .blob([]) }
            // Copied into an array before the next step/reset.
            return .blob(Array(UnsafeRawBufferPointer(start: ptr, count: count)))
        default: return .null
        }
    }

    /// Binds, steps to the end and returns every row; the statement is reset before returning.
    public func all(_ values: [SQLValue] = []) throws -> [[SQLValue]] {
        try bind(values)
        defer { sqlite3_reset(stmt) }
        var rows: [[SQLValue]] = []
        let columns = sqlite3_column_count(stmt)
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw connection.stepError(rc) }
            var row: [SQLValue] = []
            row.reserveCapacity(Int(columns))
            for i in 0..<columns { row.append(column(i)) }
            rows.append(row)
        }
        return rows
    }

    /// Binds, then calls `body` for each row without materialising it (for large result sets); the
    /// statement is reset before returning.
    public func forEach(_ values: [SQLValue] = [], _ body: (SQLiteRow) -> Void) throws {
        try bind(values)
        defer { sqlite3_reset(stmt) }
        let row = SQLiteRow(stmt)
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw connection.stepError(rc) }
            body(row)
        }
    }

    /// Binds and runs a statement that returns no rows.
    public func run(_ values: [SQLValue] = []) throws {
        _ = try all(values)
    }
}

extension SQLValue {
    /// The value as an integer, if it is one.
    public var int: Int64? {
        if case .int(let v) = self { return v }
        if case .double(let v) = self { return Int64(v) }
        return nil
    }
    /// The value as text, if it is text.
    public var text: String? {
        if case .text(let v) = self { return v }
        return nil
    }
    /// The value as a double, if numeric.
    public var double: Double? {
        switch self {
        case .double(let v): return v
        case .int(let v): return Double(v)
        default: return nil
        }
    }
    /// The value as bytes, if a blob.
    public var blob: [UInt8]? {
        if case .blob(let v) = self { return v }
        return nil
    }
}

/// The current row of a statement, valid only inside `SQLiteStatement.forEach`'s closure.
public struct SQLiteRow {
    private let stmt: OpaquePointer

    fileprivate init(_ stmt: OpaquePointer) { self.stmt = stmt }

    /// Column `index` as an integer.
    public func int(_ index: Int32) -> Int64 { sqlite3_column_int64(stmt, index) }

    /// Column `index` as a string.
    public func text(_ index: Int32) -> String {
        guard let ptr = sqlite3_column_text(stmt, index) else { return "" }
        // Valid until the next step; the String copies it now.
        return String(
            decoding: UnsafeBufferPointer(start: ptr, count: Int(sqlite3_column_bytes(stmt, index))), as: UTF8.self)
    }

    /// Appends column `index`'s text bytes to `out` without making a String.
    public func appendText(_ index: Int32, to out: inout [UInt8]) {
        guard let ptr = sqlite3_column_text(stmt, index) else { return }
        // Valid until the next step; copied into `out` now.
        out.append(contentsOf: UnsafeBufferPointer(start: ptr, count: Int(sqlite3_column_bytes(stmt, index))))
    }

    /// Appends column `index`'s blob bytes to `out`.
    public func appendBlob(_ index: Int32, to out: inout [UInt8]) {
        guard let ptr = sqlite3_column_blob(stmt, index) else { return }
        // Valid until the next step; copied into `out` now.
        out.append(
            contentsOf: UnsafeRawBufferPointer(start: ptr, count: Int(sqlite3_column_bytes(stmt, index))))
    }

    /// Whether column `index`'s text equals `bytes`.
    public func textEquals(_ index: Int32, _ bytes: [UInt8]) -> Bool {
        guard let ptr = sqlite3_column_text(stmt, index) else { return bytes.isEmpty }
        let count = Int(sqlite3_column_bytes(stmt, index))
        guard count == bytes.count else { return false }
        // Compared in place, before the next step.
        return UnsafeBufferPointer(start: ptr, count: count).elementsEqual(bytes)
    }
}

/// Storage faults on demand, for tests: connections opened with `vfs` fail chosen writes, syncs or
/// truncations (the C layer's "tgfault" VFS over the default one). Process-wide: one test at a time.
public enum SQLiteFaults {
    /// The operations a fault can hit.
    public struct Operations: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let write = Operations(rawValue: TG_FAULT_WRITE)
        public static let sync = Operations(rawValue: TG_FAULT_SYNC)
        public static let truncate = Operations(rawValue: TG_FAULT_TRUNCATE)
    }

    /// The failure a fault reports.
    public enum Failure: Sendable {
        case diskFull, writeError, syncError

        var code: Int32 {
            switch self {
            case .diskFull: return SQLITE_FULL
            case .writeError: return SQLITE_IOERR | (3 << 8)  // SQLITE_IOERR_WRITE
            case .syncError: return SQLITE_IOERR | (4 << 8)  // SQLITE_IOERR_FSYNC
            }
        }
    }

    /// The VFS name to open connections with (registered on first use).
    public static var vfs: String {
        _ = tg_fault_register()
        return "tgfault"
    }

    /// After `after` more of `operations` succeed, the next fails with `failure`; with `persistent`, every
    /// later one too (a full disk), until `disarm()`.
    public static func arm(_ operations: Operations, after: Int, failure: Failure, persistent: Bool = false) {
        tg_fault_arm(operations.rawValue, Int32(clamping: after), persistent ? 1 : 0, failure.code)
    }

    /// No more faults.
    public static func disarm() { tg_fault_disarm() }

    /// Whether an armed fault has fired since `arm`.
    public static var fired: Bool { tg_fault_hits() > 0 }
}
