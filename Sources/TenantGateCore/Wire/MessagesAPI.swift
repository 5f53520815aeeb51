/// A parsed Anthropic Messages request: its Chat Completions equivalent (what limits, prompts and every
/// non-Anthropic backend work on) and the original body (sent natively to Anthropic backends, so
/// `cache_control`, `thinking`, documents and the rest survive).
public struct MessagesRequest: Sendable {
    public let chat: ChatRequest
    public let original: JSONValue
    /// Content block types with no Chat Completions counterpart (only an Anthropic backend can serve them).
    public let nativeOnly: [String]
    /// Anthropic server tools offered (`web_search_…`, `code_execution_…`): flag `server_tools`.
    public let serverTools: [String]

    /// Whether the request carries document blocks (flag `documents`).
    public var usesDocuments: Bool { nativeOnly.contains("document") }

    /// The feature gates of an Anthropic client's request beyond those of Chat Completions: server tools,
    /// documents and a client `anthropic-beta` header each need their flag, so nothing reaches a native
    /// upstream call that a gate has not checked.
    public func checkGates(tenant: TenantConfig, subject: String, beta: Bool) throws(GatewayError) {
        if !serverTools.isEmpty && !tenant.feature("server_tools", subject: subject) {
            throw GatewayError.featureDisabled("server_tools")
        }
        if usesDocuments && !tenant.feature("documents", subject: subject) {
            throw GatewayError.featureDisabled("documents")
        }
        if beta && !tenant.feature("anthropic_beta", subject: subject) {
            throw GatewayError.featureDisabled("anthropic_beta")
        }
    }
}

/// The inbound Anthropic Messages API (`POST /v1/messages`): requests become Chat Completions requests
/// (so every backend can serve them), answers and errors go back in Anthropic's shapes.
public enum MessagesAPI {
    /// Block types translation understands; other well-formed blocks are kept for Anthropic backends.
    static let translatable: Set<String> = [
        "text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking",
    ]

    /// Parses and validates an Anthropic Messages request.
    public static func parse(_ bytes: [UInt8]) throws(GatewayError) -> MessagesRequest {
        try parse(json: try JSONParser.parseRequestBody(bytes))
    }

    /// The top-level fields accepted (and, for a native call, forwarded). Anything else, such as
    /// `mcp_servers` or `container`, is refused by name: a native call carries only what the gates checked.
    public static let acceptedFields: Set<String> = [
        "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream", "temperature", "top_p",
        "top_k", "tools", "tool_choice", "thinking", "service_tier",
    ]

    /// Validates an already parsed Anthropic Messages request.
    public static func parse(json: JSONValue) throws(GatewayError) -> MessagesRequest {
        for (name, _) in json.objectValue ?? [] where !acceptedFields.contains(name) {
            throw GatewayError.invalidRequest(
                "\(name.prefix(64)): this field is not supported by the gateway", param: String(name.prefix(64)))
        }
        for (name, _) in json["metadata"]?.objectValue ?? [] where !["user_id", "prompt", "retrieval"].contains(name) {
            throw GatewayError.invalidRequest(
                "metadata.\(name.prefix(64)): only user_id (and TenantGate's prompt and retrieval) are accepted",
                param: "metadata.\(name.prefix(64))")
        }
        var nativeOnly: [String] = []
        var extra = 0
        var serverTools: [String] = []
        var chat = try ChatRequest.validate(
            try chatBody(json, nativeOnly: &nativeOnly, extraBytes: &extra, serverTools: &serverTools))
        chat.extraPromptTokens = extra
        return MessagesRequest(chat: chat, original: json, nativeOnly: nativeOnly, serverTools: serverTools)
    }

    /// The body sent to an Anthropic backend: the client's own, with the upstream model, the system prompt
    /// the prompt stage produced (only when a tenant template applied; otherwise the client's `system`,
    /// blocks and `cache_control` included, is kept) and TenantGate's `metadata.prompt` and `metadata.retrieval` removed.
    public static func nativeBody(_ original: JSONValue, upstreamModel: String, system: String?) -> JSONValue {
        var body = original.setting("model", .string(upstreamModel))
        if let system { body = system.isEmpty ? body.removing("system") : body.setting("system", .string(system)) }
        if let metadata = body["metadata"], metadata["prompt"] != nil || metadata["retrieval"] != nil {
            let rest = metadata.removing("prompt").removing("retrieval")
            body = rest.objectValue?.isEmpty == true ? body.removing("metadata") : body.setting("metadata", rest)
        }
        return body
    }

    /// The Chat Completions body for an Anthropic Messages body; block types it cannot translate are
    /// listed in `nativeOnly`.
    /// `extraBytes` adds up the JSON bytes of what is kept only for a native call (documents, server tools),
    /// for the reservation.
    static func chatBody(
        _ json: JSONValue, nativeOnly: inout [String], extraBytes: inout Int, serverTools: inout [String]
    ) throws(GatewayError) -> JSONValue {
        guard case .object = json else { throw GatewayError.invalidRequest("The request body must be a JSON object.") }
        guard let maxTokens = json["max_tokens"] else {
            throw GatewayError.invalidRequest("max_tokens: Field required", param: "max_tokens")
        }
        guard let n = maxTokens.intValue, n >= 1 else {
            throw GatewayError.invalidRequest("max_tokens: must be a positive integer", param: "max_tokens")
        }
        guard let messages = json["messages"]?.arrayValue else {
            throw GatewayError.invalidRequest("messages: Field required (an array)", param: "messages")
        }
        var out: [(String, JSONValue)] = []
        if let model = json["model"] { out.append(("model", model)) }
        var chat: [JSONValue] = []
        if let system = json["system"], system != .null {
            chat.append(.object([("role", .string("system")), ("content", .string(try systemText(system)))]))
        }
        for (i, message) in messages.enumerated() {
            chat += try chatMessages(message, index: i, nativeOnly: &nativeOnly, extraBytes: &extraBytes)
        }
        out.append(("messages", .array(chat)))
        out.append(("max_tokens", .int(n)))
        if let stream = json["stream"], stream != .null {
            guard let b = stream.boolValue else {
                throw GatewayError.invalidRequest("stream: must be a boolean", param: "stream")
            }
            out.append(("stream", .bool(b)))
            if b { out.append(("stream_options", .object([("include_usage", .bool(true))]))) }
        }
        for field in ["temperature", "top_p"] {
            if let v = json[field], v != .null {
                guard v.doubleValue != nil else {
                    throw GatewayError.invalidRequest("\(field): must be a number", param: field)
                }
                out.append((field, v))
            }
        }
        if let v = json["top_k"], v != .null, v.intValue == nil {
            throw GatewayError.invalidRequest("top_k: must be an integer", param: "top_k")
        }
        if let stops = json["stop_sequences"], stops != .null {
            guard let list = stops.arrayValue, list.allSatisfy({ $0.stringValue != nil }) else {
                throw GatewayError.invalidRequest(
                    "stop_sequences: must be an array of strings", param: "stop_sequences")
            }
            out.append(("stop", .array(list)))
        }
        if let tools = json["tools"], tools != .null {
            guard let list = tools.arrayValue else {
                throw GatewayError.invalidRequest("tools: must be an array", param: "tools")
            }
            var converted: [JSONValue] = []
            for (i, tool) in list.enumerated() {
                if let type = tool["type"]?.stringValue, type != "custom" {
                    // A server tool (web search, code execution…): Anthropic runs it, so only a native call can.
                    if !serverTools.contains(type) { serverTools.append(type) }
                    if !nativeOnly.contains(type) { nativeOnly.append(type) }
                    extraBytes = extraBytes.saturatingAdd(tool.jsonString.utf8.count)
                    continue
                }
                guard let name = tool["name"]?.stringValue else {
                    throw GatewayError.invalidRequest("tools.\(i).name: Field required", param: "tools.\(i).name")
                }
                var function: [(String, JSONValue)] = [("name", .string(name))]
                if let d = tool["description"]?.stringValue { function.append(("description", .string(d))) }
                function.append(("parameters", tool["input_schema"] ?? .object([("type", .string("object"))])))
                converted.append(.object([("type", .string("function")), ("function", .object(function))]))
            }
            if !converted.isEmpty { out.append(("tools", .array(converted))) }
        }
        if let choice = json["tool_choice"], choice != .null {
            switch choice["type"]?.stringValue {
            case "auto"?: out.append(("tool_choice", .string("auto")))
            case "any"?: out.append(("tool_choice", .string("required")))
            case "none"?: out.append(("tool_choice", .string("none")))
            case "tool"?:
                guard let name = choice["name"]?.stringValue else {
                    throw GatewayError.invalidRequest("tool_choice.name: Field required", param: "tool_choice.name")
                }
                out.append(
                    (
                        "tool_choice",
                        .object([("type", .string("function")), ("function", .object([("name", .string(name))]))])
                    ))
            default:
                throw GatewayError.invalidRequest(
                    "tool_choice.type: must be one of auto, any, tool, none", param: "tool_choice.type")
            }
            if choice["disable_parallel_tool_use"]?.boolValue == true {
                out.append(("parallel_tool_calls", .bool(false)))
            }
        }
        if let metadata = json["metadata"], metadata != .null {
            guard case .object = metadata else {
                throw GatewayError.invalidRequest("metadata: must be an object", param: "metadata")
            }
            if let user = try ChatRequest.user(metadata["user_id"], field: "metadata.user_id") {
                out.append(("user", .string(user)))
            }
            // TenantGate's named prompt templates and retrieval travel in metadata, as with Chat Completions.
            let own = ["prompt", "retrieval"].compactMap { name in metadata[name].map { (name, $0) } }
            if !own.isEmpty { out.append(("metadata", .object(own))) }
        }
        return .object(out)
    }

    private static func systemText(_ system: JSONValue) throws(GatewayError) -> String {
        if let s = system.stringValue { return s }
        guard let blocks = system.arrayValue else {
            throw GatewayError.invalidRequest("system: must be a string or an array of text blocks", param: "system")
        }
        var parts: [String] = []
        for (i, block) in blocks.enumerated() {
            guard block["type"]?.stringValue == "text", let text = block["text"]?.stringValue else {
                throw GatewayError.invalidRequest("system.\(i): must be a text block", param: "system.\(i)")
            }
            parts.append(text)
        }
        return parts.joined(separator: "\n\n")
    }

    /// One Anthropic message as one or more Chat Completions messages (tool results become `tool` messages).
    private static func chatMessages(
        _ message: JSONValue, index i: Int, nativeOnly: inout [String], extraBytes: inout Int
    ) throws(GatewayError) -> [JSONValue] {
        let at = "messages.\(i)"
        guard case .object = message else { throw GatewayError.invalidRequest("\(at): must be an object", param: at) }
        guard let role = message["role"]?.stringValue, role == "user" || role == "assistant" else {
            throw GatewayError.invalidRequest("\(at).role: must be 'user' or 'assistant'", param: "\(at).role")
        }
        guard let content = message["content"] else {
            throw GatewayError.invalidRequest("\(at).content: Field required", param: "\(at).content")
        }
        if let text = content.stringValue {
            return [.object([("role", .string(role)), ("content", .string(text))])]
        }
        guard let blocks = content.arrayValue else {
            throw GatewayError.invalidRequest(
                "\(at).content: must be a string or an array of content blocks", param: "\(at).content")
        }
        var parts: [JSONValue] = []
        var calls: [JSONValue] = []
        var results: [JSONValue] = []
        for (j, block) in blocks.enumerated() {
            let here = "\(at).content.\(j)"
            guard case .object = block, let type = block["type"]?.stringValue else {
                throw GatewayError.invalidRequest("\(here).type: Field required", param: "\(here).type")
            }
            switch (type, role) {
            case ("text", _):
                guard let text = block["text"]?.stringValue else {
                    throw GatewayError.invalidRequest("\(here).text: must be a string", param: "\(here).text")
                }
                parts.append(.object([("type", .string("text")), ("text", .string(text))]))
            case ("image", "user"):
                parts.append(try imagePart(block["source"], at: here))
            case ("tool_use", "assistant"):
                guard let id = block["id"]?.stringValue, let name = block["name"]?.stringValue else {
                    throw GatewayError.invalidRequest("\(here): tool_use needs id and name", param: here)
                }
                calls.append(
                    .object([
                        ("id", .string(id)), ("type", .string("function")),
                        (
                            "function",
                            .object([
                                ("name", .string(name)),
                                ("arguments", .string((block["input"] ?? .object([])).jsonString)),
                            ])
                        ),
                    ]))
            case ("tool_result", "user"):
                guard let id = block["tool_use_id"]?.stringValue else {
                    throw GatewayError.invalidRequest(
                        "\(here).tool_use_id: Field required", param: "\(here).tool_use_id")
                }
                var text = ""
                switch block["content"] {
                case .string(let s)?: text = s
                case .array(let inner)?:
                    text = inner.compactMap { $0["text"]?.stringValue }.joined(separator: "\n")
                case nil, .null?: break
                default:
                    throw GatewayError.invalidRequest(
                        "\(here).content: must be a string or an array of blocks", param: "\(here).content")
                }
                if block["is_error"]?.boolValue == true { text = "Error: " + text }
                results.append(
                    .object([("role", .string("tool")), ("tool_call_id", .string(id)), ("content", .string(text))]))
            case ("thinking", "assistant"), ("redacted_thinking", "assistant"):
                // not replayable through other providers; a native call sends it (counted, to be safe)
                extraBytes = extraBytes.saturatingAdd(block.jsonString.utf8.count)
                continue
            case _ where !translatable.contains(type):
                // documents, search results, server tool blocks…: kept for an Anthropic backend only
                if !nativeOnly.contains(type) { nativeOnly.append(type) }
                extraBytes = extraBytes.saturatingAdd(block.jsonString.utf8.count)
            default:
                throw GatewayError.invalidRequest(
                    "\(here).type: '\(type)' is not a valid block in a \(role) message", param: "\(here).type")
            }
        }
        var out = results
        if role == "assistant" {
            let text = parts.compactMap { $0["text"]?.stringValue }.joined()
            var members: [(String, JSONValue)] = [
                ("role", .string("assistant")), ("content", text.isEmpty && !calls.isEmpty ? .null : .string(text)),
            ]
            if !calls.isEmpty { members.append(("tool_calls", .array(calls))) }
            out.append(.object(members))
        } else if !parts.isEmpty || results.isEmpty {
            out.append(.object([("role", .string("user")), ("content", .array(parts))]))
        }
        return out
    }

    private static func imagePart(_ source: JSONValue?, at here: String) throws(GatewayError) -> JSONValue {
        let url: String
        switch source?["type"]?.stringValue {
        case "base64"?:
            guard let media = source?["media_type"]?.stringValue, let data = source?["data"]?.stringValue else {
                throw GatewayError.invalidRequest("\(here).source: needs media_type and data", param: "\(here).source")
            }
            url = "data:\(media);base64,\(data)"
        case "url"?:
            guard let u = source?["url"]?.stringValue else {
                throw GatewayError.invalidRequest("\(here).source.url: Field required", param: "\(here).source.url")
            }
            url = u
        default:
            throw GatewayError.invalidRequest(
                "\(here).source.type: must be base64 or url", param: "\(here).source.type")
        }
        return .object([("type", .string("image_url")), ("image_url", .object([("url", .string(url))]))])
    }

    /// Anthropic's `stop_reason` for OpenAI's `finish_reason`.
    public static func stopReason(_ finishReason: String?) -> String {
        switch finishReason {
        case "length"?: return "max_tokens"
        case "tool_calls"?, "function_call"?: return "tool_use"
        case "content_filter"?: return "refusal"
        default: return "end_turn"
        }
    }

    /// A `chat.completion` as an Anthropic `message` (usage from `usage` when known, else from the body).
    public static func message(fromCompletion json: JSONValue, id: String, model: String, usage: Usage?) -> JSONValue {
        let choice = json["choices"]?.arrayValue?.first
        let reply = choice?["message"]
        var blocks: [JSONValue] = []
        if let text = reply?["content"]?.stringValue, !text.isEmpty {
            blocks.append(.object([("type", .string("text")), ("text", .string(text))]))
        }
        for call in reply?["tool_calls"]?.arrayValue ?? [] {
            blocks.append(toolUse(call))
        }
        let used = usage ?? Usage(openAI: json["usage"]) ?? Usage(promptTokens: 0, completionTokens: 0)
        return .object([
            ("id", .string(id)), ("type", .string("message")), ("role", .string("assistant")),
            ("model", .string(model)), ("content", .array(blocks)),
            ("stop_reason", .string(stopReason(choice?["finish_reason"]?.stringValue))),
            ("stop_sequence", .null), ("usage", used.anthropic),
        ])
    }

    static func toolUse(_ call: JSONValue) -> JSONValue {
        var input = JSONValue.object([])
        if let arguments = call["function"]?["arguments"]?.stringValue, let parsed = try? JSONParser.parse(arguments),
            case .object = parsed
        {
            input = parsed
        }
        return .object([
            ("type", .string("tool_use")), ("id", .string(call["id"]?.stringValue ?? "")),
            ("name", .string(call["function"]?["name"]?.stringValue ?? "")), ("input", input),
        ])
    }

    /// Anthropic's error `type` for a gateway error.
    public static func errorType(_ error: GatewayError) -> String {
        switch error.status {
        case 400, 405, 415: return "invalid_request_error"
        case 401: return "authentication_error"
        case 403: return "permission_error"
        case 404: return "not_found_error"
        case 413: return "request_too_large"
        case 429: return "rate_limit_error"
        case 503: return "overloaded_error"
        default: return "api_error"
        }
    }

    /// Anthropic's error body; TenantGate's own `code` rides along.
    public static func errorBody(_ error: GatewayError) -> JSONValue {
        .object([
            ("type", .string("error")),
            (
                "error",
                .object([
                    ("type", .string(errorType(error))), ("message", .string(error.message)),
                    ("code", .string(error.code)),
                ])
            ),
        ])
    }
}
