import TenantGateCore
import TenantGateServing
import TenantGateSystem

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
