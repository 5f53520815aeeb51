import Dispatch
import TenantGateCore
import TenantGateStore
import TenantGateSystem

/// The limits stage of the pipeline, shared by every model endpoint, and the upstream request headers.
enum LimitStage {
    /// Checks and reserves the request's worst case against every limit and budget (one transaction
    /// shared by all workers); a refusal reaches no upstream and holds nothing.
    static func reserve(
        tenant: TenantConfig, need: Reservation, backend: BackendConfig, resources: ThreadResources, log: AppLog,
        requestID: String, outcome: inout Outcome
    ) throws {
        guard need.costNano < Bounds.maxRequestCostNano else {
            throw GatewayError.invalidRequest(
                "The request's worst case would cost more than USD \(Money.usdString(nano: Bounds.maxRequestCostNano)); lower max_tokens or n.",
                param: "max_tokens")
        }
        let limits = tenant.limits
        guard !limits.isEmpty else { return }
        let now = Posix.wallMicros() / 1000
        let id = tenant.id.rawValue
        // Most requests are admitted from the worker's lease for the tenant, in memory.
        var factor: Int64 = 0  // 0: no lease for this one (exact reservation)
        var waited = false
        admission: while true {
            switch resources.leases.begin(tenant: id, limits: limits, need: need, nowMs: now) {
            case .admitted(let claim, let status):
                outcome.leaseClaim = claim
                outcome.limitHeaders = headers(status)
                return
            case .admittedRenewing(let claim, let status, let next):
                outcome.leaseClaim = claim
                outcome.limitHeaders = headers(status)
                renew(tenant: tenant, need: need, backend: backend, factor: next, nowMs: now, resources: resources)
                return
            case .wait(let group) where !waited:
                // Another thread is taking the tenant's next lease: it takes one transaction, not one each.
                _ = group.wait(timeout: .now() + .milliseconds(250))
                waited = true
            case .wait:
                break admission
            case .fetch(let next):
                factor = next
                break admission
            }
        }
        defer { if factor > 0 { resources.leases.endFetch(tenant: id) } }
        do {
            let admission = try resources.reservations.reserve(
                job(tenant: tenant, need: need, backend: backend, nowMs: now, leaseFactor: factor))
            let status: LimitStatus
            if let (claim, leased) = resources.leases.install(
                tenant: id, limits: limits, admission: admission, need: need)
            {
                outcome.leaseClaim = claim
                status = leased
            } else {
                outcome.reservationID = admission.id
                status = admission.status
            }
            outcome.limitHeaders = headers(status)
            for (budget, percent) in admission.status.crossed {
                log.event(
                    "budget_threshold",
                    [
                        "tenant": .string(id), "budget": .string(budget), "percent": .int(percent),
                        "request_id": .string(requestID),
                    ], level: percent >= 100 ? "warn" : "info")
            }
        } catch let refusal as LimitRefusal {
            switch refusal {
            case .rate(let limit, _): outcome.refusedLimit = limit
            case .budget(let scope, let budget, _):
                outcome.refusedLimit = scope == "global" ? "global_\(budget)" : budget
            }
            var status = LimitStatus()
            status.requestLimit = limits.requestsPerMinute
            status.tokenLimit = limits.tokensPerMinute
            outcome.limitHeaders = headers(status)
            throw GatewayError(refusal)
        }
    }

    /// Takes the tenant's next lease ahead of need, in the background (this request was admitted from the
    /// current one and does not wait). A refusal or an exact reservation instead of a lease (the tenant is
    /// near a limit) changes nothing: the reservation is given back at once.
    private static func renew(
        tenant: TenantConfig, need: Reservation, backend: BackendConfig, factor: Int64, nowMs: Int64,
        resources: ThreadResources
    ) {
        let id = tenant.id.rawValue
        let limits = tenant.limits
        let leases = resources.leases
        let settlements = resources.settlements
        resources.reservations.reserveLater(
            job(tenant: tenant, need: need, backend: backend, nowMs: nowMs, leaseFactor: factor)
        ) { admission in
            defer { leases.endFetch(tenant: id) }
            guard let admission else { return }
            if admission.lease == nil {
                settlements.enqueue(.cancel(reservation: admission.id))
            } else {
                _ = leases.install(tenant: id, limits: limits, admission: admission, need: need, admitting: false)
            }
        }
    }

    /// A reservation job: a lease of `leaseFactor` × `need` when the factor is positive, else `need` alone.
    /// It expires (for a dead worker) once its last admission's upstream call could no longer be running.
    private static func job(
        tenant: TenantConfig, need: Reservation, backend: BackendConfig, nowMs: Int64, leaseFactor: Int64
    ) -> ReserveJob {
        ReserveJob(
            tenant: tenant.id.rawValue, limits: tenant.limits, need: need, nowMs: nowMs,
            expiresMs: nowMs + Int64(backend.timeoutMs) + 60_000, leaseMs: leaseFactor > 0 ? LeaseBook.leaseMs : 0,
            leaseFactor: max(1, leaseFactor))
    }

    /// The SPEC's rate-limit headers (and the soft-budget warning) for `status`.
    static func headers(_ status: LimitStatus) -> [(String, String)] {
        var out: [(String, String)] = []
        if let limit = status.requestLimit {
            out.append(("X-RateLimit-Limit", String(limit)))
            out.append(("X-RateLimit-Remaining", String(max(0, status.requestsRemaining ?? 0))))
            if let reset = status.resetAt { out.append(("X-RateLimit-Reset", String(reset))) }
        }
        if let limit = status.tokenLimit {
            out.append(("x-ratelimit-limit-tokens", String(limit)))
            out.append(("x-ratelimit-remaining-tokens", String(max(0, status.tokensRemaining ?? 0))))
        }
        if !status.warnings.isEmpty {
            out.append(("X-TenantGate-Budget-Warning", status.warnings.joined(separator: ", ")))
        }
        return out
    }

    /// The key for `backend`: BYOK, else the tenant's managed key, else the backend's `api_key_env`. A
    /// managed key that is stored but cannot be opened refuses the call: it never falls back to the
    /// operator's key (that would move the tenant's traffic onto the operator's account).
    static func upstreamKey(backend: BackendConfig, principal: Principal) throws(GatewayError) -> String? {
        if let byok = principal.passthrough { return byok.value }
        if principal.tenant.unavailableUpstreamKeys.contains(backend.name) {
            throw GatewayError.upstreamKeyUnavailable(backend: backend.name)
        }
        if let managed = principal.tenant.upstreamKeys[backend.name] { return managed.value }
        if let env = backend.apiKeyEnv, let key = Posix.env(env), !key.isEmpty { return key }
        return nil
    }

    /// Headers for an upstream call: content type, the backend's key (from its environment variable,
    /// never the tenant's gateway key), the request id and the trace context.
    static func upstreamHeaders(
        backend: BackendConfig, principal: Principal, accept: String, requestID: String, trace: TraceContext
    ) throws(GatewayError) -> [String] {
        var headers = ["Content-Type: application/json", "Accept: \(accept)"]
        // Order: the client's own key (BYOK), the tenant's managed key, the backend's environment key.
        let key = try upstreamKey(backend: backend, principal: principal)
        // A key with a control character or a non-ASCII byte would inject or corrupt a header line.
        if let key, !Bounds.isPrintableASCII(key) { throw GatewayError.upstreamKeyUnavailable(backend: backend.name) }
        if backend.provider == .anthropic {
            headers.append("anthropic-version: \(backend.anthropicVersion)")
            if let key { headers.append("x-api-key: \(key)") }
        } else if let key {
            headers.append("Authorization: Bearer \(key)")
        }
        if !requestID.isEmpty, requestID.utf8.count <= 128, Bounds.isPrintableASCII(requestID) {
            headers.append("X-Request-ID: \(requestID)")
        }
        let span = (try? Crypto.randomBytes(8)).map(Crypto.hex) ?? "0000000000000001"
        headers.append("traceparent: \(trace.traceparent(spanID: span))")
        return headers
    }
}
