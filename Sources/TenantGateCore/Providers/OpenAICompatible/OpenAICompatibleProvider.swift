/// OpenAI, vLLM, Ollama and every other backend that speaks Chat Completions: the request goes out with
/// only the model (and the reserved completion cap) rewritten, answers come back as they are.
public struct OpenAICompatibleProvider: RemoteChatProvider, EmbeddingsProvider {
    /// Creates the provider.
    public init() {}

    public func request(_ call: ProviderCall) throws(GatewayError) -> ProviderRequest {
        if let kinds = call.messages?.nativeOnly, !kinds.isEmpty {
            throw GatewayError.invalidRequest(
                "Content blocks of type \(kinds.joined(separator: ", ")) need a model on an Anthropic backend; '\(call.model.name)' is not."
            )
        }
        var body = call.chat.upstreamBody(for: call.model)
        if call.chat.stream {
            // Always ask for usage so streams are accounted exactly; the writer drops the extra chunk
            // unless the client asked for it.
            let options = (call.chat.body["stream_options"] ?? .object([])).setting("include_usage", .bool(true))
            body = body.setting("stream_options", options)
        }
        return ProviderRequest(url: call.backend.baseURL + "/chat/completions", body: body)
    }

    public func answer(_ json: JSONValue, raw: [UInt8], call: ProviderCall) throws(GatewayError) -> ProviderAnswer {
        // Every choice an object with a message object: what clients index into without checking.
        guard let choices = json["choices"]?.arrayValue, !choices.isEmpty,
            choices.allSatisfy({ $0["message"]?.objectValue != nil })
        else { throw .upstreamError("the upstream's answer is not a chat completion") }
        return .chat(json, raw: raw, usage: Usage(openAI: json["usage"]))
    }

    public func streamDecoder(_ call: ProviderCall) -> any StreamDecoder {
        OpenAIStreamDecoder(chunks: ChunkFactory(id: call.completionID, model: call.model.name, created: call.created))
    }

    public func embeddingsRequest(_ embed: EmbeddingsRequest, model: ModelConfig, backend: BackendConfig)
        -> ProviderRequest
    {
        ProviderRequest(
            url: backend.baseURL + "/embeddings", body: embed.body.setting("model", .string(model.upstreamModel)))
    }
}

/// Chat Completions chunks as they come; the stream ends at `[DONE]`.
public struct OpenAIStreamDecoder: StreamDecoder {
    let chunks: ChunkFactory
    public private(set) var ended = false
    public private(set) var usage: Usage?
    public private(set) var streamedTextBytes = 0
    /// The upstream's own error event (`{"error": {"message": …}}`), if one came.
    public private(set) var failure: String?
    public var missingEnd: String { "the upstream stream ended without [DONE]" }

    /// Creates a decoder whose usage chunk carries the ids of `chunks`.
    public init(chunks: ChunkFactory) { self.chunks = chunks }

    public mutating func decode(_ event: SSEEvent) -> [StreamPiece] {
        guard !ended else { return [] }
        if event.data == "[DONE]" {
            ended = true
            return [.end]
        }
        // Data that is not JSON would make every OpenAI SDK raise mid-stream: it is left out.
        guard let json = try? JSONParser.parse(event.data) else { return [] }
        if let error = json["error"], error.objectValue != nil {
            // The gateway ends the stream with its own error event (with a code SDKs recognise).
            failure = String((error["message"]?.stringValue ?? "an error event").prefix(300))
            return []
        }
        streamedTextBytes += json.chatTextBytes
        if let reported = Usage(openAI: json["usage"]) { usage = reported }
        return [.chunk(json, raw: event.data)]
    }

    public func usageChunk(_ usage: Usage) -> JSONValue { chunks.usage(usage) }
}

extension JSONValue {
    /// Bytes of `delta.content` over the choices of a Chat Completions chunk.
    public var chatTextBytes: Int {
        var total = 0
        for choice in self["choices"]?.arrayValue ?? [] {
            total = total.saturatingAdd(choice["delta"]?["content"]?.stringValue?.utf8.count ?? 0)
        }
        return total
    }
}
