/// Turns `chat.completion.chunk` objects into Responses API stream events, in OpenAI's names and order:
/// `response.created`, `response.in_progress`, then per output item `response.output_item.added`
/// (`response.content_part.added`, `response.output_text.delta`… `.done`, `response.content_part.done` for
/// text; `response.function_call_arguments.delta`… `.done` for a function call) and
/// `response.output_item.done`, and at the end `response.completed` or `response.incomplete`; each event
/// carries its `sequence_number`. It keeps the whole response, for the final event and for storing.
public struct ResponsesStream: Sendable {
    let id: String
    let request: JSONValue
    let model: String
    let createdAt: Int
    private var sequence = 0
    private var started = false
    /// Finished output items, and the open one.
    private var items: [JSONValue] = []
    private enum Open: Sendable {
        case text(id: String, text: String)
        case call(id: String, tool: Int, callID: String, name: String, arguments: String)
    }
    private var open: Open?
    private var finishReason: String?
    /// The final response, once `finish` made it.
    public private(set) var final: JSONValue?

    public init(id: String, request: JSONValue, model: String, createdAt: Int) {
        self.id = id
        self.request = request
        self.model = model
        self.createdAt = createdAt
    }

    private var itemStem: String { String(id.dropFirst("resp_".count).prefix(24)) }

    private mutating func event(_ type: String, _ members: [(String, JSONValue)]) -> [UInt8] {
        let body = JSONValue.object([("type", .string(type))] + members + [("sequence_number", .int(sequence))])
        sequence += 1
        return SSEParser.frame(data: body.jsonString, event: type)
    }

    private func snapshot(status: String) -> JSONValue {
        ResponsesAPI.response(
            id: id, request: request, model: model, createdAt: createdAt, status: status, output: [],
            incomplete: nil, usage: nil)
    }

    private mutating func start() -> [UInt8] {
        guard !started else { return [] }
        started = true
        return event("response.created", [("response", snapshot(status: "in_progress"))])
            + event("response.in_progress", [("response", snapshot(status: "in_progress"))])
    }

    /// The events for one chunk.
    public mutating func feed(_ chunk: JSONValue) -> [UInt8] {
        var out = start()
        guard let choice = chunk["choices"]?.arrayValue?.first else { return out }
        if let reason = choice["finish_reason"]?.stringValue { finishReason = reason }
        let delta = choice["delta"]
        if let text = delta?["content"]?.stringValue, !text.isEmpty {
            if case .text(let itemID, let sofar) = open {
                open = .text(id: itemID, text: sofar + text)
                out += event(
                    "response.output_text.delta",
                    [
                        ("item_id", .string(itemID)), ("output_index", .int(items.count)), ("content_index", .int(0)),
                        ("delta", .string(text)), ("logprobs", .array([])),
                    ])
            } else {
                out += close()
                let itemID = "msg_\(itemStem)_\(items.count)"
                open = .text(id: itemID, text: text)
                out += event(
                    "response.output_item.added",
                    [
                        ("output_index", .int(items.count)),
                        (
                            "item",
                            .object([
                                ("id", .string(itemID)), ("type", .string("message")),
                                ("status", .string("in_progress")), ("role", .string("assistant")),
                                ("content", .array([])),
                            ])
                        ),
                    ])
                out += event(
                    "response.content_part.added",
                    [
                        ("item_id", .string(itemID)), ("output_index", .int(items.count)), ("content_index", .int(0)),
                        (
                            "part",
                            .object([
                                ("type", .string("output_text")), ("text", .string("")),
                                ("annotations", .array([])), ("logprobs", .array([])),
                            ])
                        ),
                    ])
                out += event(
                    "response.output_text.delta",
                    [
                        ("item_id", .string(itemID)), ("output_index", .int(items.count)), ("content_index", .int(0)),
                        ("delta", .string(text)), ("logprobs", .array([])),
                    ])
            }
        }
        for call in delta?["tool_calls"]?.arrayValue ?? [] {
            let tool = call["index"]?.intValue ?? 0
            var arguments = ""
            if case .call(let itemID, let openTool, let callID, let name, let sofar) = open, openTool == tool {
                arguments = call["function"]?["arguments"]?.stringValue ?? ""
                open = .call(id: itemID, tool: tool, callID: callID, name: name, arguments: sofar + arguments)
                if !arguments.isEmpty {
                    out += event(
                        "response.function_call_arguments.delta",
                        [
                            ("item_id", .string(itemID)), ("output_index", .int(items.count)),
                            ("delta", .string(arguments)),
                        ])
                }
                continue
            }
            out += close()
            let itemID = "fc_\(itemStem)_\(items.count)"
            let callID = call["id"]?.stringValue ?? "call_\(itemStem)_\(tool)"
            let name = call["function"]?["name"]?.stringValue ?? ""
            arguments = call["function"]?["arguments"]?.stringValue ?? ""
            open = .call(id: itemID, tool: tool, callID: callID, name: name, arguments: arguments)
            out += event(
                "response.output_item.added",
                [
                    ("output_index", .int(items.count)),
                    (
                        "item",
                        ResponsesAPI.functionItem(
                            id: itemID, callID: callID, name: name, arguments: "", status: "in_progress")
                    ),
                ])
            if !arguments.isEmpty {
                out += event(
                    "response.function_call_arguments.delta",
                    [("item_id", .string(itemID)), ("output_index", .int(items.count)), ("delta", .string(arguments))])
            }
        }
        return out
    }

    /// Closes the open item with its `.done` events.
    private mutating func close() -> [UInt8] {
        guard let current = open else { return [] }
        open = nil
        let index = items.count
        switch current {
        case .text(let itemID, let text):
            let item = ResponsesAPI.messageItem(id: itemID, text: text, status: "completed")
            items.append(item)
            return event(
                "response.output_text.done",
                [
                    ("item_id", .string(itemID)), ("output_index", .int(index)), ("content_index", .int(0)),
                    ("text", .string(text)), ("logprobs", .array([])),
                ])
                + event(
                    "response.content_part.done",
                    [
                        ("item_id", .string(itemID)), ("output_index", .int(index)), ("content_index", .int(0)),
                        ("part", item["content"]?.arrayValue?.first ?? .null),
                    ])
                + event("response.output_item.done", [("output_index", .int(index)), ("item", item)])
        case .call(let itemID, _, let callID, let name, let arguments):
            let item = ResponsesAPI.functionItem(
                id: itemID, callID: callID, name: name, arguments: arguments, status: "completed")
            items.append(item)
            return event(
                "response.function_call_arguments.done",
                [
                    ("item_id", .string(itemID)), ("output_index", .int(index)), ("name", .string(name)),
                    ("arguments", .string(arguments)),
                ])
                + event("response.output_item.done", [("output_index", .int(index)), ("item", item)])
        }
    }

    /// Closes the stream: the open item, then the final response. `beforeFinal` sees the response first
    /// (it is stored before the client can ask for it).
    public mutating func finish(usage: Usage?, beforeFinal: (JSONValue) -> Void = { _ in }) -> [UInt8] {
        var out = start() + close()
        let incomplete: String? =
            finishReason == "length" ? "max_output_tokens" : finishReason == "content_filter" ? "content_filter" : nil
        let status = incomplete == nil ? "completed" : "incomplete"
        let response = ResponsesAPI.response(
            id: id, request: request, model: model, createdAt: createdAt, status: status, output: items,
            incomplete: incomplete, usage: usage)
        final = response
        beforeFinal(response)
        out += event(incomplete == nil ? "response.completed" : "response.incomplete", [("response", response)])
        return out
    }

    /// A failed stream: an `error` event, then `response.failed`.
    public mutating func failure(_ error: GatewayError) -> [UInt8] {
        var out = start()
        out += event(
            "error", [("code", .string(error.code)), ("message", .string(error.message)), ("param", .null)])
        let failed = ResponsesAPI.response(
            id: id, request: request, model: model, createdAt: createdAt, status: "failed", output: items,
            incomplete: nil, usage: nil,
            error: .object([("code", .string(error.code)), ("message", .string(error.message))]))
        out += event("response.failed", [("response", failed)])
        return out
    }
}
