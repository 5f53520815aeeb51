import TenantGateCore

/// The filters every answer stream passes through before the client's API writer, in order: the cache's
/// recorder (a miss that may be kept), the worker's own filters, the tenant's mid-stream policies; and
/// what they leave behind. Shared by the upstream stage and the cache stage (a replayed stream passes the
/// same policies).
enum AnswerFilters {
    /// The stream filters of this call: the cache's recorder (what the upstream said), the worker's, then
    /// the tenant's mid-stream policies.
    static func of(_ call: ModelCall, _ services: StageServices) -> [any StreamFilter] {
        var filters: [any StreamFilter] = ResponseCacheService.recorder(for: call).map { [$0] } ?? []
        filters += services.streamFilters
        if call.tenant.policies.any(.midstream) {
            filters.append(
                PolicyFilter(
                    engine: services.resources.shared.policies.engine(call.tenant.policies, budget: call.inspection)))
        }
        return filters
    }

    /// The answer the cache recorder of `relay` rebuilt, if the stream finished.
    static func recorded(_ relay: StreamRelay, model: String) -> JSONValue? {
        relay.filters.compactMap { $0 as? CacheRecorder }.first?.recorder.completion(model: model)
    }

    /// What the policy filter of `relay` recorded.
    static func triggers(_ relay: StreamRelay) -> [PolicyTrigger] {
        relay.filters.compactMap { $0 as? PolicyFilter }.flatMap(\.allTriggers)
    }
}
