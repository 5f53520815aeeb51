import TenantGateCore

/// The API a client spoke: answers go back in the same one, whatever provider served them.
enum ClientAPI {
    case openAI
    case anthropic
    /// OpenAI's Responses API (errors in OpenAI's shape).
    case responses
}

/// Writes a provider-neutral (Chat Completions shaped) answer to the client in its own API: whole
/// completions, stream chunks, the end of a stream and mid-stream failures.
struct ReplyWriter {
    let api: ClientAPI
    /// `stream_options.include_usage` of an OpenAI client.
    let includeUsage: Bool
    let completionID: String
    let messageID: String
    let model: String
    private var messages: MessagesStream
    private var sentUsage = false
    /// A Responses API call: its stream, and what sees the final response before the client does.
    private var responses: ResponsesStream?
    private let responsesState: ResponsesState?
    private let onFinal: @Sendable (JSONValue) -> Void

    init(
        api: ClientAPI, includeUsage: Bool, completionID: String, model: String, inputEstimate: Int,
        responses: ResponsesState? = nil, onFinal: @escaping @Sendable (JSONValue) -> Void = { _ in }
    ) {
        self.api = api
        self.includeUsage = includeUsage
        self.model = model
        self.completionID = completionID
        messageID = "msg_" + completionID.dropFirst("chatcmpl-".count)
        messages = MessagesStream(id: messageID, model: model, inputEstimate: inputEstimate)
        responsesState = responses
        self.onFinal = onFinal
        if let responses {
            self.responses = ResponsesStream(
                id: responses.id, request: responses.request.original, model: model, createdAt: responses.createdAt)
        }
    }

    /// The body of a whole answer. `raw` are the upstream's own bytes of `json`, forwarded unchanged to
    /// an OpenAI client.
    func completion(_ json: JSONValue, raw: [UInt8]?, usage: Usage?) -> [UInt8] {
        switch api {
        case .openAI: return raw ?? json.bytes
        case .anthropic:
            return MessagesAPI.message(fromCompletion: json, id: messageID, model: model, usage: usage).bytes
        case .responses:
            guard let state = responsesState else { return json.bytes }
            return ResponsesAPI.response(
                fromCompletion: json, id: state.id, request: state.request.original, model: model,
                createdAt: state.createdAt, usage: usage
            ).bytes
        }
    }

    /// SSE bytes for one chunk; `raw` is the upstream's own event data for it, if any.
    mutating func chunk(_ json: JSONValue, raw: String?) -> [UInt8] {
        switch api {
        case .anthropic: return messages.feed(json)
        case .responses: return responses?.feed(json) ?? []
        case .openAI:
            if json["usage"].map({ $0 != .null }) == true {
                // A usage-only chunk reaches the client only if it asked for usage.
                if json["choices"]?.arrayValue?.isEmpty == true && !includeUsage { return [] }
                sentUsage = true
            }
            return SSEParser.frame(data: raw ?? json.jsonString)
        }
    }

    /// The end of a successful stream; `usageChunk` makes OpenAI's usage chunk if one is still owed.
    mutating func done(usage: Usage?, usageChunk: (Usage) -> JSONValue) -> [UInt8] {
        switch api {
        case .anthropic: return messages.finish(usage: usage)
        case .responses: return responses?.finish(usage: usage, beforeFinal: onFinal) ?? []
        case .openAI:
            var out = [UInt8]()
            if includeUsage, !sentUsage, let usage { out = SSEParser.frame(data: usageChunk(usage).jsonString) }
            return out + SSEParser.frame(data: "[DONE]")
        }
    }

    /// A final error event and a clean end, so SDKs raise instead of hanging.
    func failure(_ error: GatewayError) -> [UInt8] {
        switch api {
        case .anthropic: return messages.failure(error)
        case .responses:
            var stream = responses
            return stream?.failure(error) ?? []
        case .openAI: return SSEParser.frame(data: error.body.jsonString) + SSEParser.frame(data: "[DONE]")
        }
    }

    /// The error event that ends a stream whose writer is gone (its settlement failed after the answer).
    static func failureTail(_ error: GatewayError, api: ClientAPI) -> [UInt8] {
        switch api {
        case .anthropic: return MessagesStream.errorEvent(error)
        case .responses:
            let body = JSONValue.object([
                ("type", .string("error")), ("code", .string(error.code)), ("message", .string(error.message)),
                ("param", .null),
            ])
            return SSEParser.frame(data: body.jsonString, event: "error")
        case .openAI: return SSEParser.frame(data: error.body.jsonString) + SSEParser.frame(data: "[DONE]")
        }
    }

    /// A whole error answer's body.
    static func errorBody(_ error: GatewayError, api: ClientAPI) -> JSONValue {
        api == .anthropic ? MessagesAPI.errorBody(error) : error.body
    }
}
