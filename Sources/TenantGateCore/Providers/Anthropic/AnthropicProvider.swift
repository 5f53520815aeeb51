/// Anthropic's Messages API. An OpenAI client's request is translated both ways; an Anthropic client's
/// own body goes out natively (nothing lost in translation) and its answer comes back as it was sent.
public struct AnthropicProvider: RemoteChatProvider, TokenCountingProvider {
    /// Creates the provider.
    public init() {}

    public func request(_ call: ProviderCall) throws(GatewayError) -> ProviderRequest {
        let url = AnthropicRequest.url(baseURL: call.backend.baseURL)
        let cap = call.chat.completionCap(for: call.model)
        guard let messages = call.messages else {
            return ProviderRequest(
                url: url,
                body: try AnthropicRequest.body(call.chat, upstreamModel: call.model.upstreamModel, maxTokens: cap))
        }
        let body = MessagesAPI.nativeBody(
            messages.original, upstreamModel: call.model.upstreamModel, system: call.nativeSystem
        ).setting("max_tokens", .int(cap))
        // The body is in the client's API version and may use its beta features: say so upstream.
        var headers: [(name: String, value: String)] = []
        if let version = call.anthropicVersion { headers.append(("anthropic-version", version)) }
        if let beta = call.anthropicBeta { headers.append(("anthropic-beta", beta)) }
        return ProviderRequest(url: url, body: body, headers: headers)
    }

    public func answer(_ json: JSONValue, raw: [UInt8], call: ProviderCall) throws(GatewayError) -> ProviderAnswer {
        guard let content = json["content"]?.arrayValue, content.allSatisfy({ $0["type"]?.stringValue != nil })
        else { throw .upstreamError("the upstream's answer is not a message") }
        if call.messages != nil { return .native(raw, usage: Usage(anthropic: json["usage"])) }
        let (completion, usage) = AnthropicResponse.completion(
            json, id: call.completionID, model: call.model.name, created: call.created)
        return .chat(completion, raw: nil, usage: usage)
    }

    public func streamDecoder(_ call: ProviderCall) -> any StreamDecoder {
        AnthropicStreamDecoder(
            translator: AnthropicStreamTranslator(id: call.completionID, model: call.model.name, created: call.created),
            native: call.messages != nil && call.passthrough)
    }

    public func countTokensRequest(
        _ messages: MessagesRequest, model: ModelConfig, backend: BackendConfig, anthropicBeta: String?
    ) -> ProviderRequest {
        let body = MessagesAPI.nativeBody(messages.original, upstreamModel: model.upstreamModel, system: nil)
            .removing("max_tokens").removing("stream")
        return ProviderRequest(
            url: AnthropicRequest.url(baseURL: backend.baseURL) + "/count_tokens", body: body,
            headers: anthropicBeta.map { [("anthropic-beta", $0)] } ?? [])
    }
}

/// Anthropic stream events as Chat Completions chunks, or (native) as they came, while the translator
/// keeps count of usage and text either way.
public struct AnthropicStreamDecoder: StreamDecoder {
    private var translator: AnthropicStreamTranslator
    /// Whether the client speaks Anthropic's API too (events pass through).
    let native: Bool
    public private(set) var streamedTextBytes = 0
    public var ended: Bool { translator.finished }
    public var failure: String? { translator.errorMessage }
    public var usage: Usage? { translator.usage }
    public var missingEnd: String { "the upstream stream ended without message_stop" }
    public var forwardsFailure: Bool { native }

    /// Creates a decoder over `translator`.
    public init(translator: AnthropicStreamTranslator, native: Bool) {
        self.translator = translator
        self.native = native
    }

    public mutating func decode(_ event: SSEEvent) -> [StreamPiece] {
        guard !ended, failure == nil, let json = try? JSONParser.parse(event.data) else { return [] }
        var pieces: [StreamPiece] = native ? [.frame(SSEParser.frame(data: event.data, event: event.event))] : []
        for chunk in translator.feed(json) {
            streamedTextBytes = streamedTextBytes.saturatingAdd(chunk.chatTextBytes)
            if !native { pieces.append(.chunk(chunk, raw: nil)) }
        }
        // A native stream's own message_stop closes it for the client.
        if translator.finished && !native { pieces.append(.end) }
        return pieces
    }

    public func usageChunk(_ usage: Usage) -> JSONValue { translator.usageChunk(usage) }
}
