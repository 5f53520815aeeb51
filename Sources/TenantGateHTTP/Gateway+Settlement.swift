import TenantGateCore
import TenantGateServing
import TenantGateSystem

extension Gateway {
    /// Queues the execution row and the settlement of what the call held (group-committed by `SettleQueue`);
    /// returns its sequence number in the queue.
    func settle(_ call: ModelCall, latencyMs: Int, resources: ThreadResources) -> Int64 {
        var record = ExecutionRecord(
            requestID: call.request.requestID, atMs: Posix.wallMicros() / 1000, tenant: call.tenant.id.rawValue,
            status: call.status)
        record.keyID = call.principal.key.id
        record.endUser = call.endUser
        record.model = call.served.model
        record.backend = call.served.backend
        record.errorCode = call.errorCode
        record.latencyMs = latencyMs
        record.upstreamMs = call.served.upstreamMs
        record.ttfbMs = call.served.ttfbMs
        record.usage = call.served.usage ?? Usage(promptTokens: 0, completionTokens: 0)
        record.costNano = call.served.costNano ?? 0
        record.streamed = call.streamed
        record.prompt = call.prompt.map { "\($0.name)@\($0.version)" }
        record.traceID = call.trace.traceID
        record.fallbackUsed = call.served.fallbackUsed
        record.retries = call.served.retries
        record.refusedLimit = call.hold.refusedLimit
        record.budgetExhausted = call.hold.budgetExhausted
        record.policyTriggers = call.policyTriggers
        record.auditCapture = call.tenant.effective["audit"]?["capture_requests"]?.boolValue ?? false
        record.endpoint = call.endpoint.rawValue
        ResponseCacheService.settle(call, into: &record)
        // The question's embedding (vector and hybrid retrieval) is an execution of its own, settled already.
        record.retrieval = call.retrieval?.record
        // Inspected, then stopped before reserving (a policy block): the inspection costs one request.
        let limits = call.tenant.limits
        if limits.dailyTokens != nil || limits.monthlyTokens != nil || limits.dailyNano != nil
            || limits.monthlyNano != nil || limits.globalDailyNano != nil || limits.globalMonthlyNano != nil
        {
            record.budgetLimits = limits
        }
        // Inspected, then stopped by a policy before reserving: the inspection costs one request.
        record.chargesRequest =
            call.policyBlocked && call.hold.reservationID == nil && call.hold.leaseClaim == nil
            && limits.requestsPerMinute != nil
        if let claim = call.hold.leaseClaim { return resources.leases.settle(claim, record: record) }
        return resources.settlements.enqueue(reservation: call.hold.reservationID, record: record)
    }
}
