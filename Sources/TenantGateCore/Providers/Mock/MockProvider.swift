/// The built-in `mock` backend: a deterministic reply with realistic usage, streamed in several chunks.
public enum MockProvider {
    /// The reply text for a request (depends only on the messages).
    public static func replyText(for request: ChatRequest) -> String {
        let lastUser = request.messages.last(where: { $0["role"]?.stringValue == "user" })
        var said = ""
        switch lastUser?["content"] {
        case .string(let s)?: said = s
        case .array(let parts)?: said = parts.compactMap { $0["text"]?.stringValue }.joined(separator: " ")
        default: break
        }
        let words = said.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
        let echo = words.prefix(12).joined(separator: " ")
        var text = "This is TenantGate's mock backend. You wrote \(words.count) words"
        text += echo.isEmpty ? "." : ", starting with: \"\(echo)\"."
        if let maxTokens = request.maxTokens {
            let limit = maxTokens * 4
            if text.utf8.count > limit {
                text = String(decoding: Array(text.utf8.prefix(limit)), as: UTF8.self)
            }
        }
        return text
    }

    /// Usage numbers for `request` answered with `reply`.
    public static func usage(for request: ChatRequest, reply: String) -> Usage {
        Usage(promptTokens: TokenEstimate.prompt(request.promptText), completionTokens: TokenEstimate.text(reply))
    }

    /// The reply cut into `count` roughly equal pieces on word boundaries.
    public static func chunks(_ reply: String, count: Int = 6) -> [String] {
        let words = reply.split(separator: " ", omittingEmptySubsequences: false)
        let per = max(1, (words.count + count - 1) / count)
        var out: [String] = []
        var i = 0
        while i < words.count {
            let end = min(words.count, i + per)
            var piece = words[i..<end].joined(separator: " ")
            if end < words.count { piece += " " }
            out.append(piece)
            i = end
        }
        return out
    }
}

extension MockProvider {
    /// A deterministic unit vector of `dimensions` floats for `text`: the sum of one pseudo-random vector
    /// per content word (`SemanticCache.contentWords`), normalized. Texts with the same content words point
    /// the same way whatever their order; each different word moves the vector (a bag of words, enough to
    /// demonstrate similarity).
    public static func embedding(_ text: String, dimensions: Int = 16) -> [Double] {
        var values = [Double](repeating: 0, count: dimensions)
        let words = SemanticCache.contentWords(text)
        for word in words.isEmpty ? [text] : words {
            var state: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in word.utf8 {
                state ^= UInt64(byte)
                state &*= 0x0000_0100_0000_01B3
            }
            for i in 0..<dimensions {
                state ^= state >> 33
                state &*= 0xff51_afd7_ed55_8ccd
                state ^= state >> 29
                values[i] += Double(Int64(bitPattern: state % 2_000_001) - 1_000_000) / 1_000_000
            }
        }
        let norm = values.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return norm > 0 ? values.map { $0 / norm } : values
    }
}

/// The built-in `mock` backend as a provider: it answers in process, streams in several chunks.
public struct MockChatProvider: LocalChatProvider, LocalEmbeddingsProvider {
    /// Creates the provider.
    public init() {}

    public func answer(_ call: ProviderCall) -> (answer: ProviderAnswer, stream: [StreamPiece]) {
        let reply = MockProvider.replyText(for: call.chat)
        let usage = MockProvider.usage(for: call.chat, reply: reply)
        // Cut to the request's max_tokens, the answer says so, as real backends do.
        let finish = call.chat.maxTokens.map { reply.utf8.count >= $0 * 4 } == true ? "length" : "stop"
        let chunks = ChunkFactory(id: call.completionID, model: call.model.name, created: call.created)
        guard call.chat.stream else {
            let body = JSONValue.object([
                ("id", .string(call.completionID)), ("object", .string("chat.completion")),
                ("created", .int(call.created)), ("model", .string(call.model.name)),
                (
                    "choices",
                    .array([
                        .object([
                            ("index", .int(0)),
                            ("message", .object([("role", .string("assistant")), ("content", .string(reply))])),
                            ("finish_reason", .string(finish)),
                        ])
                    ])
                ),
                ("usage", usage.openAI),
            ])
            return (.chat(body, raw: nil, usage: usage), [])
        }
        var pieces: [StreamPiece] = [
            .chunk(chunks.delta(.object([("role", .string("assistant")), ("content", .string(""))])), raw: nil)
        ]
        for piece in MockProvider.chunks(reply) {
            pieces.append(.chunk(chunks.delta(.object([("content", .string(piece))])), raw: nil))
        }
        pieces.append(.chunk(chunks.delta(.object([]), finish: finish), raw: nil))
        pieces.append(.end)
        return (.chat(.null, raw: nil, usage: usage), pieces)
    }

    public func embeddings(_ embed: EmbeddingsRequest, model: ModelConfig) -> (body: JSONValue, usage: Usage) {
        let data: [JSONValue] = embed.texts.enumerated().map { index, text in
            .object([
                ("object", .string("embedding")), ("index", .int(index)),
                ("embedding", .array(MockProvider.embedding(text).map { .number(String($0)) })),
            ])
        }
        let tokens = embed.texts.reduce(embed.tokenIDs) { $0.saturatingAdd(TokenEstimate.text($1)) }
        let body = JSONValue.object([
            ("object", .string("list")), ("data", .array(data)), ("model", .string(model.name)),
            ("usage", .object([("prompt_tokens", .int(tokens)), ("total_tokens", .int(tokens))])),
        ])
        return (body, Usage(promptTokens: tokens, completionTokens: 0))
    }
}
