import TenantGateCore
import TenantGateServing
import TenantGateStore
import TenantGateSystem

/// What every thread of a worker shares: the pooled read connections, the one write connection, and
/// the group-commit queues and lease book built on it.
struct WorkerServices: Sendable {
    let readers: ConnectionPool
    /// Connections for long reads (a collection's vectors, its full-text index), so a scan never holds
    /// one that a model call needs for its circuit check.
    let scans: ConnectionPool
    /// The admin page's own connections: its work (a login's 600k-round PBKDF2, a page of executions)
    /// never holds one that the API's requests need.
    let admin: ConnectionPool
    /// Circuits found closed lately (read from memory, not through a pooled connection, per model call).
    let closedCircuits = ClosedCircuits()
    let writer: SharedWriter
    let settlements: SettleQueue
    let reservations: ReserveBatcher
    let leases: LeaseBook
}

/// Per-thread resources: a reusable curl handle (made on first use, so upstream connections stay alive
/// per thread) beside the worker's shared services. Never shared between threads.
final class ThreadResources {
    private(set) lazy var curl = CurlClient()
    let shared: WorkerServices
    /// Trace and span ids for this thread's requests.
    let ids: IDGenerator

    init(_ shared: WorkerServices) {
        self.shared = shared
        // Seeded once per thread from the CSPRNG (failing that, from the clocks: ids stay distinct).
        let clocks = [UInt64(bitPattern: Posix.wallMicros()), UInt64(bitPattern: Posix.monotonicMicros())]
        ids = IDGenerator(
            seed: (try? Crypto.randomBytes(32))
                ?? clocks.flatMap { word in (0..<8).map { UInt8(truncatingIfNeeded: word >> UInt64($0 * 8)) } })
    }

    var readers: ConnectionPool { shared.readers }
    var scans: ConnectionPool { shared.scans }
    var writer: SharedWriter { shared.writer }
    var settlements: SettleQueue { shared.settlements }
    var reservations: ReserveBatcher { shared.reservations }
    var leases: LeaseBook { shared.leases }

    /// The circuit breakers, over a pooled connection for the duration of `body`.
    func circuits<T>(_ body: (CircuitStore) throws -> T) throws -> T {
        try readers.with { try body(CircuitStore(reader: $0, writer: shared.writer)) }
    }
}
