import TenantGateCore
import TenantGateSystem

/// Embeddings the documents API makes for a tenant, held against its limits and budgets like any model
/// call: the worst case (a token per byte) is reserved first, the reported usage settled after (a
/// failed call settles nothing used).
struct BilledEmbedder {
    let embedder: Embedder
    let principal: Principal
    let requestID: String
    let traceID: String
    let log: AppLog

    init(_ context: RequestContext) {
        embedder = Embedder(context)
        principal = context.principal
        requestID = context.requestID
        traceID = context.trace.traceID
        log = context.log
    }

    func embed(_ texts: [String], model name: String) throws -> [[Float]] {
        let resources = embedder.resources
        guard Embedder.allowed(name, for: principal) else { throw GatewayError.modelNotAllowed(name) }
        guard let model = embedder.config.models[name], let backend = embedder.config.backends[model.backend] else {
            throw GatewayError.upstreamError("the embedding model '\(name)' is not in the catalog")
        }
        let bound = texts.reduce(0) { $0.saturatingAdd($1.utf8.count) }
        let need = Reservation(
            promptTokens: bound, completionTokens: 0,
            costNano: Money.cost(Usage(promptTokens: bound, completionTokens: 0), model))
        var hold = Hold()
        try ReserveStage.reserve(
            tenant: principal.tenant, need: need, backend: backend, resources: resources, hold: &hold)
        var record = ExecutionRecord(
            requestID: requestID, atMs: Posix.wallMicros() / 1000, tenant: principal.tenant.id.rawValue, status: 200)
        record.keyID = principal.key.id
        record.model = name
        record.backend = model.backend
        record.traceID = traceID
        record.endpoint = "embeddings"
        let result = embedder.embed(texts, model: name)
        if let result {
            record.usage = Usage(promptTokens: result.tokens, completionTokens: 0)
            record.costNano = result.costNano
        } else {
            record.status = 502
            record.errorCode = "upstream_error"
        }
        if let claim = hold.leaseClaim {
            resources.leases.settle(claim, record: record)
        } else {
            resources.settlements.enqueue(reservation: hold.reservationID, record: record)
        }
        guard let result else { throw GatewayError.upstreamError("the embedding model '\(name)' did not answer") }
        guard result.vectors.allSatisfy({ (1...Bounds.maxEmbeddingDimensions).contains($0.count) }) else {
            throw GatewayError.upstreamError(
                "the embedding model '\(name)' answered vectors of over \(Bounds.maxEmbeddingDimensions) dimensions")
        }
        return result.vectors
    }
}
