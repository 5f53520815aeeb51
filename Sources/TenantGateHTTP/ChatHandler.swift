import TenantGateCore
import TenantGateStore
import TenantGateSystem

/// `POST /v1/chat/completions`: validate, pick the model and backend, call it, answer (JSON or SSE).
struct ChatHandler {
    let config: GatewayConfig
    let tenant: TenantConfig
    let keyID: String
    let principal: Principal
    /// The JWT `sub`, when a JWT authenticated the request.
    let subject: String?
    let log: AppLog
    let request: Request
    let sink: ResponseSink
    let resources: ThreadResources
    let options: GatewayOptions
    /// The API the client spoke (`/v1/chat/completions` or `/v1/messages`).
    let api: ClientAPI

    private var baseHeaders: [(String, String)] = []
    private var writer: ReplyWriter
    /// The Anthropic client's request as sent (for native calls to Anthropic backends).
    private var messages: MessagesRequest?
    /// The system prompt for a native Anthropic call, when a tenant template changed it.
    private var nativeSystem: String?

    init(
        config: GatewayConfig, principal: Principal, request: Request, sink: ResponseSink, resources: ThreadResources,
        options: GatewayOptions, log: AppLog, api: ClientAPI = .openAI
    ) {
        self.api = api
        self.log = log
        self.config = config
        self.tenant = principal.tenant
        self.keyID = principal.key.id
        self.principal = principal
        self.subject = principal.subject
        self.request = request
        self.sink = sink
        self.resources = resources
        self.options = options
        baseHeaders = [("X-Tenant-ID", tenant.id.rawValue)]
        writer = ReplyWriter(
            api: api, includeUsage: false, completionID: ChatHandler.completionID(request), model: "", inputEstimate: 0)
    }

    mutating func run(outcome: inout Outcome) throws {
        var chat: ChatRequest
        if api == .anthropic {
            let parsed = try MessagesAPI.parse(request.body)
            messages = parsed
            chat = parsed.chat
        } else {
            chat = try ChatRequest.parse(request.body)
        }
        outcome.endUser = chat.user ?? subject
        outcome.streamed = chat.stream
        // Only catalog names become the model label: arbitrary client strings would explode metric cardinality.
        if let name = chat.model ?? tenant.defaultModel, config.models[name] != nil { outcome.model = name }
        let (modelName, model, backend) = try ModelSelection.resolve(chat.model, tenant: tenant, config: config)
        try chat.checkCap(for: model)
        let subject = chat.user ?? self.subject ?? keyID
        if api == .anthropic && !tenant.feature("messages_api", subject: subject) {
            throw GatewayError.featureDisabled("messages_api")
        }
        try messages?.checkGates(
            tenant: tenant, subject: subject, beta: request.headers["anthropic-beta"] != nil)
        if chat.stream && !tenant.feature("streaming", subject: subject) {
            throw GatewayError.featureDisabled("streaming")
        }
        if chat.usesTools && !tenant.feature("tools", subject: subject) {
            throw GatewayError.featureDisabled("tools")
        }
        let served: ServedPrompt?
        (chat, served) = try PromptStage.apply(
            chat, tenant: tenant, model: modelName, requested: request.headers["x-tenantgate-prompt"],
            epochSeconds: Posix.wallMicros() / 1_000_000)
        if let served {
            if api == .anthropic {
                nativeSystem = chat.messages.filter { ["system", "developer"].contains($0["role"]?.stringValue ?? "") }
                    .map { AnthropicRequest.plainText($0["content"]) }.joined(separator: "\n\n")
            }
            outcome.prompt = "\(served.name)@\(served.version)"
            baseHeaders.append(("X-TenantGate-Prompt", "\(served.name)@\(served.version)"))
        }
        try reserve(chat, requested: modelName, backend: backend, outcome: &outcome)
        baseHeaders += outcome.limitHeaders
        try serve(chat, requested: modelName, outcome: &outcome)
    }

    /// Tries the requested model, then its fallbacks in order; each upstream call goes through
    /// the tenant's circuit breaker for that backend and is retried (jittered exponential backoff,
    /// honouring Retry-After, bounded in count and time) while nothing has reached the client.
    private mutating func serve(_ chat: ChatRequest, requested: String, outcome: inout Outcome) throws {
        let chain = self.chain(requested)
        let common = baseHeaders
        // Only Anthropic clients see it (in message_start, before the exact count arrives).
        let inputEstimate = api == .anthropic ? TokenEstimate.prompt(chat.promptText) : 0
        var lastError: any Error = GatewayError.upstreamError("no backend could serve the request")
        for (index, name) in chain.enumerated() {
            guard let model = config.models[name], let backend = config.backends[model.backend] else { continue }
            outcome.model = name
            outcome.backend = backend.name
            outcome.fallbackUsed = index > 0
            baseHeaders = common + [("X-TenantGate-Model", name)]
            writer = ReplyWriter(
                api: api, includeUsage: chat.includeUsage, completionID: completionID, model: name,
                inputEstimate: inputEstimate)
            if backend.provider == .mock {
                try mock(chat, model: model, outcome: &outcome)
                settleCost(model, &outcome)
                return
            }
            let now = Posix.wallMicros() / 1000
            var probe = false
            if tenant.circuit != nil {
                switch try resources.circuits({
                    try $0.admit(tenant: tenant.id.rawValue, backend: backend.name, nowMs: now)
                }) {
                case .closed: break
                case .probe: probe = true
                case .open(let retryAfter):
                    lastError = GatewayError.circuitOpen(retryAfter: retryAfter)
                    continue
                }
            }
            do {
                try withRetries(backend, outcome: &outcome) { outcome in
                    try call(chat, model: model, backend: backend, outcome: &outcome)
                }
                if probe {
                    try resources.circuits {
                        try $0.recordProbeSuccess(tenant: tenant.id.rawValue, backend: backend.name)
                    }
                    log.event(
                        "circuit_close", ["tenant": .string(tenant.id.rawValue), "backend": .string(backend.name)])
                }
                settleCost(model, &outcome)
                return
            } catch let failure as RetryableUpstream {
                if let circuit = tenant.circuit,
                    try resources.circuits({
                        try $0.recordFailure(
                            tenant: tenant.id.rawValue, backend: backend.name, settings: circuit, wasProbe: probe,
                            nowMs: Posix.wallMicros() / 1000)
                    })
                {
                    log.event(
                        "circuit_open", ["tenant": .string(tenant.id.rawValue), "backend": .string(backend.name)],
                        level: "warn")
                }
                lastError = failure
                if sink.headWritten { throw failure.error }
            }
        }
        throw lastError
    }

    /// The requested model and its allowed fallbacks; a BYOK client's key only ever goes to the backend
    /// of the model it asked for, so fallbacks on other backends are skipped for it.
    private func chain(_ requested: String) -> [String] {
        let all = tenant.chain(for: requested)
        guard principal.passthrough != nil, let home = config.models[requested]?.backend else { return all }
        return all.filter { config.models[$0]?.backend == home }
    }

    private func settleCost(_ model: ModelConfig, _ outcome: inout Outcome) {
        if let usage = outcome.usage { outcome.costNano = Money.cost(usage, model) }
    }

    /// Runs `attempt`, retrying retryable failures while nothing reached the client.
    private func withRetries(
        _ backend: BackendConfig, outcome: inout Outcome, _ attempt: (inout Outcome) throws -> Void
    ) throws {
        let started = Posix.monotonicMs()
        var tries = 0
        while true {
            do {
                try attempt(&outcome)
                return
            } catch let failure as RetryableUpstream {
                guard tries < backend.maxRetries, !sink.headWritten else { throw failure }
                let base = backend.retryBackoffMs << min(tries, 10)
                var delay = base / 2 + Int.random(in: 0...max(1, base / 2))
                if let retryAfter = failure.retryAfterMs { delay = max(delay, retryAfter) }
                guard Int(Posix.monotonicMs() - started) + delay <= backend.retryBudgetMs else { throw failure }
                Posix.sleepMs(delay)
                tries += 1
                outcome.retries = tries
            }
        }
    }

    /// Reserves the worst case over the requested model and its fallbacks (the dearest may serve).
    private func reserve(_ chat: ChatRequest, requested: String, backend: BackendConfig, outcome: inout Outcome)
        throws
    {
        let chain = self.chain(requested).compactMap { config.models[$0] }
        let needs = chain.map { Reservation(chat: chat, model: $0) }
        guard let first = needs.first else { return }
        let need = Reservation(
            promptTokens: first.promptTokens, completionTokens: needs.map(\.completionTokens).max() ?? 0,
            costNano: needs.map(\.costNano).max() ?? 0)
        let slowest = chain.compactMap { config.backends[$0.backend] }.max { $0.timeoutMs < $1.timeoutMs } ?? backend
        try LimitStage.reserve(
            tenant: tenant, need: need, backend: slowest, resources: resources, log: log, requestID: request.requestID,
            outcome: &outcome)
    }

    /// `chatcmpl-` and the request id's letters and digits: the same for every attempt of a request.
    private static func completionID(_ request: Request) -> String {
        let source = request.requestID.isEmpty ? String(Posix.wallMicros()) : request.requestID
        let alnum = source.utf8.lazy.filter {
            (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0)
        }
        return "chatcmpl-" + String(decoding: Array(alnum.prefix(32)), as: UTF8.self)
    }

    private var completionID: String { writer.completionID }

    // MARK: mock

    private mutating func mock(_ chat: ChatRequest, model: ModelConfig, outcome: inout Outcome) throws {
        let reply = MockProvider.replyText(for: chat)
        let usage = MockProvider.usage(for: chat, reply: reply)
        let id = completionID
        let created = Int(Posix.wallMicros() / 1_000_000)
        outcome.usage = usage
        outcome.upstreamMs = 0
        outcome.status = 200
        guard chat.stream else {
            let body = JSONValue.object([
                ("id", .string(id)), ("object", .string("chat.completion")), ("created", .int(created)),
                ("model", .string(model.name)),
                (
                    "choices",
                    .array([
                        .object([
                            ("index", .int(0)),
                            ("message", .object([("role", .string("assistant")), ("content", .string(reply))])),
                            ("finish_reason", .string("stop")),
                        ])
                    ])
                ),
                ("usage", usage.openAI),
            ])
            sink.send(200, writer.completion(body, raw: nil, usage: usage), headers: baseHeaders)
            return
        }
        writeStreamHead()
        let chunks = ChunkFactory(id: id, model: model.name, created: created)
        var events = [
            writer.chunk(chunks.delta(.object([("role", .string("assistant")), ("content", .string(""))])), raw: nil)
        ]
        for piece in MockProvider.chunks(reply) {
            events.append(writer.chunk(chunks.delta(.object([("content", .string(piece))])), raw: nil))
        }
        events.append(writer.chunk(chunks.delta(.object([]), finish: "stop"), raw: nil))
        events.append(writer.done(usage: usage, usageChunk: chunks.usage))
        for event in events where !event.isEmpty {
            sink.body(event)
            if !sink.flush() {
                outcome.status = 499
                outcome.errorCode = "client_closed"
                return
            }
        }
    }

    private func writeStreamHead() {
        sink.head(
            status: 200,
            headers: [
                ("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no"),
            ] + baseHeaders)
    }

    // MARK: upstream calls

    /// One call to an OpenAI-compatible or Anthropic backend, answered to the client in its own API.
    private func call(_ chat: ChatRequest, model: ModelConfig, backend: BackendConfig, outcome: inout Outcome)
        throws
    {
        let url: String
        var body: JSONValue
        var native = false
        if backend.provider == .anthropic {
            url = AnthropicRequest.url(baseURL: backend.baseURL)
            if let messages {
                // Anthropic client, Anthropic backend: the client's own body, so nothing is lost in translation.
                body = MessagesAPI.nativeBody(
                    messages.original, upstreamModel: model.upstreamModel, system: nativeSystem
                ).setting("max_tokens", .int(chat.completionCap(for: model)))
                native = true
            } else {
                body = try AnthropicRequest.body(
                    chat, upstreamModel: model.upstreamModel, maxTokens: chat.completionCap(for: model))
            }
        } else {
            if let kinds = messages?.nativeOnly, !kinds.isEmpty {
                throw GatewayError.invalidRequest(
                    "Content blocks of type \(kinds.joined(separator: ", ")) need a model on an Anthropic backend; '\(model.name)' is not."
                )
            }
            url = backend.baseURL + "/chat/completions"
            body = chat.upstreamBody(for: model)
            if chat.stream {
                // Always ask for usage so streams are accounted exactly; the extra chunk is dropped
                // below unless the client asked for it.
                let options = (chat.body["stream_options"] ?? .object([])).setting("include_usage", .bool(true))
                body = body.setting("stream_options", options)
            }
        }
        var headers = try LimitStage.upstreamHeaders(
            backend: backend, principal: principal, accept: chat.stream ? "text/event-stream" : "application/json",
            requestID: request.requestID, trace: outcome.trace)
        if native {
            // The body is in the client's API version and may use its beta features: say so upstream.
            if let version = ChatHandler.headerValue(request.headers["anthropic-version"]) {
                headers = headers.filter { !$0.hasPrefix("anthropic-version:") } + ["anthropic-version: \(version)"]
            }
            if let beta = ChatHandler.headerValue(request.headers["anthropic-beta"]) {
                headers.append("anthropic-beta: \(beta)")
            }
        }
        var outgoing = OutgoingRequest(
            method: "POST", url: url, headers: headers, body: body.bytes, connectTimeoutMs: backend.connectTimeoutMs,
            totalTimeoutMs: backend.timeoutMs)
        outgoing.firstByteTimeoutMs = backend.firstByteTimeoutMs
        let started = Posix.monotonicMs()
        defer { outcome.upstreamMs = Int(Posix.monotonicMs() - started) }
        if chat.stream {
            try stream(
                outgoing, chat: chat, model: model, provider: backend.provider, native: native, outcome: &outcome)
        } else {
            try complete(outgoing, model: model, provider: backend.provider, native: native, outcome: &outcome)
        }
    }

    private func complete(
        _ outgoing: OutgoingRequest, model: ModelConfig, provider: ProviderKind, native: Bool, outcome: inout Outcome
    )
        throws
    {
        var collected = [UInt8]()
        let limit = options.maxUpstreamBytes
        let result = resources.curl.perform(outgoing) { _, bytes in
            collected.append(contentsOf: bytes)
            return collected.count <= limit
        }
        let head = try ChatHandler.check(result, bodyTooLarge: collected.count > limit)
        guard (200..<300).contains(head.status) else {
            throw ChatHandler.failure(head.status, collected, retryAfter: head.headers["retry-after"])
        }
        guard let json = try? JSONParser.parse(collected), case .object = json else {
            throw GatewayError.upstreamError("the upstream returned a body that is not a JSON object")
        }
        let answer: [UInt8]
        if native {
            outcome.usage = Usage(anthropic: json["usage"])
            answer = collected
        } else if provider == .anthropic {
            let created = Int(Posix.wallMicros() / 1_000_000)
            let (completion, usage) = AnthropicResponse.completion(
                json, id: completionID, model: model.name, created: created)
            outcome.usage = usage
            answer = writer.completion(completion, raw: nil, usage: usage)
        } else {
            outcome.usage = Usage(openAI: json["usage"])
            answer = writer.completion(json, raw: collected, usage: outcome.usage)
        }
        outcome.status = 200
        sink.send(200, answer, headers: baseHeaders)
    }

    private func stream(
        _ outgoing: OutgoingRequest, chat: ChatRequest, model: ModelConfig, provider: ProviderKind, native: Bool,
        outcome: inout Outcome
    ) throws {
        var parser = SSEParser()
        var errorBody = [UInt8]()
        var usage: Usage?
        var clientGone = false
        var broken = false
        var ended = false
        var upstreamFailure: String?
        var streamedText = 0
        let started = Posix.monotonicMs()
        var firstByteMs: Int?
        let chunks = ChunkFactory(id: completionID, model: model.name, created: Int(Posix.wallMicros() / 1_000_000))
        var translator = AnthropicStreamTranslator(id: chunks.id, model: chunks.model, created: chunks.created)
        // A copy: a failed attempt wrote nothing, so a retry or fallback starts from the same state.
        var writer = self.writer
        func count(_ chunk: JSONValue?) {
            for choice in chunk?["choices"]?.arrayValue ?? [] {
                streamedText += choice["delta"]?["content"]?.stringValue?.utf8.count ?? 0
            }
        }
        let result = resources.curl.perform(outgoing) { status, bytes in
            guard (200..<300).contains(status) else {
                errorBody.append(contentsOf: bytes)
                return errorBody.count <= 1 << 20
            }
            if !sink.headWritten {
                writeStreamHead()
                firstByteMs = Int(Posix.monotonicMs() - started)
            }
            guard let events = parser.feed(bytes) else {
                broken = true
                return false
            }
            var out = [UInt8]()
            for event in events where !ended {
                let json = try? JSONParser.parse(event.data)
                if provider == .anthropic {
                    guard let json else { continue }
                    // Native: the upstream's events go out as they are; the translator only keeps count.
                    if native { out += SSEParser.frame(data: event.data, event: event.event) }
                    for chunk in translator.feed(json) {
                        count(chunk)
                        if !native { out += writer.chunk(chunk, raw: nil) }
                    }
                    if let message = translator.errorMessage {
                        upstreamFailure = message
                        break
                    }
                    if translator.finished {
                        ended = true
                        usage = translator.usage
                        if !native { out += writer.done(usage: usage, usageChunk: translator.usageChunk) }
                    }
                    continue
                }
                if event.data == "[DONE]" {
                    ended = true
                    out += writer.done(usage: usage, usageChunk: chunks.usage)
                    continue
                }
                guard let json else {
                    if writer.api == .openAI { out += SSEParser.frame(data: event.data, event: event.event) }
                    continue
                }
                count(json)
                if let reported = Usage(openAI: json["usage"]) { usage = reported }
                out += writer.chunk(json, raw: event.data)
            }
            if !out.isEmpty {
                sink.body(out)
                if !sink.flush() {
                    clientGone = true
                    return false
                }
            }
            return upstreamFailure == nil
        }
        outcome.ttfbMs = firstByteMs
        // Without a usage report, count what was streamed (prompt and text by the documented estimate).
        if let usage {
            outcome.usage = usage
        } else if let partial = translator.usage {
            outcome.usage = partial
        } else if streamedText > 0 {
            outcome.usage = Usage(
                promptTokens: TokenEstimate.prompt(chat.promptText), completionTokens: (streamedText + 3) / 4)
        }
        if clientGone {
            outcome.status = 499
            outcome.errorCode = "client_closed"
            return
        }
        if !sink.headWritten {
            let head = try ChatHandler.check(result, bodyTooLarge: false)
            if !(200..<300).contains(head.status) {
                throw ChatHandler.failure(head.status, errorBody, retryAfter: head.headers["retry-after"])
            }
            writeStreamHead()
        }
        outcome.status = 200
        var failure: GatewayError?
        if let upstreamFailure {
            failure = .upstreamError("the upstream stream reported an error: \(upstreamFailure.prefix(300))")
        } else if broken {
            failure = .upstreamError("the upstream stream sent an oversized event")
        } else if case .failure(let error) = result {
            failure = error.isTimeout ? .upstreamTimeout : .upstreamError("the upstream stream was cut off")
        } else if !ended {
            failure = .upstreamError(
                provider == .anthropic
                    ? "the upstream stream ended without message_stop" : "the upstream stream ended without [DONE]")
        }
        if let failure {
            outcome.errorCode = failure.code
            // A native stream already carried the upstream's own error event.
            if !(native && upstreamFailure != nil) { sink.body(writer.failure(failure)) }
        }
        sink.flush()
    }

    /// A client header value fit to forward: printable ASCII, at most 512 bytes.
    static func headerValue(_ value: String?) -> String? {
        guard let value, !value.isEmpty, value.utf8.count <= 512,
            value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F })
        else { return nil }
        return value
    }

    /// Maps a transport failure to the client's error.
    static func check(_ result: Result<ResponseHead, CurlError>, bodyTooLarge: Bool) throws -> ResponseHead {
        switch result {
        case .success(let head): return head
        case .failure(let error):
            if bodyTooLarge { throw GatewayError.upstreamError("the upstream response is too large") }
            if error.isTimeout { throw RetryableUpstream(error: .upstreamTimeout, retryAfterMs: nil) }
            if error.isConnect {
                throw RetryableUpstream(error: .upstreamError("could not connect to the upstream"), retryAfterMs: nil)
            }
            if error.isBrokenConnection {
                throw RetryableUpstream(
                    error: .upstreamError("the upstream connection broke before it answered"), retryAfterMs: nil)
            }
            throw GatewayError.upstreamError("transport failure (curl \(error.code))")
        }
    }

    /// An upstream non-2xx answer as the client's error: client errors pass through, the rest are 502.
    /// An upstream non-2xx answer: 429 and 5xx are retryable (with the upstream's Retry-After), the rest final.
    static func failure(_ status: Int, _ body: [UInt8], retryAfter: String?) -> any Error {
        let error = upstreamFailure(status, body)
        guard status == 429 || status >= 500 else { return error }
        return RetryableUpstream(error: error, retryAfterMs: retryAfterMs(retryAfter))
    }

    /// An upstream's `Retry-After` (delay-seconds) as milliseconds in `0…Bounds.maxRetryAfterSeconds` s;
    /// nil when absent or not a plain number (an HTTP date is not honoured). Never traps on any value.
    static func retryAfterMs(_ header: String?) -> Int? {
        guard let text = header?.trimmingCharacters(in: " \t"), !text.isEmpty, text.utf8.count <= 32,
            text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 })
        else { return nil }
        return min(Int(text) ?? Bounds.maxRetryAfterSeconds, Bounds.maxRetryAfterSeconds) * 1000
    }

    static func upstreamFailure(_ status: Int, _ body: [UInt8]) -> GatewayError {
        if [400, 404, 422].contains(status), let json = try? JSONParser.parse(body),
            let message = json["error"]?["message"]?.stringValue
        {
            return .invalidRequest("Upstream rejected the request: \(message.prefix(500))")
        }
        return .upstreamError("the upstream answered HTTP \(status)")
    }
}
