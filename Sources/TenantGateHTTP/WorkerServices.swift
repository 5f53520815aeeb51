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
    /// Policy engines over the tenant patterns this worker compiled.
    let policies = PolicyEngines()

    public init(
        store: StorePorts, settlements: any SettlementQueueing, reservations: any Reserving, leases: LeaseBook
    ) {
        self.store = store
        self.settlements = settlements
        self.reservations = reservations
        self.leases = leases
    }
}
