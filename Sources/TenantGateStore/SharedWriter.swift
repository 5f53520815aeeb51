import TenantGateSystem

/// The one connection a worker's threads write through (reservations, settlements, circuit changes), and
/// the only way to it: every use holds its lock, so the connection, opened without SQLite's own mutex, is
/// never used by two threads at once. One shared connection keeps its page cache warm, where a connection
/// per thread would find its cache invalidated by every other thread's commit.
public final class SharedWriter: Sendable {
    private let connection: Locked<Confined<any SQLConnection>>
    /// The worker's lease rows as its committed settlements left them (used under the connection's lock).
    public let leaseRows = LeaseRowCache()
    /// The audit keys its settlements and circuit changes chain events with.
    public let auditKeys = AuditKeys()

    /// The engine behind the connection.
    public let engine: SQLEngine

    /// Takes `connection` over: nothing else may use it afterwards.
    public init(_ connection: any SQLConnection) {
        engine = connection.engine
        self.connection = Locked(Confined(connection))
    }

    /// Opens the worker's write connection to `path`.
    public convenience init(path: String) throws { self.init(try Database.open(path: path, cacheKiB: 4096)) }

    /// Runs `body` in one `BEGIN IMMEDIATE … COMMIT` (rolled back if it throws).
    public func withTransaction<T>(_ body: (any SQLConnection) throws -> T) throws -> T {
        try connection.withLock { held in try held.resource.transaction { try body(held.resource) } }
    }

    /// Runs `body` holding the connection (reads, or transactions of its own).
    public func read<T>(_ body: (any SQLConnection) throws -> T) rethrows -> T {
        try connection.withLock { held in try body(held.resource) }
    }

    /// Runs `body` with the accounting store over the connection.
    public func accounting<T>(_ body: (AccountingStore) throws -> T) rethrows -> T {
        try read { try body(AccountingStore($0, leaseRows: leaseRows, auditKeys: auditKeys)) }
    }
}
