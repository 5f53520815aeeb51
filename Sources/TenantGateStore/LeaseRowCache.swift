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
public final class LeaseRowCache: Sendable {
    public struct Row: Sendable, Equatable {
        let day: String
        let tokens: Int64
        let nano: Int64
        let expiresMs: Int64
    }
    /// The rows, and the count at which expired ones are dropped next (then twice as many as are left, at
    /// least 256). Used under the writer connection's lock already: this lock is never contended.
    private let state = Locked<(rows: [Int64: Row], sweepAt: Int)>(([:], 256))
    /// How long before its lease expires an entry stops being used.
    static let marginMs: Int64 = 30_000
    /// Wall-clock milliseconds (the sweep's clock).
    let clock: @Sendable () -> Int64

    public init(clock: @escaping @Sendable () -> Int64 = { Posix.wallMicros() / 1000 }) { self.clock = clock }

    /// The cached row of `lease`, unless it is near its expiry (or unknown).
    func row(_ lease: Int64, nowMs: Int64) -> Row? {
        guard let row = state.withLock({ $0.rows[lease] }), nowMs < row.expiresMs - LeaseRowCache.marginMs else {
            return nil
        }
        return row
    }

    /// A committed batch's changes (nil: the row is gone or must be read again).
    func apply(_ updates: [Int64: Row?]) {
        state.withLock { s in
            for (id, row) in updates { s.rows[id] = row }
            if s.rows.count > s.sweepAt {
                let nowMs = clock()
                s.rows = s.rows.filter { nowMs < $0.value.expiresMs }
                s.sweepAt = max(256, 2 * s.rows.count)
            }
        }
    }

    /// Forgets every row (they are read again when next needed).
    func clear() { state.withLock { $0.rows.removeAll() } }

    /// Leases cached now.
    public var count: Int { state.withLock { $0.rows.count } }
}
