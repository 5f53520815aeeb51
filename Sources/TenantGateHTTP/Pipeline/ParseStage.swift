import TenantGateCore
import TenantGateServing
import TenantGateStore
import TenantGateSystem

/// Validates the body in the endpoint's API and records who the call is for.
struct ParseStage: Stage {
    let name = "parse"

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        let body = call.request.body
        let requested: String?
        let user: String?
        switch call.endpoint {
        case .chat:
            let chat = try ChatRequest.parse(body)
            call.input = .chat(chat, messages: nil)
            (requested, user, call.streamed) = (chat.model, chat.user, chat.stream)
        case .messages:
            let messages = try MessagesAPI.parse(body)
            call.input = .chat(messages.chat, messages: messages)
            (requested, user, call.streamed) = (messages.chat.model, messages.chat.user, messages.chat.stream)
        case .responses:
            let request = try ResponsesAPI.parse(body)
            var previous: [JSONValue] = []
            if let id = request.previousResponseID {
                // Another tenant's id, or one never issued, is not found: exactly like an unknown one.
                guard
                    let conversation = try services.resources.readers.with({
                        try ResponseStore($0).conversation(tenant: call.tenant.id.rawValue, id: id)
                    })
                else { throw GatewayError.missing("Previous response with id '\(id.prefix(64))'") }
                previous = conversation
            }
            let chat = try request.chat(previous: previous)
            call.input = .chat(chat, messages: nil)
            call.responses = ResponsesState(
                request: request, id: ResponseStore.newID(), createdAt: Int(Posix.wallMicros() / 1_000_000),
                previous: previous)
            (requested, user, call.streamed) = (chat.model, chat.user, chat.stream)
        case .embeddings:
            let embed = try EmbeddingsRequest.parse(body)
            call.input = .embeddings(embed)
            (requested, user) = (embed.model, embed.user)
        case .countTokens:
            var json = try JSONParser.parseRequestBody(body)
            guard case .object = json else {
                throw GatewayError.invalidRequest("The request body must be a JSON object.")
            }
            // The Messages validation needs max_tokens, which count_tokens does not take.
            if json["max_tokens"] == nil { json = json.setting("max_tokens", .int(1)) }
            let messages = try MessagesAPI.parse(json: json)
            call.input = .countTokens(messages)
            (requested, user) = (messages.chat.model, messages.chat.user)
        }
        // A verified JWT subject is the end user; the client's `user` only labels calls made with a key.
        if call.endpoint != .countTokens { call.endUser = call.principal.subject ?? user }
        // Flags roll out by a subject the client cannot choose (a chosen `user` would pick its bucket).
        call.subject = call.principal.subject ?? call.principal.key.id
        // Only catalog names become the model label: arbitrary client strings would explode metric cardinality.
        if let name = requested ?? call.tenant.defaultModel, call.config.models[name] != nil {
            call.served.model = name
        }
    }
}

/// Resolves the model against the tenant's allow-list, its backend and the fallback chain, and checks
/// the client's completion cap against the model's.
struct ModelStage: Stage {
    let name = "model"

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        let requested: String?
        switch call.input {
        case .chat(let chat, _): requested = chat.model
        case .embeddings(let embed): requested = embed.model
        case .countTokens(let messages): requested = messages.chat.model
        case .none: return
        }
        let (name, model, backend) = try ModelSelection.resolve(requested, tenant: call.tenant, config: call.config)
        var chain = [(name: name, model: model, backend: backend)]
        if case .chat(let chat, let native) = call.input {
            try chat.checkCap(for: model)
            // A BYOK client's key only ever goes to the backend of the model it asked for, so fallbacks on
            // other backends are skipped for it.
            chain = call.tenant.chain(for: name).compactMap { candidate in
                guard let m = call.config.models[candidate], let b = call.config.backends[m.backend],
                    call.principal.passthrough == nil || m.backend == model.backend
                else { return nil }
                return (candidate, m, b)
            }
            // A self-hosted server would fetch a client's image URL from inside the operator's network.
            let remote = chat.hasRemoteMedia || native.map { ChatRequest.hasURLSource($0.original) } == true
            if remote, let closed = chain.first(where: { !$0.backend.allowRemoteImages }) {
                throw GatewayError.invalidRequest(
                    "Model '\(closed.name)' does not fetch media by URL (its backend is self-hosted): send images inline as data: URLs.",
                    param: "messages")
            }
        }
        if case .embeddings = call.input, !Provider.of(backend.provider).offersEmbeddings {
            // Refused before anything is reserved or sent.
            throw GatewayError.invalidRequest("Model '\(name)' does not offer embeddings.", param: "model")
        }
        if call.endpoint == .countTokens { call.served.model = name }
        if call.endpoint != .chat && call.endpoint != .messages { call.served.backend = backend.name }
        call.target = Target(name: name, model: model, backend: backend, chain: chain)
    }
}

/// Feature flags and the endpoint's gates for the call's subject.
struct GatesStage: Stage {
    let name = "gates"

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        let tenant = call.tenant
        let subject = call.subject
        let beta = call.request.headers["anthropic-beta"] != nil
        switch call.input {
        case .chat(let chat, let messages):
            if call.endpoint == .responses && !tenant.feature("responses_api", subject: subject) {
                throw GatewayError.featureDisabled("responses_api")
            }
            if let messages {
                guard tenant.feature("messages_api", subject: subject) else {
                    throw GatewayError.featureDisabled("messages_api")
                }
                try messages.checkGates(tenant: tenant, subject: subject, beta: beta)
            }
            if chat.stream && !tenant.feature("streaming", subject: subject) {
                throw GatewayError.featureDisabled("streaming")
            }
            if chat.usesTools && !tenant.feature("tools", subject: subject) {
                throw GatewayError.featureDisabled("tools")
            }
        case .embeddings:
            guard tenant.feature("embeddings", subject: subject) else {
                throw GatewayError.featureDisabled("embeddings")
            }
        case .countTokens(let messages):
            guard tenant.feature("messages_api", subject: subject) else {
                throw GatewayError.featureDisabled("messages_api")
            }
            try messages.checkGates(tenant: tenant, subject: subject, beta: beta)
        case .none: return
        }
    }
}
