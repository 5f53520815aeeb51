import TenantGateCore
import TenantGateServing
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
                    let conversation = try services.resources.store.responses.conversation(
                        tenant: call.tenant.id.rawValue, id: id)
                else { throw GatewayError.missing("Previous response with id '\(id.prefix(64))'") }
                previous = conversation
            }
            let chat = try request.chat(previous: previous)
            call.input = .chat(chat, messages: nil)
            call.responses = ResponsesState(
                request: request, id: StoredResponse.newID(), createdAt: Int(Posix.wallMicros() / 1_000_000),
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
