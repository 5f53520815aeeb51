import TenantGateCore
import TenantGateServing

/// Embeddings the gateway makes for itself (the semantic cache's questions, document chunks and search
/// queries) through a catalog model and its backend, on the tenant's behalf (its keys, its trace), with
/// the backend's retries and the tenant's circuit breaker, as every chat call has.
struct Embedder {
    let context: RequestContext
    var config: GatewayConfig { context.config }
    var resources: ThreadResources { context.resources }

    /// Inputs sent upstream per request.
    static let batch = 64

    init(_ context: RequestContext) { self.context = context }

    /// Whether the caller's key may use `model` for embeddings: a key with a model list of its own spends
    /// nothing on a model outside it (the tenant's own embedding settings may name models that are not on
    /// its chat allow-list; a key without a list keeps them).
    static func allowed(_ model: String, for principal: Principal) -> Bool {
        principal.key.models.map { $0.contains(model) } ?? true
    }

    /// Whether `name` is a catalog model whose backend can embed.
    func canEmbed(_ name: String) -> Bool {
        guard let model = config.models[name], let backend = config.backends[model.backend] else { return false }
        switch Provider.of(backend.provider) {
        case .local(let local): return local is any LocalEmbeddingsProvider
        case .remote(let remote): return remote is any EmbeddingsProvider
        }
    }

    /// One unit vector per text (in order) from catalog model `name`, with the tokens and cost; nil when
    /// any batch cannot be had.
    func embed(_ texts: [String], model name: String) -> (vectors: [[Float]], tokens: Int, costNano: Int64)? {
        guard Embedder.allowed(name, for: context.principal), let model = config.models[name],
            let backend = config.backends[model.backend]
        else { return nil }
        var vectors: [[Float]] = []
        vectors.reserveCapacity(texts.count)
        var tokens = 0
        var start = 0
        while start < texts.count {
            let slice = Array(texts[start..<min(start + Embedder.batch, texts.count)])
            guard let part = embedBatch(slice, name: name, model: model, backend: backend) else { return nil }
            vectors += part.vectors
            tokens = tokens.saturatingAdd(part.tokens)
            start += slice.count
        }
        return (vectors, tokens, Money.cost(Usage(promptTokens: tokens, completionTokens: 0), model))
    }

    private func embedBatch(_ texts: [String], name: String, model: ModelConfig, backend: BackendConfig) -> (
        vectors: [[Float]], tokens: Int
    )? {
        let input: JSONValue = texts.count == 1 ? .string(texts[0]) : .array(texts.map { .string($0) })
        guard
            let request = try? EmbeddingsRequest.parse(
                JSONValue.object([("model", .string(name)), ("input", input)]).bytes)
        else { return nil }
        let json: JSONValue
        switch Provider.of(backend.provider) {
        case .local(let local):
            guard let embeddings = local as? any LocalEmbeddingsProvider else { return nil }
            json = embeddings.embeddings(request, model: model).body
        case .remote(let remote):
            guard let embeddings = remote as? any EmbeddingsProvider else { return nil }
            let client = UpstreamClient(
                transport: resources.transport, principal: context.principal, requestID: context.requestID,
                trace: context.trace,
                ids: resources.ids)
            // One candidate through the router: the backend's retries (5xx, 429, a broken connection) and
            // the tenant's circuit for it, like a chat call.
            let router = FallbackRouter(circuits: RememberedCircuits(resources.shared), log: context.log)
            var fetched: JSONValue?
            do {
                try router.serve(
                    [(name: name, model: model, backend: backend)], tenant: context.tenant, started: { false },
                    onRetry: {}
                ) { _, _ in
                    let outgoing = try client.outgoing(
                        embeddings.embeddingsRequest(request, model: model, backend: backend), backend: backend,
                        stream: false)
                    fetched = try client.fetchJSON(outgoing, limit: 64 << 20).0
                }
            } catch {
                return nil
            }
            guard let fetched else { return nil }
            json = fetched
        }
        guard let data = json["data"]?.arrayValue, data.count == texts.count else { return nil }
        var vectors = [[Float]](repeating: [], count: texts.count)
        for (position, item) in data.enumerated() {
            let index = item["index"]?.intValue ?? position
            guard (0..<texts.count).contains(index), vectors[index].isEmpty,
                let values = item["embedding"]?.arrayValue?.compactMap(\.doubleValue), !values.isEmpty,
                values.count <= 16_384
            else { return nil }
            vectors[index] = SemanticCache.unit(values)
        }
        // An upstream's count is clamped like every reported usage (no value can trap the worker).
        let estimate = texts.reduce(0) { $0.saturatingAdd(TokenEstimate.text($1)) }
        let tokens = Bounds.reportedTokens(json["usage"]?["prompt_tokens"]?.intValue ?? estimate)
        return (vectors, tokens)
    }
}
