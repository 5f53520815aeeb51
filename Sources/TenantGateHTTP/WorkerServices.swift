import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// What every thread of a worker shares: the storage ports, the group-commit queues behind admission and
/// settlement, the lease book, and the worker's in-memory indexes (never process-wide singletons: two
/// gateways in one process, as the pipeline tests make, share nothing).
public struct WorkerServices: Sendable {
    public let store: StorePorts
    public let settlements: any SettlementQueueing
    public let reservations: any Reserving
    public let leases: LeaseBook
    /// Circuits found closed lately (read from memory, not through a pooled connection, per model call).
    let closedCircuits = ClosedCircuits()
    /// The semantic cache's vectors, per tenant, scope and signature.
    let semanticIndex = SemanticIndex()
    /// Exact-cache answers this worker served lately.
    let hotCache = HotCache()

    public init(
        store: StorePorts, settlements: any SettlementQueueing, reservations: any Reserving, leases: LeaseBook
    ) {
        self.store = store
        self.settlements = settlements
        self.reservations = reservations
        self.leases = leases
    }
}

/// Per-thread resources: a reusable curl handle (made on first use, so upstream connections stay alive
/// per thread) beside the worker's shared services. Never shared between threads.
public final class ThreadResources {
    private var madeTransport: (any UpstreamTransport)?
    private let makeTransport: () -> any UpstreamTransport
    let shared: WorkerServices
    /// Trace and span ids for this thread's requests.
    let ids: IDGenerator

    /// Resources over `shared`; `transport` makes this thread's upstream client (curl unless a test gives
    /// its own).
    public init(_ shared: WorkerServices, transport: @escaping () -> any UpstreamTransport = { CurlClient() }) {
        self.shared = shared
        makeTransport = transport
        // Seeded once per thread from the CSPRNG (failing that, from the clocks: ids stay distinct).
        let clocks = [UInt64(bitPattern: Posix.wallMicros()), UInt64(bitPattern: Posix.monotonicMicros())]
        ids = IDGenerator(
            seed: (try? Crypto.randomBytes(32))
                ?? clocks.flatMap { word in (0..<8).map { UInt8(truncatingIfNeeded: word >> UInt64($0 * 8)) } })
    }

    /// This thread's upstream client, made on first use.
    var transport: any UpstreamTransport {
        if let madeTransport { return madeTransport }
        let made = makeTransport()
        madeTransport = made
        return made
    }

    var store: StorePorts { shared.store }
    var settlements: any SettlementQueueing { shared.settlements }
    var reservations: any Reserving { shared.reservations }
    var leases: LeaseBook { shared.leases }
}
