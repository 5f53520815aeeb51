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

    /// A chunk with one choice carrying `delta` (and a finish reason on the last one).
    public func delta(_ delta: JSONValue, finish: String? = nil) -> JSONValue {
        .object([
            ("id", .string(id)), ("object", .string("chat.completion.chunk")), ("created", .int(created)),
            ("model", .string(model)),
            (
                "choices",
                .array([
                    .object([
                        ("index", .int(0)), ("delta", delta), ("finish_reason", finish.map { .string($0) } ?? .null),
                    ])
                ])
            ),
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
