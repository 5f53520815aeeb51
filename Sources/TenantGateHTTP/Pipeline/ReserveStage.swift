import Dispatch
import TenantGateCore
import TenantGateServing
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
        case .chat(let chat, let messages):
            // The worst case over the requested model and its fallbacks (the dearest may serve).
            let models = target.chain.map(\.model)
            need = BudgetFit.need(chat, models: models)
            backend = target.chain.map(\.backend).max { $0.timeoutMs < $1.timeoutMs } ?? backend
            var fitted: Int?
            var exhausted = false
            let tenant = call.tenant
            let resources = services.resources
            do {
                try ReserveStage.reserve(
                    tenant: call.tenant, need: need, backend: backend, resources: services.resources,
                    hold: &call.hold
                ) { refusal in
                    try ReserveStage.fit(
                        refusal, chat: chat, models: models, need: need, tenant: tenant, resources: resources,
                        fitted: &fitted, exhausted: &exhausted)
                }
            } catch {
                call.hold.budgetExhausted = exhausted
                throw error
            }
            if let cap = fitted {
                // Lowered to what the budget has left: the upstream gets this cap, the client is told.
                call.input = .chat(chat.capped(at: cap), messages: messages)
                call.hold.headers.append(("X-TenantGate-Max-Tokens", String(cap)))
            }
            return
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
            tenant: call.tenant, need: need, backend: backend, resources: services.resources,
            hold: &call.hold)
    }

    /// Reserves `need` for `tenant`: from the worker's lease when it has room, else exactly.
    /// `short`: called when a budget refuses `need` exactly; returns a smaller worst case to reserve instead
    /// (the request fitted to what remains) or throws the refusal to answer.
    static func reserve(
        tenant: TenantConfig, need: Reservation, backend: BackendConfig, resources: ThreadResources,
        hold: inout Hold, short: ((LimitRefusal) throws -> Reservation?)? = nil
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
        } catch let refusal as LimitRefusal {
            guard case .budget = refusal, let short else { throw refused(refusal, limits: limits, hold: &hold) }
            let smaller: Reservation?
            do {
                smaller = try short(refusal)
            } catch {
                _ = refused(refusal, limits: limits, hold: &hold)  // the refused limit and its headers
                throw error
            }
            guard let smaller else { throw refused(refusal, limits: limits, hold: &hold) }
            do {
                // The fitted worst case, reserved exactly (near a budget's end there is no lease).
                let admission = try resources.reservations.reserve(
                    job(tenant: tenant, need: smaller, backend: backend, nowMs: now, leaseFactor: 0))
                hold.reservationID = admission.id
                hold.headers = headers(admission.status)
            } catch let again as LimitRefusal {
                throw refused(again, limits: limits, hold: &hold)
            }
        }
    }

    /// A chat request a budget refused whole: the worst case with its completion cap lowered to what the
    /// budgets have left (`budget.when_short: fit`, the default), sets `fitted`; else the refusal in full
    /// (the worst case, what is left, when it resets, what to change).
    static func fit(
        _ refusal: LimitRefusal, chat: ChatRequest, models: [ModelConfig], need: Reservation, tenant: TenantConfig,
        resources: ThreadResources, fitted: inout Int?, exhausted: inout Bool
    ) throws -> Reservation? {
        guard case .budget(let scope, let budget, _) = refusal else { return nil }
        let limits = tenant.limits
        let budgets = try resources.store.accounting.budgetsLeft(
            tenant: tenant.id.rawValue, limits: limits, nowMs: Posix.wallMicros() / 1000)
        let room = BudgetFit.Room(
            tokens: budgets.filter(\.countsTokens).map(\.left).min(),
            nano: budgets.filter { !$0.countsTokens }.map(\.left).min())
        // Holds given back since the refusal: the whole worst case may fit again (one more exact try).
        if room.tokens.map({ Int64(need.tokens) <= $0 }) ?? true, room.nano.map({ need.costNano <= $0 }) ?? true {
            return need
        }
        let cap = BudgetFit.cap(chat, models: models, room: room)
        if limits.fitsShortRequests, let cap {
            fitted = cap
            return BudgetFit.need(chat, models: models, cap: cap)
        }
        // Used up: not even the smallest answer (no input, `minimumCap` output tokens) fits any more. A big
        // input refused with room left is not exhaustion (no 100 % notice for it).
        let smallest = models.map { Money.cost(Usage(promptTokens: 0, completionTokens: BudgetFit.minimumCap), $0) }
        exhausted =
            limits.fitsShortRequests
            && ((room.tokens.map { $0 < Int64(BudgetFit.minimumCap) } ?? false)
                || (room.nano.map { $0 < (smallest.max() ?? 0) } ?? false))
        guard let state = budgets.first(where: { $0.scope == scope && $0.budget == budget }) else { return nil }
        throw GatewayError.budgetShort(
            scope: scope, budget: budget, detail: shortDetail(need: need, state: state, cap: cap))
    }

    /// The refusal's message: the request's worst case, what the budget has left and when it resets, and
    /// what the client can change.
    static func shortDetail(need: Reservation, state: BudgetLeft, cap: Int?) -> String {
        func amount(_ value: Int64) -> String {
            state.countsTokens ? "\(value) tokens" : Money.display(nano: value)
        }
        let whose = state.scope == "global" ? "The gateway's global" : "The tenant's"
        let worst = state.countsTokens ? amount(Int64(need.tokens)) : amount(need.costNano)
        let (y, m, d) = CivilDate.from(days: Int(state.resetsAt / 86_400))
        let date = "\(y)-\(m < 10 ? "0" : "")\(m)-\(d < 10 ? "0" : "")\(d)T00:00:00Z"
        var text =
            "\(whose) \(state.budget) budget has \(amount(state.left)) left of \(amount(state.cap)) (it resets at \(date)); "
            + "this request's worst case is \(worst) (\(need.promptTokens) input + \(need.completionTokens) output tokens). "
        if let cap {
            text += "At most \(cap) output tokens fit now: send max_tokens of \(cap) or less."
        } else if state.left == 0 {
            text += "The budget is used up: wait for the reset, or ask the operator for a larger budget."
        } else {
            text +=
                "Not even \(BudgetFit.minimumCap) output tokens fit with this input: send a shorter request, wait for the reset, or ask the operator for a larger budget."
        }
        return text
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
