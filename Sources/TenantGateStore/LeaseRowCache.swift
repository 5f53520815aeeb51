import TenantGateCore
import TenantGateSystem

/// A worker's lease rows (what each still holds, the day it holds it on, its expiry) as the worker's own
/// committed settlements left them, so that a batch of leased settlements needs to read nothing.
///
/// Exact because only the worker that holds a lease changes its row (its settlements, its retirement),
/// all through its one write connection, and the cache changes only after a commit (a rolled-back batch
/// leaves both the row and the cache as they were). The one other writer of a lease row is the sweep of
/// expired reservations, run by every worker of every host: so an entry is used only until `marginMs`
/// before its lease expires (then the row is read again; hosts' clocks must agree within that margin),
/// and expired entries are dropped.
public final class LeaseRowCache: @unchecked Sendable {  // used only under the writer connection's lock
    public struct Row: Sendable, Equatable {
        let day: String
        let tokens: Int64
        let nano: Int64
        let expiresMs: Int64
    }
    private var rows: [Int64: Row] = [:]
    /// How long before its lease expires an entry stops being used.
    static let marginMs: Int64 = 30_000
    /// Entries kept before expired ones are dropped (then twice as many as are left, at least 256).
    private var sweepAt = 256
    /// Wall-clock milliseconds (the sweep's clock).
    let clock: @Sendable () -> Int64

    public init(clock: @escaping @Sendable () -> Int64 = { Posix.wallMicros() / 1000 }) { self.clock = clock }

    /// The cached row of `lease`, unless it is near its expiry (or unknown).
    func row(_ lease: Int64, nowMs: Int64) -> Row? {
        guard let row = rows[lease], nowMs < row.expiresMs - LeaseRowCache.marginMs else { return nil }
        return row
    }

    /// A committed batch's changes (nil: the row is gone or must be read again).
    func apply(_ updates: [Int64: Row?]) {
        for (id, row) in updates { rows[id] = row }
        if rows.count > sweepAt {
            let nowMs = clock()
            rows = rows.filter { nowMs < $0.value.expiresMs }
            sweepAt = max(256, 2 * rows.count)
        }
    }

    /// Forgets every row (they are read again when next needed).
    func clear() { rows.removeAll() }

    /// Leases cached now.
    public var count: Int { rows.count }
}
