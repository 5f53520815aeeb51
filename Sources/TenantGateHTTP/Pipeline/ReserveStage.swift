import Dispatch
import TenantGateCore
import TenantGateServing
import TenantGateStore
import TenantGateSystem

/// Checks and reserves the call's worst case against every limit and budget of the tenant (one
/// transaction shared by all workers, or the worker's lease for the tenant); a refusal reaches no upstream
/// and holds nothing.
struct ReserveStage: Stage {
    let name = "reserve"

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        guard let target = call.target else { return }
        call.accountable = true
        let need: Reservation
        var backend = target.backend
        switch call.input {
        case .chat(let chat, _):
            // The worst case over the requested model and its fallbacks (the dearest may serve).
            let needs = target.chain.map { Reservation(chat: chat, model: $0.model) }
            need = Reservation(
                promptTokens: needs.first?.promptTokens ?? 0,
                completionTokens: needs.map(\.completionTokens).max() ?? 0,
                costNano: needs.map(\.costNano).max() ?? 0)
            backend = target.chain.map(\.backend).max { $0.timeoutMs < $1.timeoutMs } ?? backend
        case .embeddings(let embed):
            let bound = embed.tokenBound
            need = Reservation(
                promptTokens: bound, completionTokens: 0,
                costNano: Money.cost(Usage(promptTokens: bound, completionTokens: 0), target.model))
        case .countTokens:
            // The upstream's shared key is spent on it: it is a request like any other for the rate limit.
            need = Reservation(promptTokens: 0, completionTokens: 0, costNano: 0)
        case .none: return
        }
        try ReserveStage.reserve(
            tenant: call.tenant, need: need, backend: backend, resources: services.resources, log: services.log,
            requestID: call.request.requestID, hold: &call.hold)
    }

    /// Reserves `need` for `tenant`: from the worker's lease when it has room, else exactly.
    static func reserve(
        tenant: TenantConfig, need: Reservation, backend: BackendConfig, resources: ThreadResources, log: AppLog,
        requestID: String, hold: inout Hold
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
                hold.leaseClaim = claim
                hold.headers = headers(status)
                return
            case .admittedRenewing(let claim, let status, let next):
                hold.leaseClaim = claim
                hold.headers = headers(status)
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
                hold.leaseClaim = claim
                status = leased
            } else {
                hold.reservationID = admission.id
                status = admission.status
            }
            hold.headers = headers(status)
            for (budget, percent) in admission.status.crossed {
                log.event(
                    "budget_threshold",
                    [
                        "tenant": .string(id), "budget": .string(budget), "percent": .int(percent),
                        "request_id": .string(requestID),
                    ], level: percent >= 100 ? "warn" : "info")
            }
        } catch let refusal as LimitRefusal {
            throw refused(refusal, limits: limits, hold: &hold)
        }
    }

    /// The error for `refusal`, with the refused limit and its headers recorded in `hold`.
    static func refused(_ refusal: LimitRefusal, limits: Limits, hold: inout Hold) -> GatewayError {
        switch refusal {
        case .rate(let limit, _): hold.refusedLimit = limit
        case .budget(let scope, let budget, _):
            hold.refusedLimit = scope == "global" ? "global_\(budget)" : budget
        }
        // Only the headers of the limit that refused (a request-rate refusal says nothing of tokens).
        var status = LimitStatus()
        if case .rate(let limit, _) = refusal {
            if limit == "requests" { status.requestLimit = limits.requestsPerMinute }
            if limit == "tokens" { status.tokenLimit = limits.tokensPerMinute }
        }
        hold.headers = headers(status)
        return GatewayError(refusal)
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
}
