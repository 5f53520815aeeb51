import TenantGateCore
import TenantGateSystem

/// The response cache: after the reservation (a hit still counts against the rate limits), before the
/// upstream. A hit answers in the client's API and delivery (a stored stream can be a whole answer and
/// back), charges no tokens and records what it saved; a miss leaves the key for the upstream stage to
/// store the fresh answer under.
struct CacheStage: Stage {
    let name = "cache"

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        guard case .chat(let chat, let messages) = call.input, let target = call.target,
            let settings = CacheSettings(call.tenant)
        else { return }
        call.cache = CacheState(settings: settings)
        guard
            ResponseCache.ineligibility(
                chat, messages: messages, settings: settings, cacheControl: call.request.headers["cache-control"])
                == nil
        else { return }
        guard let partition = CacheKeys.partition(call, scope: settings.scope) else { return }
        let key = CacheKeys.key(
            call, chat: chat, messages: messages, name: target.name, model: target.model, backend: target.backend,
            partition: partition)
        call.cache?.key = key
        call.cache?.partition = partition
        let tenant = call.tenant.id.rawValue
        let now = Posix.wallMicros() / 1000
        // A store failure is a miss, never an error.
        var hit = services.resources.shared.hotCache.get(tenant: tenant, key: key, nowMs: now)
        if hit == nil {
            let found = try? services.resources.store.cache.lookup(tenant: tenant, key: key, nowMs: now)
            hit = found.flatMap { $0 }
            if let hit { services.resources.shared.hotCache.put(tenant: tenant, key: key, hit, nowMs: now) }
        }
        var similarity: Float?
        if hit == nil, let found = semantic(chat, messages: messages, target: target, &call, services) {
            (hit, similarity) = (found.0, found.1)
        }
        guard let hit else { return }
        call.cache?.outcome = similarity == nil ? "hit" : "semantic-hit"
        call.cache?.similarity = similarity
        call.cache?.touch = hit.usedMs < now - CachedAnswer.touchEveryMs
        call.cache?.savedTokens = hit.tokens
        call.cache?.savedNano = hit.costNano
        call.served.model = target.name
        call.served.backend = target.backend.name
        // A hit is free; a semantic one costs its question's embedding.
        call.served.usage = Usage(promptTokens: call.cache?.embeddingTokens ?? 0, completionTokens: 0)
        call.served.costNano = call.cache?.embeddingNano ?? 0
        call.served.upstreamMs = 0
        let created = Int(Posix.wallMicros() / 1_000_000)
        let chunks = ChunkFactory(id: call.completionID, model: target.name, created: created)
        let writer = ReplyWriter.of(
            call, model: target.name, includeUsage: chat.includeUsage, inputEstimate: 0, services: services)
        let none = Usage(promptTokens: 0, completionTokens: 0)
        if call.streamed {
            var relay = StreamRelay(
                writer: writer, filters: AnswerFilters.of(call, services), sink: services.sink,
                headers: call.answerHeaders)
            relay.open()
            call.status = 200
            call.relayed = true
            _ = relay.write(ResponseCache.replay(hit.answer, chunks: chunks), usage: none, usageChunk: chunks.usage)
            call.policyTriggers.record(AnswerFilters.triggers(relay))
            if relay.clientGone {
                call.status = 499
                call.errorCode = "client_closed"
            }
            services.sink.flush()
        } else {
            let answer = hit.answer.setting("id", .string(call.completionID)).setting("created", .int(created))
                .setting("usage", none.openAI)
            call.reply = PendingReply(body: writer.completion(answer, raw: nil, usage: none))
        }
    }
}

extension CacheStage {
    /// The semantic cache, for a single-turn request of a tenant with the `semantic_cache` flag: the most
    /// similar stored question in the same scope (model, parameters, system prompt) whose content words,
    /// numbers and negations are the same, at or above the threshold; then its entry. Leaves the vector
    /// for storing the fresh answer on a miss.
    func semantic(
        _ chat: ChatRequest, messages: MessagesRequest?, target: Target, _ call: inout ModelCall,
        _ services: StageServices
    ) -> (CachedAnswer, Float)? {
        guard let settings = call.cache?.settings, let question = SemanticCache.question(chat),
            call.tenant.feature("semantic_cache", subject: call.subject),
            let embedded = CacheStage.embed(question, settings: settings, call: call, services: services)
        else { return nil }
        call.cache?.embeddingTokens = embedded.tokens
        call.cache?.embeddingNano = embedded.costNano
        let tenant = call.tenant.id.rawValue
        guard let partition = call.cache?.partition else { return nil }
        let scope = CacheKeys.key(
            call, chat: (try? ChatRequest.validate(SemanticCache.scopeBody(chat))) ?? chat, messages: nil,
            name: target.name, model: target.model, backend: target.backend, partition: partition)
        let signature = SemanticCache.signature(question)
        call.cache?.semantic = (scope, embedded.vector, signature)
        // A request may raise the threshold, never lower it.
        let threshold = SemanticCache.threshold(
            tenant: settings.semanticThreshold, requested: call.request.headers["x-tenantgate-cache-threshold"])
        let now = Posix.wallMicros() / 1000
        let store = services.resources.store.cache
        let found: (CachedAnswer, Float)?? = try? {
            let entries = try services.resources.shared.semanticIndex.entries(
                tenant: tenant, scope: scope, signature: signature, store: store)
            guard
                let (entry, similarity) = SemanticIndex.best(
                    SemanticIndex.pack(embedded.vector), signature: signature, in: entries),
                Double(similarity) >= threshold,
                let answer = try store.lookup(tenant: tenant, key: entry.key, nowMs: now)
            else { return nil }
            call.cache?.key = entry.key
            return (answer, similarity)
        }()
        return found.flatMap { $0 }
    }

    /// The question's unit vector from the tenant's embedding model (its own backend; the mock embeds in
    /// process), with its tokens and cost; nil when it cannot be had (then the lookup is a plain miss).
    static func embed(_ text: String, settings: CacheSettings, call: ModelCall, services: StageServices) -> (
        vector: [Float], tokens: Int, costNano: Int64
    )? {
        guard let name = settings.embeddingModel,
            let embedded = Embedder(RequestContext(call, services)).embed([text], model: name),
            let vector = embedded.vectors.first,
            (1...Bounds.maxEmbeddingDimensions).contains(vector.count)
        else { return nil }
        return (vector, embedded.tokens, embedded.costNano)
    }
}
