/// An OpenAI Responses API request (`POST /v1/responses`), validated, with its provider-neutral
/// (Chat Completions shaped) messages. The conversation of a `previous_response_id` is put in front by
/// `chat(previous:)` once the store has it.
public struct ResponsesRequest: Sendable {
    /// The client's body, as sent.
    public let original: JSONValue
    /// The request's own input as Chat Completions messages (no instructions, no earlier turns).
    public let messages: [JSONValue]
    /// The request's own input items, normalised (each with an `id` and a `type`), as `input_items` lists.
    public let inputItems: [JSONValue]
    public let instructions: String?
    public let previousResponseID: String?
    /// `store` (default true).
    public let store: Bool
    public let stream: Bool
    /// The Chat Completions fields besides the messages (model, tools, sampling, format, user, limits).
    let chatFields: [(String, JSONValue)]

    /// The neutral request: the instructions as the system message, then the earlier conversation (from
    /// `previous_response_id`), then this request's input.
    public func chat(previous: [JSONValue] = []) throws(GatewayError) -> ChatRequest {
        var messages: [JSONValue] = []
        if let instructions {
            messages.append(.object([("role", .string("system")), ("content", .string(instructions))]))
        }
        messages += previous + self.messages
        try ResponsesAPI.checkToolOutputs(messages)
        return try ChatRequest.validate(.object(chatFields + [("messages", .array(messages))]))
    }
}

/// Translation between the Responses API and the provider-neutral Chat Completions form: requests (input
/// items, instructions, function tools, text format), whole answers (output items, usage, status) and,
/// in `ResponsesStream`, stream events.
public enum ResponsesAPI {
    /// Fields accepted; others are refused by name (`background`, hosted tools' settings, …).
    public static let acceptedFields: Set<String> = [
        "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens",
        "temperature", "top_p", "text", "metadata", "user", "store", "previous_response_id", "stream", "truncation",
        "include", "service_tier", "prompt_cache_key", "safety_identifier", "reasoning", "stream_options",
    ]
    /// Most input items in one request.
    public static let maxItems = 2048

    public static func parse(_ bytes: [UInt8]) throws(GatewayError) -> ResponsesRequest {
        try parse(json: try JSONParser.parseRequestBody(bytes))
    }

    public static func parse(json: JSONValue) throws(GatewayError) -> ResponsesRequest {
        guard case .object(let members) = json else {
            throw .invalidRequest("The request body must be a JSON object.")
        }
        for (name, _) in members where !acceptedFields.contains(name) {
            throw .invalidRequest(
                "Unknown parameter: '\(name.prefix(64))'.", param: String(name.prefix(64)))
        }
        var fields: [(String, JSONValue)] = []
        if let model = json["model"] { fields.append(("model", model)) }
        let stream = try flag(json, "stream", default: false)
        if stream {
            fields.append(("stream", .bool(true)))
            fields.append(("stream_options", .object([("include_usage", .bool(true))])))
        }
        var instructions: String?
        if let value = json["instructions"], value != .null {
            guard let text = value.stringValue else {
                throw .invalidRequest("'instructions' must be a string.", param: "instructions")
            }
            instructions = text
        }
        let (messages, items) = try input(json["input"])
        if let tools = json["tools"], tools != .null {
            fields.append(("tools", try self.tools(tools)))
        }
        if let choice = json["tool_choice"], choice != .null {
            fields.append(("tool_choice", try toolChoice(choice)))
        }
        if let value = json["parallel_tool_calls"], value != .null {
            guard case .bool = value else {
                throw .invalidRequest("'parallel_tool_calls' must be a boolean.", param: "parallel_tool_calls")
            }
            fields.append(("parallel_tool_calls", value))
        }
        if let value = json["max_output_tokens"], value != .null {
            guard let n = value.intValue, n >= 1 else {
                throw .invalidRequest("'max_output_tokens' must be a positive integer.", param: "max_output_tokens")
            }
            fields.append(("max_tokens", .int(n)))
        }
        for name in ["temperature", "top_p"] {
            if let value = json[name], value != .null {
                guard value.doubleValue != nil else {
                    throw .invalidRequest("'\(name)' must be a number.", param: name)
                }
                fields.append((name, value))
            }
        }
        if let format = json["text"]?["format"], format != .null {
            if let converted = try responseFormat(format) { fields.append(("response_format", converted)) }
        }
        if let user = json["user"] ?? json["safety_identifier"], user != .null { fields.append(("user", user)) }
        if let metadata = json["metadata"], metadata != .null {
            guard case .object(let pairs) = metadata, pairs.count <= 16 else {
                throw .invalidRequest("'metadata' must be an object of at most 16 pairs.", param: "metadata")
            }
            // TenantGate's own keys travel on (the prompt and retrieval stages read and remove them).
            let own = pairs.filter { ["prompt", "retrieval"].contains($0.0) }
            if !own.isEmpty { fields.append(("metadata", .object(own))) }
        }
        var previous: String?
        if let value = json["previous_response_id"], value != .null {
            guard let id = value.stringValue else {
                throw .invalidRequest("'previous_response_id' must be a string.", param: "previous_response_id")
            }
            previous = id
        }
        if json["background"]?.boolValue == true {
            throw .invalidRequest("'background' responses are not supported by this gateway.", param: "background")
        }
        return ResponsesRequest(
            original: json, messages: messages, inputItems: items, instructions: instructions,
            previousResponseID: previous, store: try flag(json, "store", default: true), stream: stream,
            chatFields: fields)
    }

    private static func flag(_ json: JSONValue, _ name: String, default value: Bool) throws(GatewayError) -> Bool {
        guard let field = json[name], field != .null else { return value }
        guard let bool = field.boolValue else { throw .invalidRequest("'\(name)' must be a boolean.", param: name) }
        return bool
    }

    // MARK: input

    /// `input` as Chat Completions messages, and the items as `input_items` lists them.
    static func input(_ value: JSONValue?) throws(GatewayError) -> ([JSONValue], [JSONValue]) {
        switch value {
        case .string(let text)?:
            let item = JSONValue.object([
                ("id", .string(itemID("msg", 0))), ("type", .string("message")), ("role", .string("user")),
                ("content", .array([.object([("type", .string("input_text")), ("text", .string(text))])])),
                ("status", .string("completed")),
            ])
            return ([.object([("role", .string("user")), ("content", .string(text))])], [item])
        case .array(let items)?:
            guard !items.isEmpty else { throw .invalidRequest("'input' must not be empty.", param: "input") }
            guard items.count <= maxItems else {
                throw .invalidRequest("'input' has more than \(maxItems) items.", param: "input")
            }
            var messages: [JSONValue] = []
            var listed: [JSONValue] = []
            for (index, item) in items.enumerated() {
                let param = "input[\(index)]"
                guard case .object = item else { throw .invalidRequest("'\(param)' must be an object.", param: param) }
                let type = item["type"]?.stringValue ?? (item["role"] != nil ? "message" : "")
                switch type {
                case "message":
                    messages.append(try message(item, param: param))
                case "function_call":
                    guard let callID = item["call_id"]?.stringValue, let name = item["name"]?.stringValue,
                        let arguments = item["arguments"]?.stringValue
                    else {
                        throw .invalidRequest(
                            "'\(param)' (function_call) needs string 'call_id', 'name' and 'arguments'.", param: param)
                    }
                    let call = JSONValue.object([
                        ("id", .string(callID)), ("type", .string("function")),
                        ("function", .object([("name", .string(name)), ("arguments", .string(arguments))])),
                    ])
                    // Calls in a row belong to one assistant turn.
                    if let last = messages.last, last["role"]?.stringValue == "assistant" {
                        let calls = (last["tool_calls"]?.arrayValue ?? []) + [call]
                        messages[messages.count - 1] = last.setting("tool_calls", .array(calls))
                    } else {
                        messages.append(
                            .object([
                                ("role", .string("assistant")), ("content", .null), ("tool_calls", .array([call])),
                            ]))
                    }
                case "function_call_output":
                    guard let callID = item["call_id"]?.stringValue else {
                        throw .invalidRequest("'\(param).call_id' must be a string.", param: param + ".call_id")
                    }
                    let output: String
                    switch item["output"] {
                    case .string(let text)?: output = text
                    case .array(let parts)?: output = parts.compactMap { $0["text"]?.stringValue }.joined()
                    default: throw .invalidRequest("'\(param).output' must be a string.", param: param + ".output")
                    }
                    messages.append(
                        .object([
                            ("role", .string("tool")), ("tool_call_id", .string(callID)), ("content", .string(output)),
                        ]))
                case "reasoning":
                    continue  // earlier output handed back: nothing to send
                default:
                    throw .invalidRequest(
                        "Invalid value for '\(param).type': supported are message, function_call, function_call_output.",
                        param: param + ".type")
                }
                var listedItem = item
                if item["type"] == nil { listedItem = listedItem.setting("type", .string("message")) }
                if item["id"] == nil {
                    listedItem = listedItem.setting("id", .string(itemID(type == "message" ? "msg" : "fc", index)))
                }
                listed.append(listedItem)
            }
            return (messages, listed)
        default:
            throw .invalidRequest("'input' must be a string or a list of items.", param: "input")
        }
    }

    private static func itemID(_ kind: String, _ index: Int) -> String { "\(kind)_in\(index)" }

    private static func message(_ item: JSONValue, param: String) throws(GatewayError) -> JSONValue {
        guard let role = item["role"]?.stringValue, ["user", "system", "developer", "assistant"].contains(role) else {
            throw .invalidRequest(
                "'\(param).role' must be one of user, system, developer, assistant.", param: param + ".role")
        }
        switch item["content"] {
        case .string(let text)?:
            return .object([("role", .string(role)), ("content", .string(text))])
        case .array(let parts)?:
            var out: [JSONValue] = []
            for (index, part) in parts.enumerated() {
                let where_ = "\(param).content[\(index)]"
                switch part["type"]?.stringValue {
                case "input_text", "output_text", "text":
                    guard let text = part["text"]?.stringValue else {
                        throw .invalidRequest("'\(where_).text' must be a string.", param: where_ + ".text")
                    }
                    out.append(.object([("type", .string("text")), ("text", .string(text))]))
                case "refusal":
                    out.append(
                        .object([("type", .string("text")), ("text", .string(part["refusal"]?.stringValue ?? ""))]))
                case "input_image":
                    guard let url = part["image_url"]?.stringValue else {
                        throw .invalidRequest(
                            "'\(where_).image_url' must be a URL or data URL (file ids are not supported).",
                            param: where_ + ".image_url")
                    }
                    var image: [(String, JSONValue)] = [("url", .string(url))]
                    if let detail = part["detail"]?.stringValue { image.append(("detail", .string(detail))) }
                    out.append(.object([("type", .string("image_url")), ("image_url", .object(image))]))
                default:
                    throw .invalidRequest(
                        "'\(where_).type' must be input_text, input_image or output_text.", param: where_ + ".type")
                }
            }
            // An assistant turn is text in Chat Completions.
            if role == "assistant" {
                return .object([
                    ("role", .string(role)), ("content", .string(out.compactMap { $0["text"]?.stringValue }.joined())),
                ])
            }
            return .object([("role", .string(role)), ("content", .array(out))])
        default:
            throw .invalidRequest("'\(param).content' must be a string or a list of parts.", param: param + ".content")
        }
    }

    /// Every tool output answers a call made earlier in the conversation.
    static func checkToolOutputs(_ messages: [JSONValue]) throws(GatewayError) {
        var calls: Set<String> = []
        for message in messages {
            for call in message["tool_calls"]?.arrayValue ?? [] {
                if let id = call["id"]?.stringValue { calls.insert(id) }
            }
            if message["role"]?.stringValue == "tool", let id = message["tool_call_id"]?.stringValue,
                !calls.contains(id)
            {
                throw .invalidRequest(
                    "No tool call found for function call output with call_id \(id.prefix(64)).", param: "input")
            }
        }
    }

    // MARK: tools and format

    static func tools(_ value: JSONValue) throws(GatewayError) -> JSONValue {
        guard let list = value.arrayValue else { throw .invalidRequest("'tools' must be a list.", param: "tools") }
        var out: [JSONValue] = []
        for (index, tool) in list.enumerated() {
            let type = tool["type"]?.stringValue ?? ""
            guard type == "function" else {
                throw .invalidRequest(
                    "Tool type '\(type.prefix(40))' is not supported by this gateway: only function tools.",
                    param: "tools[\(index)].type")
            }
            guard let name = tool["name"]?.stringValue else {
                throw .invalidRequest("'tools[\(index)].name' must be a string.", param: "tools[\(index)].name")
            }
            var function: [(String, JSONValue)] = [("name", .string(name))]
            for key in ["description", "parameters", "strict"] {
                if let value = tool[key], value != .null { function.append((key, value)) }
            }
            out.append(.object([("type", .string("function")), ("function", .object(function))]))
        }
        return .array(out)
    }

    static func toolChoice(_ value: JSONValue) throws(GatewayError) -> JSONValue {
        if let mode = value.stringValue, ["auto", "none", "required"].contains(mode) { return value }
        if value["type"]?.stringValue == "function", let name = value["name"]?.stringValue {
            return .object([("type", .string("function")), ("function", .object([("name", .string(name))]))])
        }
        throw .invalidRequest(
            "'tool_choice' must be auto, none, required or {type: function, name}.", param: "tool_choice")
    }

    static func responseFormat(_ format: JSONValue) throws(GatewayError) -> JSONValue? {
        switch format["type"]?.stringValue {
        case "text": return nil
        case "json_object": return .object([("type", .string("json_object"))])
        case "json_schema":
            guard let name = format["name"]?.stringValue, let schema = format["schema"] else {
                throw .invalidRequest("'text.format' json_schema needs 'name' and 'schema'.", param: "text.format")
            }
            var spec: [(String, JSONValue)] = [("name", .string(name)), ("schema", schema)]
            for key in ["strict", "description"] { if let value = format[key] { spec.append((key, value)) } }
            return .object([("type", .string("json_schema")), ("json_schema", .object(spec))])
        default:
            throw .invalidRequest("'text.format.type' must be text, json_object or json_schema.", param: "text.format")
        }
    }

    // MARK: answers

    /// The output items of a Chat Completions answer's first choice: a message with its text, then one
    /// function call per tool call; and the status it means.
    public static func output(fromMessage message: JSONValue?, finishReason: String?, id: String) -> (
        [JSONValue], status: String, incomplete: String?
    ) {
        var items: [JSONValue] = []
        if let text = message?["content"]?.stringValue, !text.isEmpty {
            items.append(messageItem(id: "msg_" + id, text: text, status: "completed"))
        }
        for (index, call) in (message?["tool_calls"]?.arrayValue ?? []).enumerated() {
            items.append(
                functionItem(
                    id: "fc_\(id)_\(index)", callID: call["id"]?.stringValue ?? "call_\(index)",
                    name: call["function"]?["name"]?.stringValue ?? "",
                    arguments: call["function"]?["arguments"]?.stringValue ?? "", status: "completed"))
        }
        switch finishReason {
        case "length": return (items, "incomplete", "max_output_tokens")
        case "content_filter": return (items, "incomplete", "content_filter")
        default: return (items, "completed", nil)
        }
    }

    public static func messageItem(id: String, text: String, status: String) -> JSONValue {
        .object([
            ("id", .string(id)), ("type", .string("message")), ("status", .string(status)),
            ("role", .string("assistant")),
            (
                "content",
                .array([
                    .object([
                        ("type", .string("output_text")), ("text", .string(text)), ("annotations", .array([])),
                        ("logprobs", .array([])),
                    ])
                ])
            ),
        ])
    }

    public static func functionItem(id: String, callID: String, name: String, arguments: String, status: String)
        -> JSONValue
    {
        .object([
            ("id", .string(id)), ("type", .string("function_call")), ("status", .string(status)),
            ("call_id", .string(callID)), ("name", .string(name)), ("arguments", .string(arguments)),
        ])
    }

    /// Usage in the Responses API's names.
    public static func usage(_ usage: Usage) -> JSONValue {
        .object([
            ("input_tokens", .int(usage.promptTokens)),
            ("input_tokens_details", .object([("cached_tokens", .int(usage.cachedTokens))])),
            ("output_tokens", .int(usage.completionTokens)),
            ("output_tokens_details", .object([("reasoning_tokens", .int(0))])),
            ("total_tokens", .int(usage.promptTokens.saturatingAdd(usage.completionTokens))),
        ])
    }

    /// The response object around `output`, echoing the request's settings.
    public static func response(
        id: String, request: JSONValue, model: String, createdAt: Int, status: String, output: [JSONValue],
        incomplete: String?, usage: Usage?, error: JSONValue = .null
    ) -> JSONValue {
        func echo(_ key: String, _ fallback: JSONValue = .null) -> JSONValue {
            request[key].flatMap { $0 == .null ? nil : $0 } ?? fallback
        }
        return .object([
            ("id", .string(id)), ("object", .string("response")), ("created_at", .int(createdAt)),
            ("status", .string(status)), ("error", error),
            ("incomplete_details", incomplete.map { .object([("reason", .string($0))]) } ?? .null),
            ("instructions", echo("instructions")), ("max_output_tokens", echo("max_output_tokens")),
            ("model", .string(model)), ("output", .array(output)),
            ("parallel_tool_calls", echo("parallel_tool_calls", .bool(true))),
            ("previous_response_id", echo("previous_response_id")),
            ("reasoning", .object([("effort", .null), ("summary", .null)])), ("store", echo("store", .bool(true))),
            ("temperature", echo("temperature", .number("1.0"))),
            ("text", .object([("format", request["text"]?["format"] ?? .object([("type", .string("text"))]))])),
            ("tool_choice", echo("tool_choice", .string("auto"))), ("tools", echo("tools", .array([]))),
            ("top_p", echo("top_p", .number("1.0"))), ("truncation", echo("truncation", .string("disabled"))),
            ("usage", usage.map(ResponsesAPI.usage) ?? .null), ("user", echo("user")),
            ("metadata", echo("metadata", .object([]))),
        ])
    }

    /// A whole Chat Completions answer as a response object.
    public static func response(
        fromCompletion json: JSONValue, id: String, request: JSONValue, model: String, createdAt: Int, usage: Usage?
    ) -> JSONValue {
        let choice = json["choices"]?.arrayValue?.first
        let (items, status, incomplete) = output(
            fromMessage: choice?["message"], finishReason: choice?["finish_reason"]?.stringValue,
            id: String(id.dropFirst("resp_".count).prefix(24)))
        return response(
            id: id, request: request, model: model, createdAt: createdAt, status: status, output: items,
            incomplete: incomplete, usage: usage)
    }

    /// The conversation a stored response continues with: its input then its output, as Chat Completions
    /// messages.
    public static func conversation(input: [JSONValue], output: [JSONValue]) -> [JSONValue] {
        var messages = input
        var calls: [JSONValue] = []
        var text = ""
        for item in output {
            switch item["type"]?.stringValue {
            case "message":
                text += (item["content"]?.arrayValue ?? []).compactMap { $0["text"]?.stringValue }.joined()
            case "function_call":
                calls.append(
                    .object([
                        ("id", item["call_id"] ?? .string("")), ("type", .string("function")),
                        (
                            "function",
                            .object([
                                ("name", item["name"] ?? .string("")), ("arguments", item["arguments"] ?? .string("")),
                            ])
                        ),
                    ]))
            default: continue
            }
        }
        var assistant: [(String, JSONValue)] = [
            ("role", .string("assistant")), ("content", text.isEmpty ? .null : .string(text)),
        ]
        if !calls.isEmpty { assistant.append(("tool_calls", .array(calls))) }
        if !text.isEmpty || !calls.isEmpty { messages.append(.object(assistant)) }
        return messages
    }
}
