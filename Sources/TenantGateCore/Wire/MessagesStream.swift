/// Turns `chat.completion.chunk` objects into Anthropic stream events: `message_start`, `ping`,
/// `content_block_start` / `_delta` / `_stop` for text and tool calls, `message_delta` (stop reason and
/// usage) and `message_stop`.
public struct MessagesStream: Sendable {
    let id: String
    let model: String
    /// The prompt estimate reported in `message_start` (the exact count follows in `message_delta`).
    let inputEstimate: Int
    private var started = false
    /// The open content block: its Anthropic index and, for tool calls, the OpenAI tool index.
    private var open: (index: Int, tool: Int?)?
    private var nextIndex = 0
    private var finishReason: String?
    /// Text and tool-argument bytes streamed, for an output estimate when no usage arrives.
    public private(set) var streamedBytes = 0

    /// A stream for message `id` reporting `model`.
    public init(id: String, model: String, inputEstimate: Int) {
        self.id = id
        self.model = model
        self.inputEstimate = inputEstimate
    }

    /// SSE bytes for one chunk (usage-only chunks produce nothing; usage goes out in `finish`).
    public mutating func feed(_ chunk: JSONValue) -> [UInt8] {
        var out = start()
        guard let choice = chunk["choices"]?.arrayValue?.first else { return out }
        let delta = choice["delta"]
        if let text = delta?["content"]?.stringValue, !text.isEmpty {
            if open == nil || open?.tool != nil {
                out += closeBlock()
                out += openBlock(.object([("type", .string("text")), ("text", .string(""))]), tool: nil)
            }
            streamedBytes += text.utf8.count
            out += event(
                "content_block_delta",
                [
                    ("index", .int(open?.index ?? 0)),
                    ("delta", .object([("type", .string("text_delta")), ("text", .string(text))])),
                ])
        }
        for call in delta?["tool_calls"]?.arrayValue ?? [] {
            let toolIndex = call["index"]?.intValue ?? 0
            if open?.tool != toolIndex {
                out += closeBlock()
                let block = JSONValue.object([
                    ("type", .string("tool_use")), ("id", .string(call["id"]?.stringValue ?? "toolu_\(toolIndex)")),
                    ("name", .string(call["function"]?["name"]?.stringValue ?? "")), ("input", .object([])),
                ])
                out += openBlock(block, tool: toolIndex)
            }
            if let partial = call["function"]?["arguments"]?.stringValue, !partial.isEmpty {
                streamedBytes += partial.utf8.count
                out += event(
                    "content_block_delta",
                    [
                        ("index", .int(open?.index ?? 0)),
                        (
                            "delta",
                            .object([("type", .string("input_json_delta")), ("partial_json", .string(partial))])
                        ),
                    ])
            }
        }
        if let reason = choice["finish_reason"]?.stringValue { finishReason = reason }
        return out
    }

    /// The closing events: the open block's stop, `message_delta` with the stop reason and usage, `message_stop`.
    public mutating func finish(usage: Usage?) -> [UInt8] {
        var out = start()
        out += closeBlock()
        let used = usage ?? Usage(promptTokens: inputEstimate, completionTokens: (streamedBytes + 3) / 4)
        out += event(
            "message_delta",
            [
                (
                    "delta",
                    .object([
                        ("stop_reason", .string(MessagesAPI.stopReason(finishReason))), ("stop_sequence", .null),
                    ])
                ),
                ("usage", used.anthropic),
            ])
        out += event("message_stop", [])
        return out
    }

    /// An `error` event (mid-stream failure); the stream ends after it.
    public func failure(_ error: GatewayError) -> [UInt8] { MessagesStream.errorEvent(error) }

    /// The `error` event for `error`, whatever the stream's state.
    public static func errorEvent(_ error: GatewayError) -> [UInt8] {
        SSEParser.frame(data: MessagesAPI.errorBody(error).jsonString, event: "error")
    }

    private mutating func start() -> [UInt8] {
        guard !started else { return [] }
        started = true
        let message = JSONValue.object([
            ("id", .string(id)), ("type", .string("message")), ("role", .string("assistant")),
            ("model", .string(model)), ("content", .array([])), ("stop_reason", .null), ("stop_sequence", .null),
            ("usage", Usage(promptTokens: inputEstimate, completionTokens: 0).anthropic),
        ])
        return event("message_start", [("message", message)]) + event("ping", [])
    }

    private mutating func openBlock(_ block: JSONValue, tool: Int?) -> [UInt8] {
        let index = nextIndex
        nextIndex += 1
        open = (index, tool)
        return event("content_block_start", [("index", .int(index)), ("content_block", block)])
    }

    private mutating func closeBlock() -> [UInt8] {
        guard let block = open else { return [] }
        open = nil
        return event("content_block_stop", [("index", .int(block.index))])
    }

    private func event(_ name: String, _ members: [(String, JSONValue)]) -> [UInt8] {
        SSEParser.frame(data: JSONValue.object([("type", .string(name))] + members).jsonString, event: name)
    }
}
