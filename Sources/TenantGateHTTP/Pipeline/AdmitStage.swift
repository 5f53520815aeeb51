import TenantGateCore
import TenantGateSystem

/// Before any content inspection (or retrieval's embedding call): a tenant that is at one of its limits is
/// refused at once, so a tenant at its limit makes the gateway burn nothing on its requests. The worker's
/// live lease for the tenant answers in memory; without one, one read of the shared counters does (exact at
/// that moment, like a reservation). A request stopped after inspection is then charged one request of the
/// per-minute window at settlement (`ExecutionRecord.chargesRequest`): inspection is paid for like a call.
struct AdmitStage: Stage {
    let name = "admit"

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        let tenant = call.tenant
        let limits = tenant.limits
        guard !limits.isEmpty, AdmitStage.costlyBeforeReserve(call) else { return }
        let now = Posix.wallMicros() / 1000
        let id = tenant.id.rawValue
        if services.resources.leases.hasRoom(tenant: id, limits: limits, nowMs: now) { return }
        // Token counting spends nothing; a request whose every candidate model is free spends no money.
        let tokens = call.endpoint != .countTokens
        let money = call.target?.chain.contains { $0.model.inputPerMTok > 0 || $0.model.outputPerMTok > 0 } ?? true
        guard
            let refusal = try services.resources.store.accounting.refusalNow(
                tenant: id, limits: limits, nowMs: now, tokens: tokens, money: money)
        else { return }
        call.accountable = true
        throw ReserveStage.refused(refusal, limits: limits, hold: &call.hold)
    }

    /// Whether work that may be long comes before the reservation: the tenant's ingress rules, or retrieval
    /// (a question's embedding and a search).
    static func costlyBeforeReserve(_ call: ModelCall) -> Bool {
        if call.tenant.policies.any(.ingress) { return true }
        guard case .chat(let chat, _) = call.input else { return false }
        return call.tenant.effective["retrieval"] != nil || chat.body["metadata"]?["retrieval"] != nil
    }
}
