import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// Retrieval-augmented chat: with the tenant's `retrieval` setting or a request's `metadata.retrieval`,
/// the best chunks of the collection for the last user message go into the system prompt as numbered,
/// cited sources (after the tenant's own prompt). The retrieved text passes the tenant's ingress policies
/// like any message, and the reservation that follows counts it. TenantGate's `metadata.retrieval` never
/// reaches the upstream.
struct RetrievalStage: Stage {
    let name = "retrieve"

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        guard case .chat(var chat, var messages) = call.input else { return }
        let requested = chat.body["metadata"]?["retrieval"]
        if let metadata = chat.body["metadata"], requested != nil {
            let rest = metadata.removing("retrieval")
            let body =
                rest.objectValue?.isEmpty == true ? chat.body.removing("metadata") : chat.body.setting("metadata", rest)
            chat = try ChatRequest.validate(body)
            call.input = .chat(chat, messages: messages)
        }
        let tenant = call.tenant
        guard
            let settings = try RetrievalSettings.resolve(
                tenant: RetrievalSettings(tenant: tenant.effective["retrieval"]), request: requested)
        else { return }
        guard tenant.feature("documents", subject: call.subject) else {
            if requested != nil { throw GatewayError.featureDisabled("documents") }
            return
        }
        guard let question = chat.messages.last(where: { $0["role"]?.stringValue == "user" }),
            case let text = AnthropicRequest.plainText(question["content"]),
            !FullTextQuery.terms(text).isEmpty
        else { return }
        let started = Posix.monotonicMs()
        let id = tenant.id.rawValue
        guard
            let collection = try services.resources.store.documents.collection(tenant: id, name: settings.collection)
        else {
            // A request that names a collection must get it; the tenant's standing setting is skipped.
            if requested != nil { throw GatewayError.missing("Collection '\(settings.collection)'") }
            services.log.write(
                "retrieval collection missing", level: "warn",
                [
                    ("request_id", .string(call.request.requestID)), ("tenant", .string(id)),
                    ("collection", .string(settings.collection)),
                ])
            return
        }
        // A collection without vectors is searched by BM25 whatever the mode.
        let mode = collection.embeddingModel == nil ? SearchMode.bm25 : settings.mode
        let query = String(decoding: Array(text.utf8.suffix(SearchRequest.maxQueryBytes)), as: UTF8.self)
        let embedder = BilledEmbedder(RequestContext(call, services))
        let found = try DocumentSearcher(tenant: id, resources: services.resources, embedder: embedder)
            .search(SearchRequest(query: query, k: settings.k, mode: mode), in: collection)
        guard let (rendered, used) = ContextBlock.render(found, settings: settings) else { return }
        let context = try guarded(rendered, &call, services)
        // The context follows the system messages (the tenant's prompt first), before the conversation.
        var list = chat.messages
        let at = list.firstIndex { !["system", "developer"].contains($0["role"]?.stringValue ?? "") } ?? list.count
        list.insert(.object([("role", .string("system")), ("content", .string(context))]), at: at)
        chat = try ChatRequest.validate(chat.body.setting("messages", .array(list)))
        if let native = messages {
            if let system = call.nativeSystem {
                call.nativeSystem = system + "\n\n" + context
            } else {
                // The client's own system prompt (a string or blocks, `cache_control` kept) gets the context.
                let system: JSONValue
                switch native.original["system"] {
                case .string(let text)?: system = .string(text + "\n\n" + context)
                case .array(let blocks)?:
                    system = .array(blocks + [.object([("type", .string("text")), ("text", .string(context))])])
                default: system = .string(context)
                }
                messages = try MessagesAPI.parse(json: native.original.setting("system", system))
            }
        }
        call.input = .chat(chat, messages: messages)
        call.retrieval = RetrievalState(
            collection: collection.name, chunks: used, ms: Int(Posix.monotonicMs() - started),
            sourcesField: settings.sourcesField)
    }

    /// The context after the tenant's ingress policies: a block refuses the call, a redaction rewrites it.
    private func guarded(_ context: String, _ call: inout ModelCall, _ services: StageServices) throws -> String {
        let set = call.tenant.policies
        guard set.any(.ingress) else { return context }
        var verdict = PolicyVerdict(text: [])
        let engine = services.resources.shared.policies.engine(set, budget: call.inspection)
        let checked = Guardrails.rewrite(.string(context), key: "content", engine: engine, verdict: &verdict)
        call.policyTriggers.record(verdict.triggers)
        if let blocked = verdict.blockedBy {
            throw GatewayError.policyBlocked(policy: blocked.name, message: blocked.message)
        }
        return checked.stringValue ?? context
    }
}
