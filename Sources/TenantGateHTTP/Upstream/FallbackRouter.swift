import TenantGateCore
import TenantGateSystem

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
