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
    /// The database file (SQLite). On PostgreSQL a name inside `TENANTGATE_HOME`, so that what is kept
    /// next to the database file (`master.key`) is found in the home directory.
    var path: String { get }
    /// Runs statements without parameters (schema, pragmas).
    func execute(_ sql: String) throws
    /// Runs one statement with `bindings`; returns its rows.
    @discardableResult func query(_ sql: String, _ bindings: [SQLValue]) throws -> [[SQLValue]]
    /// `sql` prepared on this connection (once, on first use) for running many times.
    func prepared(_ sql: String) throws -> any SQLStatement
    /// Runs `body` as one write transaction (see above), rolling back if it throws.
    func writeTransaction<T>(_ body: () throws -> T) throws -> T
    /// Rows changed by the last statement.
    var changes: Int { get }
}

extension SQLiteConnection: SQLConnection {
    public var engine: SQLEngine { .sqlite }
    public func prepared(_ sql: String) throws -> any SQLStatement { try statement(sql) }
    public func writeTransaction<T>(_ body: () throws -> T) throws -> T { try transaction(body) }
}

extension SQLiteError: StorageFailure {}

extension PostgresConnection: SQLConnection {
    public var engine: SQLEngine { .postgres }
    public var path: String { (Posix.env("TENANTGATE_HOME") ?? ".") + "/postgres" }
    public func prepared(_ sql: String) throws -> any SQLStatement { PostgresStatement(self, sql) }

    /// The advisory lock key every write transaction takes (any constant; "TGWR" in ASCII).
    static let writeLockKey: Int64 = 0x5447_5752

    /// `BEGIN`, then the store-wide write lock (held until `COMMIT` or `ROLLBACK`), then `body` (the three
    /// go to the server with `body`'s first statement that needs an answer, in one round trip). Under
    /// `READ COMMITTED` every statement after the lock sees all that earlier write transactions committed
    /// (a transaction's commit is visible before its locks are released), so writers behave as SQLite's.
    public func writeTransaction<T>(_ body: () throws -> T) throws -> T {
        try transaction {
            try queue("SELECT pg_advisory_xact_lock(?1)", [.int(PostgresConnection.writeLockKey)])
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

/// The current row while a statement's rows are walked (`SQLStatement.forEach`), read in place.
public protocol SQLRow {
    func int(_ index: Int32) -> Int64
    func text(_ index: Int32) -> String
    func appendText(_ index: Int32, to out: inout [UInt8])
    func appendBlob(_ index: Int32, to out: inout [UInt8])
    func textEquals(_ index: Int32, _ bytes: [UInt8]) -> Bool
}

/// A statement prepared once per connection and run many times.
public protocol SQLStatement: AnyObject {
    /// Runs it with `values`; returns every row.
    func all(_ values: [SQLValue]) throws -> [[SQLValue]]
    /// Runs it with `values`, for no rows.
    func run(_ values: [SQLValue]) throws
    /// Runs it with `values`, calling `body` for each row (valid only inside `body`).
    func each(_ values: [SQLValue], _ body: (any SQLRow) -> Void) throws
    /// Runs it with `values`, for no rows and no `changes`, inside a transaction: on PostgreSQL it waits
    /// and goes to the server with the next statement that needs an answer, or with the `COMMIT`, in one
    /// round trip (libpq's pipeline mode); an error it meets then fails that statement, or the commit, and
    /// so the transaction. SQLite, where a statement costs no round trip, runs it now.
    func queue(_ values: [SQLValue]) throws
}

extension SQLStatement {
    public func all() throws -> [[SQLValue]] { try all([]) }
    public func run() throws { try run([]) }
    public func forEach(_ values: [SQLValue] = [], _ body: (any SQLRow) -> Void) throws { try each(values, body) }
}

extension SQLConnection {
    /// `sql` prepared on this connection (once) for running many times.
    public func statement(_ sql: String) throws -> any SQLStatement { try prepared(sql) }
    /// A write transaction (see `writeTransaction`).
    public func transaction<T>(_ body: () throws -> T) throws -> T { try writeTransaction(body) }
    @discardableResult public func query(_ sql: String) throws -> [[SQLValue]] { try query(sql, []) }
}

extension SQLiteRow: SQLRow {}

extension SQLiteStatement: SQLStatement {
    public func queue(_ values: [SQLValue]) throws { try run(values) }
    public func each(_ values: [SQLValue], _ body: (any SQLRow) -> Void) throws {
        try forEach(values) { row in body(row) }
    }
}

/// A statement on PostgreSQL: the connection prepares it on first use (`PostgresConnection.query`).
final class PostgresStatement: SQLStatement {
    private unowned let connection: PostgresConnection
    private let sql: String

    init(_ connection: PostgresConnection, _ sql: String) {
        self.connection = connection
        self.sql = sql
    }

    func all(_ values: [SQLValue]) throws -> [[SQLValue]] { try connection.query(sql, values) }
    func run(_ values: [SQLValue]) throws { try connection.query(sql, values) }
    func queue(_ values: [SQLValue]) throws { try connection.queue(sql, values) }
    func each(_ values: [SQLValue], _ body: (any SQLRow) -> Void) throws {
        for row in try connection.query(sql, values) { body(ValuesRow(values: row)) }
    }
}

/// A row already read into values; reads as SQLite's columns do (a missing or NULL column is 0 or "",
/// an integer read as text is its digits).
struct ValuesRow: SQLRow {
    let values: [SQLValue]

    private func value(_ index: Int32) -> SQLValue {
        index >= 0 && Int(index) < values.count ? values[Int(index)] : .null
    }
    func int(_ index: Int32) -> Int64 { value(index).int ?? 0 }
    func text(_ index: Int32) -> String {
        switch value(index) {
        case .text(let text): return text
        case .int(let int): return String(int)
        case .double(let double): return String(double)
        case .blob(let bytes): return String(decoding: bytes, as: UTF8.self)
        case .null: return ""
        }
    }
    func appendText(_ index: Int32, to out: inout [UInt8]) { out.append(contentsOf: text(index).utf8) }
    func appendBlob(_ index: Int32, to out: inout [UInt8]) {
        if case .blob(let bytes) = value(index) { out.append(contentsOf: bytes) } else { appendText(index, to: &out) }
    }
    func textEquals(_ index: Int32, _ bytes: [UInt8]) -> Bool { text(index).utf8.elementsEqual(bytes) }
}
