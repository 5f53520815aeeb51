/// The engine behind a connection. The store's SQL is written once; it differs only where the engines
/// do (schema and migrations, full-text search, `INSERT OR …` upserts, SQLite's pragmas).
public enum SQLEngine: Sendable, Equatable {
    case sqlite
    case postgres
}

/// An error of the storage, not of the statement, that a request answers with `503` (busy past the
/// timeout, disk full, I/O error, server gone): nothing the transaction did was committed.
public protocol StorageFailure: Error {
    var isStorageFailure: Bool { get }
    /// A word for the error message: busy, full, I/O error, unavailable.
    var reason: String { get }
}

/// What the store needs of a database connection, on SQLite and on PostgreSQL alike:
/// - statements with SQLite's parameters (`?`, `?1`), prepared once per connection and reused;
/// - values as `SQLValue`s (integers and booleans as `.int`, `bytea`/BLOB as `.blob`);
/// - write transactions that run one at a time across every process and host sharing the store, and
///   see everything committed before them: SQLite's `BEGIN IMMEDIATE` (one writer per database file);
///   on PostgreSQL, `READ COMMITTED` plus one transaction-scoped advisory lock that every write
///   transaction takes first (`PostgresConnection.writeTransaction`). Admission decisions (limits,
///   budgets, leases) are exact by the same argument on both: each sees every reservation and settlement
///   committed before it, and none commits in between.
public protocol SQLConnection: AnyObject {
    var engine: SQLEngine { get }
    /// Runs statements without parameters (schema, pragmas).
    func execute(_ sql: String) throws
    /// Runs one statement with `bindings`; returns its rows.
    @discardableResult func query(_ sql: String, _ bindings: [SQLValue]) throws -> [[SQLValue]]
    /// Runs `body` as one write transaction (see above), rolling back if it throws.
    func writeTransaction<T>(_ body: () throws -> T) throws -> T
    /// Rows changed by the last statement.
    var changes: Int { get }
}

extension SQLiteConnection: SQLConnection {
    public var engine: SQLEngine { .sqlite }
    public func writeTransaction<T>(_ body: () throws -> T) throws -> T { try transaction(body) }
}

extension SQLiteError: StorageFailure {}

extension PostgresConnection: SQLConnection {
    public var engine: SQLEngine { .postgres }

    /// The advisory lock key every write transaction takes (any constant; "TGWR" in ASCII).
    static let writeLockKey: Int64 = 0x5447_5752

    /// `BEGIN`, then the store-wide write lock (held until `COMMIT` or `ROLLBACK`), then `body`. Under
    /// `READ COMMITTED` every statement after the lock sees all that earlier write transactions committed
    /// (a transaction's commit is visible before its locks are released), so writers behave as SQLite's.
    public func writeTransaction<T>(_ body: () throws -> T) throws -> T {
        try transaction {
            try query("SELECT pg_advisory_xact_lock(?1)", [.int(PostgresConnection.writeLockKey)])
            return try body()
        }
    }
}

extension PostgresError: StorageFailure {
    public var reason: String {
        switch sqlState.prefix(2) {
        case "53": return sqlState == "53100" ? "full" : "out of resources"
        case "58": return "I/O error"
        case "55", "40": return "busy"
        default: return "unavailable"
        }
    }
}
