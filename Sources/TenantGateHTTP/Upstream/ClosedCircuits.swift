import TenantGateCore
import TenantGateSystem

/// The circuits a worker found closed in the last `freshMs`, by tenant and backend. A failure forgets
/// its pair, and a closed state read before any failure since is not remembered (the epoch).
final class ClosedCircuits: Sendable {
    private let state = Locked<(seen: [String: Int64], epoch: UInt64)>(([:], 0))
    /// How long a closed circuit is trusted without reading the database.
    static let freshMs: Int64 = 250
    /// Most pairs remembered (past it, the table starts over).
    static let capacity = 65_536

    private static func key(_ tenant: String, _ backend: String) -> String { tenant + "\u{0}" + backend }

    /// Taken before reading a circuit's state; `remember` ignores a state read before a later failure.
    var epoch: UInt64 { state.withLock { $0.epoch } }

    func isClosed(tenant: String, backend: String, nowMs: Int64) -> Bool {
        state.withLock { s in
            guard let at = s.seen[ClosedCircuits.key(tenant, backend)] else { return false }
            return nowMs >= at && nowMs - at < ClosedCircuits.freshMs
        }
    }

    func remember(tenant: String, backend: String, nowMs: Int64, epoch: UInt64) {
        state.withLock { s in
            guard s.epoch == epoch else { return }
            if s.seen.count >= ClosedCircuits.capacity { s.seen.removeAll(keepingCapacity: true) }
            s.seen[ClosedCircuits.key(tenant, backend)] = nowMs
        }
    }

    func forget(tenant: String, backend: String) {
        state.withLock { s in
            s.epoch &+= 1
            s.seen.removeValue(forKey: ClosedCircuits.key(tenant, backend))
        }
    }
}
