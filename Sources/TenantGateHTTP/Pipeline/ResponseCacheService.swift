import TenantGateCore
import TenantGateSystem

/// The response cache's one owner: what the stages and the settlement do with the cache goes through here.
/// `lookup` (the cache stage: exact key, the worker's hot entries, then the semantic match), `recorder`
/// (a stream's answer rebuilt as it passes), `keep` (a fresh complete answer handed to the settlement)
/// and `settle` (what the execution row records, and whether the answer is kept or dropped).
struct ResponseCacheService {
    let services: StageServices

    init(_ services: StageServices) { self.services = services }

    /// The hit for this call, if any: sets `call.cache` (its key for a miss to be kept under, and for a hit
    /// its outcome and what it saved). A store failure is a miss, never an error.
    func lookup(_ chat: ChatRequest, messages: MessagesRequest?, target: Target, _ call: inout ModelCall)
        -> CachedAnswer?
    {
        guard let settings = CacheSettings(call.tenant) else { return nil }
        call.cache = CacheState(settings: settings)
        guard
            ResponseCache.ineligibility(
                chat, messages: messages, settings: settings, cacheControl: call.request.headers["cache-control"])
                == nil
        else { return nil }
        guard let partition = CacheKeys.partition(call, scope: settings.scope) else { return nil }
        let key = CacheKeys.key(
            call, chat: chat, messages: messages, name: target.name, model: target.model, backend: target.backend,
            partition: partition)
        call.cache?.key = key
        call.cache?.partition = partition
        let tenant = call.tenant.id.rawValue
        let now = Posix.wallMicros() / 1000
        var hit = services.resources.shared.hotCache.get(tenant: tenant, key: key, nowMs: now)
        if hit == nil {
            let found = try? services.resources.store.cache.lookup(tenant: tenant, key: key, nowMs: now)
            hit = found.flatMap { $0 }
            if let hit { services.resources.shared.hotCache.put(tenant: tenant, key: key, hit, nowMs: now) }
        }
        var similarity: Float?
        if hit == nil, let found = semantic(chat, messages: messages, target: target, &call) {
            (hit, similarity) = (found.0, found.1)
        }
        guard let hit else { return nil }
        call.cache?.outcome = similarity == nil ? "hit" : "semantic-hit"
        call.cache?.similarity = similarity
        call.cache?.touch = hit.usedMs < now - CachedAnswer.touchEveryMs
        call.cache?.savedTokens = hit.tokens
        call.cache?.savedNano = hit.costNano
        return hit
    }

    /// The semantic cache, for a single-turn request of a tenant with the `semantic_cache` flag: the most
    /// similar stored question in the same scope (model, parameters, system prompt) whose content words,
    /// numbers and negations are the same, at or above the threshold; then its entry. Leaves the vector
    /// for storing the fresh answer on a miss.
    private func semantic(
        _ chat: ChatRequest, messages: MessagesRequest?, target: Target, _ call: inout ModelCall
    ) -> (CachedAnswer, Float)? {
        guard let settings = call.cache?.settings, let question = SemanticCache.question(chat),
            call.tenant.feature("semantic_cache", subject: call.subject),
            let embedded = embed(question, settings: settings, call: call)
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
    private func embed(_ text: String, settings: CacheSettings, call: ModelCall) -> (
        vector: [Float], tokens: Int, costNano: Int64
    )? {
        guard let name = settings.embeddingModel,
            let embedded = Embedder(RequestContext(call, services)).embed([text], model: name),
            let vector = embedded.vectors.first,
            (1...Bounds.maxEmbeddingDimensions).contains(vector.count)
        else { return nil }
        return (vector, embedded.tokens, embedded.costNano)
    }

    /// The recorder a streamed miss that may be kept passes through (nil when nothing will be kept).
    static func recorder(for call: ModelCall) -> CacheRecorder? {
        call.cache?.key != nil && call.cache?.outcome == "miss" ? CacheRecorder() : nil
    }

    /// Hands a fresh, complete answer of an eligible request to the settlement, to be stored.
    /// A fallback's answer is kept under the model that gave it (asking that model finds it; asking the
    /// first one again tries it first), and never as a semantic match of the first one's questions.
    static func keep(
        _ fresh: JSONValue?, chat: ChatRequest, messages: MessagesRequest?, target: Target, _ call: inout ModelCall
    ) {
        guard let fresh, var cache = call.cache, var key = cache.key, call.errorCode == nil,
            call.status == 200 || call.reply?.status == 200, ResponseCache.storable(fresh)
        else { return }
        if call.served.fallbackUsed {
            guard let partition = cache.partition,
                let serving = target.chain.first(where: { $0.name == call.served.model })
            else { return }
            key = CacheKeys.key(
                call, chat: chat, messages: messages, name: serving.name, model: serving.model,
                backend: serving.backend, partition: partition)
            cache.semantic = nil
        }
        let usage = call.served.usage ?? Usage(promptTokens: 0, completionTokens: 0)
        var write = CacheWrite(
            key: key, answer: fresh, tokens: Int64(usage.promptTokens.saturatingAdd(usage.completionTokens)),
            costNano: call.served.costNano ?? 0, ttlMs: cache.settings.ttlMs, maxEntries: cache.settings.maxEntries,
            maxBytes: cache.settings.maxBytes)
        write.semantic = cache.semantic
        write.storageQuota = call.tenant.storageQuotaBytes
        call.cache?.write = write
    }

    /// What the execution row of `call` records of the cache: the outcome, what a hit saved (and whether
    /// its last use is due), a semantic miss's embedding billed with it, and the answer to keep, unless a
    /// policy changed or stopped it or the call did not cleanly succeed.
    static func settle(_ call: ModelCall, into record: inout ExecutionRecord) {
        guard let cache = call.cache else { return }
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
}
