/// Who shares a cached answer within a tenant.
public enum CacheScope: String, Sendable, Equatable {
    /// Every caller of the tenant.
    case tenant
    /// Callers presenting the same gateway key (or, with JWTs, the same subject): the default.
    case key
    /// Callers naming the same end user (the JWT subject, else `user`); calls without one are not cached.
    case user
}

/// A tenant's cache settings (`cache:` in its effective configuration); caching is on when `ttl_s` > 0.
public struct CacheSettings: Sendable, Equatable {
    /// Who shares an entry (`cache.scope`, default `key`).
    public let scope: CacheScope
    public let ttlMs: Int64
    public let maxEntries: Int
    public let maxBytes: Int64
    /// Also cache answers sampled above temperature 0 (they are not deterministic: off by default).
    public let anyTemperature: Bool
    /// The semantic cache's cosine threshold (at least `SemanticCache.floor`), and the catalog model that
    /// embeds questions (through its own backend, billed to the tenant).
    public let semanticThreshold: Double
    public let embeddingModel: String?

    /// The settings of `tenant`, nil when its cache is off.
    public init?(_ tenant: TenantConfig) {
        guard let cache = tenant.effective["cache"], let ttl = cache["ttl_s"]?.intValue, ttl > 0 else { return nil }
        ttlMs = Int64(ttl) * 1000
        maxEntries = cache["max_entries"]?.intValue ?? 100_000
        maxBytes = Int64(cache["max_bytes"]?.intValue ?? 256 << 20)
        anyTemperature = cache["any_temperature"]?.boolValue ?? false
        semanticThreshold = max(
            SemanticCache.floor, cache["semantic_threshold"]?.doubleValue ?? SemanticCache.defaultThreshold)
        embeddingModel = cache["embedding_model"]?.stringValue
        scope = cache["scope"]?.stringValue.flatMap(CacheScope.init(rawValue:)) ?? .key
    }
}

/// Which requests the cache may answer, and the bytes their key is the hash of.
public enum ResponseCache {
    /// The key format; bumping it makes every stored entry unreachable.
    public static let formatVersion = "tenantgate-cache-2"

    /// Why a request is not looked up (nil: it is eligible).
    public static func ineligibility(
        _ chat: ChatRequest, messages: MessagesRequest?, settings: CacheSettings, cacheControl: String?
    ) -> String? {
        if let control = cacheControl?.lowercased(), control.contains("no-store") || control.contains("no-cache") {
            return "no-store"
        }
        guard chat.choices == 1 else { return "n" }
        if !settings.anyTemperature {
            guard let t = chat.body["temperature"]?.doubleValue, t == 0 else { return "temperature" }
        }
        for message in chat.messages {
            let role = message["role"]?.stringValue ?? ""
            if role == "tool" || role == "function" { return "tool-results" }
        }
        if let original = messages?.original {
            for message in original["messages"]?.arrayValue ?? [] {
                for block in message["content"]?.arrayValue ?? [] where block["type"]?.stringValue == "tool_result" {
                    return "tool-results"
                }
            }
        }
        return nil
    }

    /// What an answer depends on: everything that goes upstream, the tenant first, each length-prefixed so
    /// that two different requests (or tenants) never encode alike.
    public struct KeyInput: Sendable {
        public var tenant: String
        /// `tenant`, `key:<id>`, `user:<id>`, plus `byok:<hash>` when the caller's own provider key pays.
        public var partition: String
        public var api: String
        /// The catalog model that answers, its backend, and what that backend is asked for.
        public var model: String
        public var backend: String
        public var upstreamModel: String
        /// The completion cap the upstream gets (the catalog's cap may lower the client's).
        public var completionCap: Int
        /// Headers forwarded upstream (`anthropic-version`, `anthropic-beta`).
        public var headers: [String]
        public var nativeSystem: String?

        /// Creates the input.
        public init(
            tenant: String, partition: String, api: String, model: String, backend: String, upstreamModel: String,
            completionCap: Int, headers: [String], nativeSystem: String?
        ) {
            self.tenant = tenant
            self.partition = partition
            self.api = api
            self.model = model
            self.backend = backend
            self.upstreamModel = upstreamModel
            self.completionCap = completionCap
            self.headers = headers
            self.nativeSystem = nativeSystem
        }
    }

    /// Request fields that only say how or for whom an answer is delivered, not what it says.
    static let deliveryFields = ["stream", "stream_options", "model", "user", "metadata", "store"]

    /// The bytes a cache key hashes: the whole request body as it goes upstream (after the tenant's prompt,
    /// retrieval and ingress rewrites; every field the provider forwards, vLLM's `guided_*` and `top_k`
    /// included), less the delivery fields; and `input`'s model, backend, cap, headers and partition.
    /// Stream options are left out: a stream and a whole answer share an entry.
    public static func keyMaterial(_ input: KeyInput, chat: ChatRequest, messages: MessagesRequest?) -> [UInt8] {
        var out = LengthPrefixed()
        out.field(formatVersion)
        out.field(input.tenant)
        out.field(input.partition)
        out.field(input.api)
        out.field(input.model)
        out.field(input.backend)
        out.field(input.upstreamModel)
        out.field(String(input.completionCap))
        out.field(String(input.headers.count))
        for header in input.headers { out.field(header) }
        var body = messages?.original ?? chat.body
        for field in deliveryFields { body = body.removing(field) }
        out.field(canonical(body))
        out.field(input.nativeSystem ?? "")
        return out.bytes
    }

    /// JSON with every object's keys in order (numbers keep their text): equal documents, equal bytes.
    public static func canonical(_ value: JSONValue) -> [UInt8] { sorted(value).bytes }

    private static func sorted(_ value: JSONValue) -> JSONValue {
        switch value {
        case .object(let members): return .object(members.sorted { $0.0 < $1.0 }.map { ($0.0, sorted($0.1)) })
        case .array(let items): return .array(items.map(sorted))
        default: return value
        }
    }

    /// Whether a provider-neutral answer can be replayed faithfully (text and tool calls only, one choice,
    /// a proper finish).
    public static func storable(_ answer: JSONValue) -> Bool {
        guard let choices = answer["choices"]?.arrayValue, choices.count == 1, let choice = choices.first,
            let reason = choice["finish_reason"]?.stringValue,
            reason == "stop" || reason == "tool_calls"
                || reason == "length"
        else { return false }
        return choice["message"]?["content"]?.stringValue != nil || choice["message"]?["tool_calls"] != nil
    }

    /// A cached answer as the pieces of a stream (role, content, tool calls, finish, end).
    public static func replay(_ answer: JSONValue, chunks: ChunkFactory) -> [StreamPiece] {
        guard let choice = answer["choices"]?.arrayValue?.first else { return [.end] }
        let message = choice["message"] ?? .object([])
        var pieces: [StreamPiece] = [
            .chunk(chunks.delta(.object([("role", .string("assistant")), ("content", .string(""))])), raw: nil)
        ]
        if let text = message["content"]?.stringValue, !text.isEmpty {
            pieces.append(.chunk(chunks.delta(.object([("content", .string(text))])), raw: nil))
        }
        for (i, call) in (message["tool_calls"]?.arrayValue ?? []).enumerated() {
            let delta = JSONValue.object([
                (
                    "tool_calls",
                    .array([
                        .object([
                            ("index", .int(i)), ("id", call["id"] ?? .string("call_\(i)")),
                            ("type", .string("function")), ("function", call["function"] ?? .object([])),
                        ])
                    ])
                )
            ])
            pieces.append(.chunk(chunks.delta(delta), raw: nil))
        }
        let reason = choice["finish_reason"]?.stringValue ?? "stop"
        pieces.append(.chunk(chunks.delta(.object([]), finish: reason), raw: nil))
        pieces.append(.end)
        return pieces
    }
}

/// Rebuilds a whole Chat Completions answer from the chunks of a stream (to store it once it finished).
public struct StreamRecorder: Sendable {
    /// Answers larger than this are not kept (and not held in memory to be kept).
    public static let maxBytes = 1 << 20
    private var bytes = 0
    /// The stream outgrew `maxBytes`: nothing is recorded any more.
    public private(set) var overflowed = false
    private var text = ""
    private var calls: [Int: (id: String, name: String, arguments: String)] = [:]
    private var finish: String?
    private var choices = Set<Int>()

    /// Creates an empty recorder.
    public init() {}

    /// Takes one chunk.
    public mutating func record(_ chunk: JSONValue) {
        guard !overflowed else { return }
        for choice in chunk["choices"]?.arrayValue ?? [] {
            choices.insert(choice["index"]?.intValue ?? 0)
            let delta = choice["delta"]
            if let piece = delta?["content"]?.stringValue {
                text += piece
                bytes = bytes.saturatingAdd(piece.utf8.count)
            }
            for call in delta?["tool_calls"]?.arrayValue ?? [] {
                let i = call["index"]?.intValue ?? 0
                var entry = calls[i] ?? ("", "", "")
                if let id = call["id"]?.stringValue { entry.id = id }
                if let name = call["function"]?["name"]?.stringValue { entry.name += name }
                if let args = call["function"]?["arguments"]?.stringValue {
                    entry.arguments += args
                    bytes = bytes.saturatingAdd(args.utf8.count)
                }
                calls[i] = entry
            }
            if bytes > StreamRecorder.maxBytes {
                // Too large to keep: let go of what was recorded.
                overflowed = true
                text = ""
                calls = [:]
                return
            }
            if let reason = choice["finish_reason"]?.stringValue { finish = reason }
        }
    }

    /// The answer, when the stream had one choice and finished.
    public func completion(model: String) -> JSONValue? {
        guard !overflowed, choices.count <= 1, let finish else { return nil }
        var message: [(String, JSONValue)] = [("role", .string("assistant")), ("content", .string(text))]
        if !calls.isEmpty {
            message.append(
                (
                    "tool_calls",
                    .array(
                        calls.sorted { $0.key < $1.key }.map { _, call in
                            .object([
                                ("id", .string(call.id)), ("type", .string("function")),
                                (
                                    "function",
                                    .object([("name", .string(call.name)), ("arguments", .string(call.arguments))])
                                ),
                            ])
                        })
                ))
        }
        return .object([
            ("object", .string("chat.completion")), ("model", .string(model)),
            (
                "choices",
                .array([
                    .object([("index", .int(0)), ("message", .object(message)), ("finish_reason", .string(finish))])
                ])
            ),
        ])
    }
}
