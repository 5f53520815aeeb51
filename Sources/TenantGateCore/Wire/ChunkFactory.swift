/// Builds `chat.completion.chunk` objects of one stream (same id, model and creation time).
public struct ChunkFactory: Sendable {
    public let id: String
    public let model: String
    public let created: Int

    /// A factory for the stream `id`.
    public init(id: String, model: String, created: Int) {
        self.id = id
        self.model = model
        self.created = created
    }

    /// A chunk with one choice (`index`) carrying `delta` (and a finish reason on the last one).
    public func delta(_ delta: JSONValue, finish: String? = nil, index: Int = 0) -> JSONValue {
        wrap(
            .object([
                ("index", .int(index)), ("delta", delta), ("finish_reason", finish.map { .string($0) } ?? .null),
            ]))
    }

    /// A chunk carrying the one choice object `choice`.
    public func wrap(_ choice: JSONValue) -> JSONValue {
        .object([
            ("id", .string(id)), ("object", .string("chat.completion.chunk")), ("created", .int(created)),
            ("model", .string(model)), ("choices", .array([choice])),
        ])
    }

    /// The usage-only chunk OpenAI sends last when `stream_options.include_usage` is set.
    public func usage(_ usage: Usage) -> JSONValue {
        .object([
            ("id", .string(id)), ("object", .string("chat.completion.chunk")), ("created", .int(created)),
            ("model", .string(model)), ("choices", .array([])), ("usage", usage.openAI),
        ])
    }
}
