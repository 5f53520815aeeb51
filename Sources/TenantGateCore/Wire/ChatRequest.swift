/// A validated OpenAI Chat Completions request; `body` is forwarded with only the model rewritten.
public struct ChatRequest: Sendable {
    /// The model the client asked for (nil: the tenant's default).
    public let model: String?
    public let stream: Bool
    /// `stream_options.include_usage`.
    public let includeUsage: Bool
    public let maxTokens: Int?
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
                guard let n = v.intValue, n >= 1 else {
                    throw GatewayError.invalidRequest("'\(field)' must be a positive integer.", param: field)
                }
                maxTokens = n
            }
        }
        for field in ["temperature", "top_p", "presence_penalty", "frequency_penalty"] {
            if let v = json[field], v != .null, v.doubleValue == nil {
                throw GatewayError.invalidRequest("'\(field)' must be a number.", param: field)
            }
        }
        var user: String?
        if let u = json["user"], u != .null {
            guard let s = u.stringValue else {
                throw GatewayError.invalidRequest("'user' must be a string.", param: "user")
            }
            user = s
        }
        return ChatRequest(
            model: model, stream: stream, includeUsage: includeUsage, maxTokens: maxTokens, user: user,
            messages: messages, body: json)
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

    /// Creates usage numbers.
    public init(promptTokens: Int, completionTokens: Int, cachedTokens: Int = 0, cacheWriteTokens: Int = 0) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.cachedTokens = cachedTokens
        self.cacheWriteTokens = cacheWriteTokens
    }

    /// Reads OpenAI's `usage` object.
    public init?(openAI json: JSONValue?) {
        guard let json, let p = json["prompt_tokens"]?.intValue else { return nil }
        promptTokens = p
        completionTokens = json["completion_tokens"]?.intValue ?? 0
        cachedTokens = json["prompt_tokens_details"]?["cached_tokens"]?.intValue ?? 0
        cacheWriteTokens = 0
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
