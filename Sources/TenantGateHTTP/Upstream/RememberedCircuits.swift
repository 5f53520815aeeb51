import TenantGateCore
import TenantGateSystem

/// The shared circuit breakers with this worker's memory in front: a closed circuit is taken from memory
/// for `ClosedCircuits.freshMs` (another worker's opening is seen within that time; this worker's at once),
/// so most model calls read no database.
struct RememberedCircuits: CircuitBreakers {
    let shared: any CircuitBreakers
    let closed: ClosedCircuits

    init(_ services: WorkerServices) {
        shared = services.store.circuits
        closed = services.closedCircuits
    }

    func admit(tenant: String, backend: String, nowMs: Int64) throws -> CircuitDecision {
        if closed.isClosed(tenant: tenant, backend: backend, nowMs: nowMs) { return .closed }
        let epoch = closed.epoch
        let decision = try shared.admit(tenant: tenant, backend: backend, nowMs: nowMs)
        if case .closed = decision { closed.remember(tenant: tenant, backend: backend, nowMs: nowMs, epoch: epoch) }
        return decision
    }
    func recordProbeSuccess(tenant: String, backend: String) throws {
        try shared.recordProbeSuccess(tenant: tenant, backend: backend)
    }
    func recordFailure(tenant: String, backend: String, settings: CircuitSettings, wasProbe: Bool, nowMs: Int64)
        throws -> Bool
    {
        let opened = try shared.recordFailure(
            tenant: tenant, backend: backend, settings: settings, wasProbe: wasProbe, nowMs: nowMs)
        // Any failure stops trusting the remembered state (the circuit may be opening, or open elsewhere).
        closed.forget(tenant: tenant, backend: backend)
        return opened
    }

    func states(nowMs: Int64) throws -> [(String, String, Bool)] { try shared.states(nowMs: nowMs) }
}
