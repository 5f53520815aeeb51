/// Anthropic Messages API answers translated to OpenAI Chat Completions (whole messages and streams).
public enum AnthropicResponse {
    /// OpenAI's `finish_reason` for Anthropic's `stop_reason`.
    public static func finishReason(_ stopReason: String?) -> String? {
        switch stopReason {
        case nil: return nil
        case "max_tokens"?: return "length"
        case "tool_use"?: return "tool_calls"
        case "refusal"?: return "content_filter"
        default: return "stop"  // end_turn, stop_sequence, pause_turn
        }
    }

    /// A `message` object as a `chat.completion`, with its usage.
    public static func completion(_ message: JSONValue, id: String, model: String, created: Int) -> (JSONValue, Usage?)
    {
        var text = ""
        var calls: [JSONValue] = []
        for block in message["content"]?.arrayValue ?? [] {
            switch block["type"]?.stringValue {
            case "text": text += block["text"]?.stringValue ?? ""
            case "tool_use":
                calls.append(
                    .object([
                        ("id", .string(block["id"]?.stringValue ?? "")), ("type", .string("function")),
                        (
                            "function",
                            .object([
                                ("name", .string(block["name"]?.stringValue ?? "")),
                                ("arguments", .string((block["input"] ?? .object([])).jsonString)),
                            ])
                        ),
                    ]))
            default: break  // thinking and other blocks have no Chat Completions counterpart
            }
        }
        var reply: [(String, JSONValue)] = [
            ("role", .string("assistant")), ("content", text.isEmpty && !calls.isEmpty ? .null : .string(text)),
        ]
        if !calls.isEmpty { reply.append(("tool_calls", .array(calls))) }
        let usage = Usage(anthropic: message["usage"])
        var out: [(String, JSONValue)] = [
            ("id", .string(id)), ("object", .string("chat.completion")), ("created", .int(created)),
            ("model", .string(model)),
            (
                "choices",
                .array([
                    .object([
                        ("index", .int(0)), ("message", .object(reply)),
                        ("finish_reason", .string(finishReason(message["stop_reason"]?.stringValue) ?? "stop")),
                    ])
                ])
            ),
        ]
        if let usage { out.append(("usage", usage.openAI)) }
        return (.object(out), usage)
    }
}

extension Usage {
    /// Reads Anthropic's `usage`: prompt tokens are input plus cache reads and writes.
    public init?(anthropic json: JSONValue?) {
        guard let json, let given = json["input_tokens"]?.intValue else { return nil }
        let input = Bounds.reportedTokens(given)
        let read = Bounds.reportedTokens(json["cache_read_input_tokens"]?.intValue)
        let write = Bounds.reportedTokens(json["cache_creation_input_tokens"]?.intValue)
        self.init(
            promptTokens: input + read + write, completionTokens: json["output_tokens"]?.intValue ?? 0,
            cachedTokens: read, cacheWriteTokens: write)
    }

    /// Anthropic's `usage` object.
    public var anthropic: JSONValue {
        .object([
            ("input_tokens", .int(max(0, promptTokens - cachedTokens - cacheWriteTokens))),
            ("cache_creation_input_tokens", .int(cacheWriteTokens)), ("cache_read_input_tokens", .int(cachedTokens)),
            ("output_tokens", .int(completionTokens)),
        ])
    }
}

/// Turns Anthropic stream events (`message_start`, `content_block_*`, `message_delta`, `message_stop`,
/// `ping`, `error`) into `chat.completion.chunk` objects.
public struct AnthropicStreamTranslator: Sendable {
    let chunks: ChunkFactory
    private var input = 0
    private var cacheRead = 0
    private var cacheWrite = 0
    private var output = 0
    private var started = false
    /// Tool-call index (OpenAI) by content block index (Anthropic).
    private var toolIndex: [Int: Int] = [:]
    /// `message_stop` arrived.
    public private(set) var finished = false
    /// The message of an `error` event, if one arrived.
    public private(set) var errorMessage: String?

    /// A translator whose chunks carry `id`, `model` and `created`.
    public init(id: String, model: String, created: Int) {
        chunks = ChunkFactory(id: id, model: model, created: created)
    }

    /// Usage so far (complete once `message_delta` arrived).
    public var usage: Usage? {
        guard started else { return nil }
        return Usage(
            promptTokens: input + cacheRead + cacheWrite, completionTokens: output, cachedTokens: cacheRead,
            cacheWriteTokens: cacheWrite)
    }

    /// The chunks for one event's JSON data.
    public mutating func feed(_ data: JSONValue) -> [JSONValue] {
        switch data["type"]?.stringValue {
        case "message_start":
            started = true
            read(data["message"]?["usage"])
            return [chunk(.object([("role", .string("assistant")), ("content", .string(""))]))]
        case "content_block_start":
            let index = data["index"]?.intValue ?? 0
            let block = data["content_block"]
            if block?["type"]?.stringValue == "tool_use" {
                let n = toolIndex.count
                toolIndex[index] = n
                let call = JSONValue.object([
                    ("index", .int(n)), ("id", .string(block?["id"]?.stringValue ?? "")), ("type", .string("function")),
                    (
                        "function",
                        .object([
                            ("name", .string(block?["name"]?.stringValue ?? "")), ("arguments", .string("")),
                        ])
                    ),
                ])
                return [chunk(.object([("tool_calls", .array([call]))]))]
            }
            if let text = block?["text"]?.stringValue, !text.isEmpty {
                return [chunk(.object([("content", .string(text))]))]
            }
            return []
        case "content_block_delta":
            let delta = data["delta"]
            switch delta?["type"]?.stringValue {
            case "text_delta":
                guard let text = delta?["text"]?.stringValue, !text.isEmpty else { return [] }
                return [chunk(.object([("content", .string(text))]))]
            case "input_json_delta":
                guard let n = toolIndex[data["index"]?.intValue ?? -1],
                    let partial = delta?["partial_json"]?.stringValue, !partial.isEmpty
                else { return [] }
                let call = JSONValue.object([
                    ("index", .int(n)), ("function", .object([("arguments", .string(partial))])),
                ])
                return [chunk(.object([("tool_calls", .array([call]))]))]
            default: return []
            }
        case "message_delta":
            read(data["usage"])
            guard let reason = AnthropicResponse.finishReason(data["delta"]?["stop_reason"]?.stringValue) else {
                return []
            }
            return [chunk(.object([]), finish: reason)]
        case "message_stop":
            finished = true
            return []
        case "error":
            errorMessage = data["error"]?["message"]?.stringValue ?? "the upstream stream reported an error"
            return []
        default: return []  // ping, content_block_stop, unknown future events
        }
    }

    /// The usage-only chunk OpenAI sends last when `include_usage` is set.
    public func usageChunk(_ usage: Usage) -> JSONValue { chunks.usage(usage) }

    private mutating func read(_ usage: JSONValue?) {
        guard let usage else { return }
        // message_delta counts are cumulative; input counts appear in message_start (and newer deltas).
        if let v = usage["input_tokens"]?.intValue { input = Bounds.reportedTokens(v) }
        if let v = usage["cache_read_input_tokens"]?.intValue { cacheRead = Bounds.reportedTokens(v) }
        if let v = usage["cache_creation_input_tokens"]?.intValue { cacheWrite = Bounds.reportedTokens(v) }
        if let v = usage["output_tokens"]?.intValue { output = Bounds.reportedTokens(v) }
    }

    private func chunk(_ delta: JSONValue, finish: String? = nil) -> JSONValue {
        chunks.delta(delta, finish: finish)
    }
}
