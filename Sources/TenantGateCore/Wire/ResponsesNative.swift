/// An OpenAI backend marked `responses: native` gets a Responses API request as the client wrote it (the
/// model mapped, the earlier conversation of a `previous_response_id` expanded into input items, nothing
/// stored upstream), and its answer goes back as it came, with the gateway's response id.
public enum ResponsesNative {
    /// The upstream body for `request`, whose stored earlier conversation is `previous` (Chat Completions
    /// messages).
    public static func body(_ request: ResponsesRequest, previous: [JSONValue], upstreamModel: String) -> JSONValue {
        var body = request.original.setting("model", .string(upstreamModel)).setting("store", .bool(false))
            .removing("previous_response_id")
        var own: [JSONValue]
        switch request.original["input"] {
        case .string(let text)?: own = [.object([("role", .string("user")), ("content", .string(text))])]
        case .array(let items)?: own = items
        default: own = []
        }
        own = items(fromChat: previous) + own
        body = body.setting("input", .array(own))
        if let metadata = body["metadata"], metadata["prompt"] != nil || metadata["retrieval"] != nil {
            let rest = metadata.removing("prompt").removing("retrieval")
            body = rest.objectValue?.isEmpty == true ? body.removing("metadata") : body.setting("metadata", rest)
        }
        return body
    }

    /// Chat Completions messages as Responses input items.
    public static func items(fromChat messages: [JSONValue]) -> [JSONValue] {
        var out: [JSONValue] = []
        for message in messages {
            let role = message["role"]?.stringValue ?? "user"
            switch role {
            case "tool":
                out.append(
                    .object([
                        ("type", .string("function_call_output")), ("call_id", message["tool_call_id"] ?? .string("")),
                        ("output", message["content"] ?? .string("")),
                    ]))
            default:
                if let text = message["content"]?.stringValue, !text.isEmpty {
                    out.append(
                        .object([("type", .string("message")), ("role", .string(role)), ("content", .string(text))]))
                } else if let parts = message["content"]?.arrayValue {
                    let converted: [JSONValue] = parts.compactMap { part in
                        if let text = part["text"]?.stringValue {
                            return .object([
                                ("type", .string(role == "assistant" ? "output_text" : "input_text")),
                                ("text", .string(text)),
                            ])
                        }
                        if let url = part["image_url"]?["url"]?.stringValue {
                            return .object([("type", .string("input_image")), ("image_url", .string(url))])
                        }
                        return nil
                    }
                    out.append(
                        .object([("type", .string("message")), ("role", .string(role)), ("content", .array(converted))])
                    )
                }
                for call in message["tool_calls"]?.arrayValue ?? [] {
                    out.append(
                        .object([
                            ("type", .string("function_call")), ("call_id", call["id"] ?? .string("")),
                            ("name", call["function"]?["name"] ?? .string("")),
                            ("arguments", call["function"]?["arguments"] ?? .string("")),
                        ]))
                }
            }
        }
        return out
    }

    /// The upstream's response object as the client gets it: the gateway's id, the catalog model, the
    /// client's `store` and `previous_response_id`.
    public static func rewrite(_ response: JSONValue, id: String, model: String, request: JSONValue) -> JSONValue {
        response.setting("id", .string(id)).setting("model", .string(model))
            .setting("store", request["store"].flatMap { $0 == .null ? nil : $0 } ?? .bool(true))
            .setting("previous_response_id", request["previous_response_id"] ?? .null)
    }

    /// Usage from a response object.
    public static func usage(_ response: JSONValue) -> Usage? {
        guard let usage = response["usage"], usage != .null else { return nil }
        return Usage(
            promptTokens: Bounds.reportedTokens(usage["input_tokens"]?.intValue),
            completionTokens: Bounds.reportedTokens(usage["output_tokens"]?.intValue),
            cachedTokens: Bounds.reportedTokens(usage["input_tokens_details"]?["cached_tokens"]?.intValue))
    }
}

/// Decodes a native Responses API stream: each event goes to the client as it came (the response objects
/// in it rewritten to the gateway's id and model); the final one is handed to `beforeFinal` first.
public struct ResponsesNativeDecoder: StreamDecoder {
    let id: String
    let model: String
    let request: JSONValue
    let beforeFinal: @Sendable (JSONValue) -> Void
    public private(set) var ended = false
    public private(set) var failure: String?
    public private(set) var usage: Usage?
    public private(set) var streamedTextBytes = 0

    public init(id: String, model: String, request: JSONValue, beforeFinal: @escaping @Sendable (JSONValue) -> Void) {
        self.id = id
        self.model = model
        self.request = request
        self.beforeFinal = beforeFinal
    }

    public mutating func decode(_ event: SSEEvent) -> [StreamPiece] {
        guard var json = try? JSONParser.parse(event.data), case .object = json else { return [] }
        let type = json["type"]?.stringValue ?? event.event ?? ""
        if let response = json["response"], case .object = response {
            let rewritten = ResponsesNative.rewrite(response, id: id, model: model, request: request)
            json = json.setting("response", rewritten)
            switch type {
            case "response.completed", "response.incomplete":
                ended = true
                usage = ResponsesNative.usage(rewritten)
                beforeFinal(rewritten)
            case "response.failed":
                ended = true
                failure = rewritten["error"]?["message"]?.stringValue ?? "response.failed"
                usage = ResponsesNative.usage(rewritten)
            default: break
            }
        }
        if type == "error" { failure = json["message"]?.stringValue ?? "error" }
        if let delta = json["delta"]?.stringValue {
            streamedTextBytes = streamedTextBytes.saturatingAdd(delta.utf8.count)
        }
        return [.frame(SSEParser.frame(data: json.jsonString, event: type.isEmpty ? nil : type))]
    }

    public func usageChunk(_ usage: Usage) -> JSONValue { .null }
    public var missingEnd: String { "the upstream stream ended before response.completed" }
    public var forwardsFailure: Bool { true }
}
