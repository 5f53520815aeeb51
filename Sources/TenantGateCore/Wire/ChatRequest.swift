/// A validated OpenAI Chat Completions request; `body` is forwarded with only the model rewritten.
public struct ChatRequest: Sendable {
    /// The model the client asked for (nil: the tenant's default).
    public let model: String?
    public let stream: Bool
    /// `stream_options.include_usage`.
    public let includeUsage: Bool
    /// The client's completion cap (`max_tokens` or `max_completion_tokens`), if given.
    public let maxTokens: Int?
    /// `n`: completions asked for (1 when not given).
    public let choices: Int
    /// Prompt tokens the upstream bills for parts the Chat Completions body does not carry (an Anthropic
    /// client's document blocks kept for a native call), added to `promptBound`.
    public var extraPromptTokens = 0
    /// The `user` field (end user), if given.
    public let user: String?
    /// The messages, as sent.
    public let messages: [JSONValue]
    /// The whole request object.
    public let body: JSONValue

    static let roles: Set<String> = ["system", "developer", "user", "assistant", "tool", "function"]

    /// Parses and validates raw bytes.
    public static func parse(_ bytes: [UInt8]) throws(GatewayError) -> ChatRequest {
        let json = try JSONParser.parseRequestBody(bytes)
        return try validate(json)
    }

    /// Validates a parsed body.
    public static func validate(_ json: JSONValue) throws(GatewayError) -> ChatRequest {
        let model = try ModelSelection.requested(in: json)
        guard let messages = json["messages"]?.arrayValue else {
            throw GatewayError.invalidRequest("'messages' is required and must be an array.", param: "messages")
        }
        guard !messages.isEmpty else {
            throw GatewayError.invalidRequest("'messages' must not be empty.", param: "messages")
        }
        for (i, message) in messages.enumerated() {
            guard case .object = message, let role = message["role"]?.stringValue else {
                throw GatewayError.invalidRequest(
                    "messages[\(i)] must be an object with a string 'role'.", param: "messages[\(i)].role")
            }
            guard roles.contains(role) else {
                throw GatewayError.invalidRequest(
                    "messages[\(i)].role must be one of system, developer, user, assistant, tool.",
                    param: "messages[\(i)].role")
            }
            switch message["content"] {
            case .string?, .array?, .null?, nil: break
            default:
                throw GatewayError.invalidRequest(
                    "messages[\(i)].content must be a string or an array of content parts.",
                    param: "messages[\(i)].content")
            }
        }
        var stream = false
        if let s = json["stream"], s != .null {
            guard let b = s.boolValue else {
                throw GatewayError.invalidRequest("'stream' must be a boolean.", param: "stream")
            }
            stream = b
        }
        var includeUsage = false
        if let options = json["stream_options"], options != .null {
            guard case .object = options else {
                throw GatewayError.invalidRequest("'stream_options' must be an object.", param: "stream_options")
            }
            if let u = options["include_usage"] {
                guard let b = u.boolValue else {
                    throw GatewayError.invalidRequest(
                        "'stream_options.include_usage' must be a boolean.", param: "stream_options.include_usage")
                }
                includeUsage = b
            }
        }
        var maxTokens: Int?
        for field in ["max_tokens", "max_completion_tokens"] {
            if let v = json[field], v != .null {
                guard case .number(let text) = v, let n = Int(text), n >= 1 else {
                    throw GatewayError.invalidRequest("'\(field)' must be a positive integer.", param: field)
                }
                if let other = maxTokens, other != n {
                    throw GatewayError.invalidRequest(
                        "'max_tokens' and 'max_completion_tokens' differ; give one.", param: field)
                }
                maxTokens = n
            }
        }
        var choices = 1
        if let v = json["n"], v != .null {
            guard case .number(let text) = v, let n = Int(text), (1...Bounds.maxChoices).contains(n) else {
                throw GatewayError.invalidRequest(
                    "'n' must be an integer from 1 to \(Bounds.maxChoices).", param: "n")
            }
            choices = n
        }
        for field in ["temperature", "top_p", "presence_penalty", "frequency_penalty"] {
            if let v = json[field], v != .null, v.doubleValue == nil {
                throw GatewayError.invalidRequest("'\(field)' must be a number.", param: field)
            }
        }
        // Tools of the wrong shape would reach the upstream past the `tools` flag (which looks for a
        // non-empty list): refused here instead.
        for field in ["tools", "functions"] {
            guard let v = json[field], v != .null else { continue }
            guard let list = v.arrayValue,
                list.allSatisfy({ if case .object = $0 { return true } else { return false } })
            else {
                throw GatewayError.invalidRequest("'\(field)' must be a list of objects.", param: field)
            }
        }
        for field in ["tool_choice", "function_call"] {
            guard let v = json[field], v != .null else { continue }
            switch v {
            case .string, .object: break
            default: throw GatewayError.invalidRequest("'\(field)' must be a string or an object.", param: field)
            }
        }
        let user = try ChatRequest.user(json["user"], field: "user")
        return ChatRequest(
            model: model, stream: stream, includeUsage: includeUsage, maxTokens: maxTokens, choices: choices,
            user: user, messages: messages, body: json)
    }

    /// A client's end-user id (`user`, `metadata.user_id`): nil, or a string that `Bounds.isIdentifier`
    /// accepts (it is stored per execution, logged and may fill `{{user}}` in a system prompt).
    public static func user(_ value: JSONValue?, field: String) throws(GatewayError) -> String? {
        guard let value, value != .null else { return nil }
        guard let s = value.stringValue, Bounds.isIdentifier(s) else {
            throw GatewayError.invalidRequest(
                "'\(field)' must be a string of 1 to \(Bounds.maxUserBytes) bytes without control characters.",
                param: field)
        }
        return s
    }

    /// The completion cap sent upstream and reserved for `model`: the client's, else the catalog's
    /// `max_tokens`, else `Reservation.defaultCompletionCap`, never above the model's cap.
    public func completionCap(for model: ModelConfig) -> Int {
        let cap = model.maxTokens ?? Bounds.maxCompletionTokens
        return min(maxTokens ?? model.maxTokens ?? Reservation.defaultCompletionCap, cap)
    }

    /// The same request with its completion cap lowered to `cap` (a budget's remainder); the upstream
    /// body gets it from `completionCap(for:)`.
    public func capped(at cap: Int) -> ChatRequest {
        var out = ChatRequest(
            model: model, stream: stream, includeUsage: includeUsage, maxTokens: min(maxTokens ?? cap, cap),
            choices: choices, user: user, messages: messages, body: body)
        out.extraPromptTokens = extraPromptTokens
        return out
    }

    /// Refuses a client cap above the model's (catalog `max_tokens`, else `Bounds.maxCompletionTokens`).
    public func checkCap(for model: ModelConfig, field: String = "max_tokens") throws(GatewayError) {
        let cap = model.maxTokens ?? Bounds.maxCompletionTokens
        if let asked = maxTokens, asked > cap {
            let name =
                body["max_completion_tokens"] != nil && body["max_tokens"] == nil ? "max_completion_tokens" : field
            throw GatewayError.invalidRequest(
                "'\(name)' is \(asked), above the \(cap) tokens model '\(model.name)' allows.", param: name)
        }
    }

    /// The body sent to an OpenAI-compatible upstream: upstream model name and the completion cap that was
    /// reserved (in the field the client used, else the catalog's `max_tokens_field`).
    public func upstreamBody(for model: ModelConfig) -> JSONValue {
        var out = body.setting("model", .string(model.upstreamModel))
        let cap = JSONValue.int(completionCap(for: model))
        let fields = ["max_tokens", "max_completion_tokens"].filter { body[$0] != nil && body[$0] != .null }
        for field in fields.isEmpty ? [model.maxTokensField] : fields { out = out.setting(field, cap) }
        return out
    }

    /// An upper bound of the prompt tokens the upstream bills: text byte for byte (a byte-level BPE
    /// token is at least one byte) plus 8 per message, tool definitions, tool calls, response formats and
    /// non-text parts by their JSON bytes, each image at `imageTokens`, plus `extraPromptTokens`.
    public func promptBound(imageTokens: Int) -> Int {
        var total = extraPromptTokens.saturatingAdd(8.saturatingMultiply(messages.count))
        for message in messages {
            switch message["content"] {
            case .string(let s)?: total = total.saturatingAdd(s.utf8.count)
            case .array(let parts)?:
                for part in parts {
                    if let text = part["text"]?.stringValue {
                        total = total.saturatingAdd(text.utf8.count)
                    } else if part["type"]?.stringValue == "image_url" {
                        total = total.saturatingAdd(imageTokens)
                    } else {
                        total = total.saturatingAdd(part.jsonString.utf8.count)
                    }
                }
            default: break
            }
            for field in ["tool_calls", "function_call", "name"] {
                if let v = message[field] { total = total.saturatingAdd(v.jsonString.utf8.count) }
            }
        }
        for field in ["tools", "functions", "response_format", "tool_choice"] {
            if let v = body[field], v != .null { total = total.saturatingAdd(v.jsonString.utf8.count) }
        }
        return total
    }

    /// Whether a message carries media the upstream would have to fetch: an image not inline as a `data:`
    /// URL, or a part of any other kind (video, audio, file, unknown) that holds a URL.
    public var hasRemoteMedia: Bool {
        messages.contains { message in
            (message["content"]?.arrayValue ?? []).contains { part in
                switch part["type"]?.stringValue {
                case "text"?, "input_audio"?: return false
                case "image_url"?:
                    let url = part["image_url"]?["url"]?.stringValue ?? part["image_url"]?.stringValue ?? ""
                    return !url.trimmingASCII().lowercased().hasPrefix("data:")
                default: return ChatRequest.holdsURL(part)
                }
            }
        }
    }

    /// Whether a string anywhere in `value` is a URL with a scheme (`http://`, `file://`, …).
    static func holdsURL(_ value: JSONValue) -> Bool {
        switch value {
        case .string(let text): return text.contains("://")
        case .array(let items): return items.contains(where: holdsURL)
        case .object(let members): return members.contains { holdsURL($0.1) }
        default: return false
        }
    }

    /// Whether `value` (an Anthropic body) holds a content block with a URL source anywhere (an image, a
    /// document, inside a tool result).
    public static func hasURLSource(_ value: JSONValue) -> Bool {
        switch value {
        case .object(let members):
            for (key, member) in members {
                if key == "source", member["type"]?.stringValue?.lowercased() == "url" || member["url"] != nil {
                    return true
                }
                if hasURLSource(member) { return true }
            }
            return false
        case .array(let items): return items.contains(where: hasURLSource)
        default: return false
        }
    }

    /// Whether the request offers tools or functions to the model.
    public var usesTools: Bool {
        for field in ["tools", "functions"] {
            if let list = body[field]?.arrayValue, !list.isEmpty { return true }
        }
        return false
    }

    /// The text of every message (string content and text parts), for estimates.
    public var promptText: [String] {
        messages.flatMap { message -> [String] in
            switch message["content"] {
            case .string(let s)?: return [s]
            case .array(let parts)?: return parts.compactMap { $0["text"]?.stringValue }
            default: return []
            }
        }
    }
}

/// Token usage reported by (or estimated for) an upstream call.
public struct Usage: Sendable, Equatable {
    public var promptTokens: Int
    public var completionTokens: Int
    /// Prompt tokens read from the provider's prompt cache (part of `promptTokens`).
    public var cachedTokens: Int
    /// Prompt tokens written to the provider's prompt cache (part of `promptTokens`; Anthropic).
    public var cacheWriteTokens: Int

    /// Creates usage numbers, each clamped to `0…Bounds.maxReportedTokens` (an upstream's report is not
    /// trusted to be sane).
    public init(promptTokens: Int, completionTokens: Int, cachedTokens: Int = 0, cacheWriteTokens: Int = 0) {
        self.promptTokens = Bounds.reportedTokens(promptTokens)
        self.completionTokens = Bounds.reportedTokens(completionTokens)
        self.cachedTokens = Bounds.reportedTokens(cachedTokens)
        self.cacheWriteTokens = Bounds.reportedTokens(cacheWriteTokens)
    }

    /// Reads OpenAI's `usage` object.
    public init?(openAI json: JSONValue?) {
        guard let json, let p = json["prompt_tokens"]?.intValue else { return nil }
        self.init(
            promptTokens: p, completionTokens: json["completion_tokens"]?.intValue ?? 0,
            cachedTokens: json["prompt_tokens_details"]?["cached_tokens"]?.intValue ?? 0)
    }

    /// OpenAI's `usage` object.
    public var openAI: JSONValue {
        var members: [(String, JSONValue)] = [
            ("prompt_tokens", .int(promptTokens)), ("completion_tokens", .int(completionTokens)),
            ("total_tokens", .int(promptTokens + completionTokens)),
        ]
        if cachedTokens > 0 {
            members.append(("prompt_tokens_details", .object([("cached_tokens", .int(cachedTokens))])))
        }
        return .object(members)
    }
}

/// A conservative token estimate used where no tokenizer runs: one token per 4 bytes, rounded up, plus framing.
public enum TokenEstimate {
    /// Tokens for the prompt texts (4 tokens of framing per message).
    public static func prompt(_ texts: [String]) -> Int {
        texts.reduce(0) { $0 + ($1.utf8.count + 3) / 4 + 4 }
    }

    /// Tokens for a piece of generated text.
    public static func text(_ s: String) -> Int { (s.utf8.count + 3) / 4 }
}
