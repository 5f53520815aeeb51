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
        if let cache = call.cache {
            record.cache = cache.outcome
            if cache.outcome == "miss" && (cache.embeddingNano > 0 || cache.embeddingTokens > 0) {
                // The question's embedding is billed with the call it was made for.
                record.usage = Usage(
                    promptTokens: record.usage.promptTokens.saturatingAdd(cache.embeddingTokens),
                    completionTokens: record.usage.completionTokens, cachedTokens: record.usage.cachedTokens,
                    cacheWriteTokens: record.usage.cacheWriteTokens)
                record.costNano = record.costNano.saturatingAdd(cache.embeddingNano)
            }
            if cache.outcome != "miss" {
                record.savedTokens = cache.savedTokens
                record.savedNano = cache.savedNano
                if cache.touch { record.cacheHitKey = cache.key }
            }
            // An answer a policy redacted or stopped is not kept, nor anything but a clean success.
            let changed = call.policyTriggers.contains {
                $0.mode == .enforce && ($0.action == .redact || $0.action == .block)
            }
            if !changed && call.status == 200 && call.errorCode == nil { record.cacheWrite = cache.write }
        }
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
