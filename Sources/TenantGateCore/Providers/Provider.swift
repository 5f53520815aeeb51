/// What a provider is told of one chat call: the request after every stage before it, the model and its
/// backend, and what the client's own API adds.
public struct ProviderCall: Sendable {
    /// The Chat Completions form of the request (templates applied).
    public var chat: ChatRequest
    public var model: ModelConfig
    public var backend: BackendConfig
    /// The Anthropic client's request as sent, when it spoke `/v1/messages` (native calls to Anthropic).
    public var messages: MessagesRequest?
    /// The system prompt for a native Anthropic call, when a tenant template changed it.
    public var nativeSystem: String?
    /// The client's `anthropic-version` and `anthropic-beta` headers, already checked fit to forward.
    public var anthropicVersion: String?
    public var anthropicBeta: String?
    /// `chatcmpl-…`: the same for every attempt of a request.
    public var completionID: String
    /// Seconds since the epoch, for the `created` field.
    public var created: Int
    /// Whether a native stream may pass through as it came; false when stream filters must read every
    /// piece (guardrails), so it is decoded into chunks and written again in the client's API.
    public var passthrough = true

    /// Creates a call.
    public init(
        chat: ChatRequest, model: ModelConfig, backend: BackendConfig, completionID: String, created: Int,
        messages: MessagesRequest? = nil, nativeSystem: String? = nil, anthropicVersion: String? = nil,
        anthropicBeta: String? = nil
    ) {
        self.chat = chat
        self.model = model
        self.backend = backend
        self.completionID = completionID
        self.created = created
        self.messages = messages
        self.nativeSystem = nativeSystem
        self.anthropicVersion = anthropicVersion
        self.anthropicBeta = anthropicBeta
    }
}

/// An upstream HTTP request as a provider builds it; the transport adds the key, the request id and the
/// trace context.
public struct ProviderRequest: Sendable, Equatable {
    public var url: String
    public var body: JSONValue
    /// Headers beside the transport's; one of the same name replaces the transport's.
    public var headers: [(name: String, value: String)]

    /// Creates a request.
    public init(url: String, body: JSONValue, headers: [(name: String, value: String)] = []) {
        self.url = url
        self.body = body
        self.headers = headers
    }

    public static func == (a: ProviderRequest, b: ProviderRequest) -> Bool {
        a.url == b.url && a.body == b.body && a.headers.map(\.name) == b.headers.map(\.name)
            && a.headers.map(\.value) == b.headers.map(\.value)
    }
}

/// A whole answer from a provider.
public enum ProviderAnswer: Sendable {
    /// Chat Completions shaped; `raw` are the upstream's own bytes of it (forwarded unchanged to an
    /// OpenAI client).
    case chat(JSONValue, raw: [UInt8]?, usage: Usage?)
    /// Already in the client's API (an Anthropic client's native call): forwarded as it came.
    case native([UInt8], usage: Usage?)

    /// The usage it reports.
    public var usage: Usage? {
        switch self {
        case .chat(_, _, let usage), .native(_, let usage): return usage
        }
    }
}

/// One piece of an answer stream, provider-neutral; stream filters see these before the client's API
/// writer turns them into bytes.
public enum StreamPiece: Sendable, Equatable {
    /// A Chat Completions chunk; `raw` is the upstream's own event data for it, if any.
    case chunk(JSONValue, raw: String?)
    /// An event already in the client's API (native Anthropic), passed through.
    case frame([UInt8])
    /// The stream ended well: the writer closes it in the client's API.
    case end
}

/// Turns one provider's upstream SSE events into stream pieces and keeps what the stream reported.
public protocol StreamDecoder {
    /// The pieces for one upstream event.
    mutating func decode(_ event: SSEEvent) -> [StreamPiece]
    /// The stream reached its proper end.
    var ended: Bool { get }
    /// The upstream's own error event, if it sent one.
    var failure: String? { get }
    /// Usage as reported (possibly partial).
    var usage: Usage? { get }
    /// Bytes of answer text streamed, for an estimate when no usage came.
    var streamedTextBytes: Int { get }
    /// OpenAI's usage-only chunk, for clients that asked for usage.
    func usageChunk(_ usage: Usage) -> JSONValue
    /// Says what a stream that stopped without its proper end lacked.
    var missingEnd: String { get }
    /// Whether the upstream's own error event already reached the client (native pass-through).
    var forwardsFailure: Bool { get }
}

extension StreamDecoder {
    public var forwardsFailure: Bool { false }
}

/// A provider reached over HTTP: builds its request, decodes a whole answer, decodes a stream.
public protocol RemoteChatProvider: Sendable {
    /// The upstream request for `call`; refuses what the provider cannot take.
    func request(_ call: ProviderCall) throws(GatewayError) -> ProviderRequest
    /// A whole 2xx answer (`json` is `raw` parsed, an object); refuses one that is not the provider's
    /// answer shape (a hostile or broken upstream), so that the client never gets it as a success.
    func answer(_ json: JSONValue, raw: [UInt8], call: ProviderCall) throws(GatewayError) -> ProviderAnswer
    /// A decoder for the answer stream of `call`.
    func streamDecoder(_ call: ProviderCall) -> any StreamDecoder
}

/// A provider that answers in process (the built-in mock).
public protocol LocalChatProvider: Sendable {
    /// The whole answer, or the stream's pieces, for `call`.
    func answer(_ call: ProviderCall) -> (answer: ProviderAnswer, stream: [StreamPiece])
}

/// Capability: embeddings over HTTP.
public protocol EmbeddingsProvider: Sendable {
    /// The upstream request for `embed` on `model`.
    func embeddingsRequest(_ embed: EmbeddingsRequest, model: ModelConfig, backend: BackendConfig) -> ProviderRequest
}

/// Capability: exact prompt token counts (Anthropic's `count_tokens`).
public protocol TokenCountingProvider: Sendable {
    /// The upstream request counting the tokens of `messages` on `model`.
    func countTokensRequest(
        _ messages: MessagesRequest, model: ModelConfig, backend: BackendConfig, anthropicBeta: String?
    ) -> ProviderRequest
}

/// A backend family's implementation.
public enum Provider: Sendable {
    case remote(any RemoteChatProvider)
    case local(any LocalChatProvider)

    /// The implementation for `kind`: adding a provider is one folder and one line here.
    public static func of(_ kind: ProviderKind) -> Provider {
        switch kind {
        case .openai: return .remote(OpenAICompatibleProvider())
        case .anthropic: return .remote(AnthropicProvider())
        case .mock: return .local(MockChatProvider())
        }
    }

    /// Whether it answers embeddings (over HTTP or in process).
    public var offersEmbeddings: Bool {
        switch self {
        case .remote(let p): return p is any EmbeddingsProvider
        case .local(let p): return p is any LocalEmbeddingsProvider
        }
    }

    /// Its embeddings capability, if any.
    public var embeddings: (any EmbeddingsProvider)? {
        switch self {
        case .remote(let p): return p as? any EmbeddingsProvider
        case .local(let p): return p as? any EmbeddingsProvider
        }
    }

    /// Its token-counting capability, if any.
    public var tokenCounting: (any TokenCountingProvider)? {
        switch self {
        case .remote(let p): return p as? any TokenCountingProvider
        case .local(let p): return p as? any TokenCountingProvider
        }
    }
}

/// Capability: embeddings answered in process (the built-in mock).
public protocol LocalEmbeddingsProvider: Sendable {
    /// The embeddings answer body and its usage.
    func embeddings(_ embed: EmbeddingsRequest, model: ModelConfig) -> (body: JSONValue, usage: Usage)
}
