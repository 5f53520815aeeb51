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

/// Tries the requested model, then its fallbacks in order. Each upstream call goes through the tenant's
/// circuit breaker for its backend and is retried by the backend's `RetryPolicy` while nothing has reached
/// the client; once something has, a failure is final.
struct FallbackRouter {
    let circuits: any CircuitBreakers
    let log: AppLog
    var clock: any RetryClock = SystemClock()

    /// One model of the chain.
    typealias Candidate = (name: String, model: ModelConfig, backend: BackendConfig)

    /// Serves through `chain`; `attempt` makes one call to a candidate (its index: 0 is the one asked for).
    /// `started()` says whether the answer has begun reaching the client. Throws the last failure when no
    /// candidate served.
    func serve(
        _ chain: [Candidate], tenant: TenantConfig, started: () -> Bool, onRetry: () -> Void,
        _ attempt: (Candidate, Int) throws -> Void
    ) throws {
        let id = tenant.id.rawValue
        var lastError: any Error = GatewayError.upstreamError("no backend could serve the request")
        for (index, candidate) in chain.enumerated() {
            let backend = candidate.backend
            // The built-in mock answers in process: no circuit, no retries.
            guard backend.provider != .mock else {
                try attempt(candidate, index)
                return
            }
            var probe = false
            if tenant.circuit != nil {
                switch try circuits.admit(tenant: id, backend: backend.name, nowMs: Posix.wallMicros() / 1000) {
                case .closed: break
                case .probe: probe = true
                case .open(let retryAfter):
                    lastError = GatewayError.circuitOpen(retryAfter: retryAfter)
                    continue
                }
            }
            do {
                try RetryPolicy(backend).run(clock: clock, canRetry: { !started() }, onRetry: onRetry) {
                    try attempt(candidate, index)
                }
                if probe {
                    try circuits.recordProbeSuccess(tenant: id, backend: backend.name)
                    log.event("circuit_close", ["tenant": .string(id), "backend": .string(backend.name)])
                }
                return
            } catch let failure as RetryableUpstream {
                if let settings = tenant.circuit,
                    try circuits.recordFailure(
                        tenant: id, backend: backend.name, settings: settings, wasProbe: probe,
                        nowMs: Posix.wallMicros() / 1000)
                {
                    log.event("circuit_open", ["tenant": .string(id), "backend": .string(backend.name)], level: "warn")
                }
                lastError = failure
                if started() { throw failure.error }
            } catch GatewayError.upstreamKeyMissing(let name, let variable) where !started() {
                // Nothing was sent (the backend has no key here): the next candidate may have one; not a
                // failure of the backend's, so no circuit counts it. The refusal stands if none serves.
                lastError = GatewayError.upstreamKeyMissing(backend: name, variable: variable)
            }
        }
        throw lastError
    }
}
