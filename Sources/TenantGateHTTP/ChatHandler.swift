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

    private var baseHeaders: [(String, String)] = []

    init(
        config: GatewayConfig, principal: Principal, request: Request, sink: ResponseSink, resources: ThreadResources,
        options: GatewayOptions, log: AppLog
    ) {
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
    }

    mutating func run(outcome: inout Outcome) throws {
        var chat = try ChatRequest.parse(request.body)
        outcome.endUser = chat.user ?? subject
        outcome.streamed = chat.stream
        // Only catalog names become the model label: arbitrary client strings would explode metric cardinality.
        if let name = chat.model ?? tenant.defaultModel, config.models[name] != nil { outcome.model = name }
        let (modelName, model, backend) = try ModelSelection.resolve(chat.model, tenant: tenant, config: config)
        let subject = chat.user ?? self.subject ?? keyID
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
            outcome.prompt = "\(served.name)@\(served.version)"
            baseHeaders.append(("X-TenantGate-Prompt", "\(served.name)@\(served.version)"))
        }
        _ = model
        try reserve(chat, requested: modelName, backend: backend, outcome: &outcome)
        baseHeaders += outcome.limitHeaders
        try serve(chat, requested: modelName, outcome: &outcome)
    }

    /// Tries the requested model, then its fallbacks in order; each OpenAI-compatible call goes through
    /// the tenant's circuit breaker for that backend and is retried (jittered exponential backoff,
    /// honouring Retry-After, bounded in count and time) while nothing has reached the client.
    private mutating func serve(_ chat: ChatRequest, requested: String, outcome: inout Outcome) throws {
        let chain = [requested] + (tenant.fallbacks[requested] ?? [])
        let common = baseHeaders
        var lastError: any Error = GatewayError.upstreamError("no backend could serve the request")
        for (index, name) in chain.enumerated() {
            guard let model = config.models[name], let backend = config.backends[model.backend] else { continue }
            outcome.model = name
            outcome.backend = backend.name
            outcome.fallbackUsed = index > 0
            baseHeaders = common + [("X-TenantGate-Model", name)]
            switch backend.provider {
            case .mock:
                try mock(chat, model: model, outcome: &outcome)
                settleCost(model, &outcome)
                return
            case .anthropic:
                lastError = GatewayError.upstreamError("provider 'anthropic' is not supported by this build")
                continue
            case .openai:
                break
            }
            let now = Posix.wallMicros() / 1000
            var probe = false
            if tenant.circuit != nil {
                switch try resources.circuits.admit(tenant: tenant.id.rawValue, backend: backend.name, nowMs: now) {
                case .closed: break
                case .probe: probe = true
                case .open(let retryAfter):
                    lastError = GatewayError.circuitOpen(retryAfter: retryAfter)
                    continue
                }
            }
            do {
                try withRetries(backend, outcome: &outcome) { outcome in
                    try openAI(chat, model: model, backend: backend, outcome: &outcome)
                }
                if probe {
                    try resources.circuits.recordProbeSuccess(tenant: tenant.id.rawValue, backend: backend.name)
                    log.event(
                        "circuit_close", ["tenant": .string(tenant.id.rawValue), "backend": .string(backend.name)])
                }
                settleCost(model, &outcome)
                return
            } catch let failure as RetryableUpstream {
                if let circuit = tenant.circuit,
                    try resources.circuits.recordFailure(
                        tenant: tenant.id.rawValue, backend: backend.name, settings: circuit, wasProbe: probe,
                        nowMs: Posix.wallMicros() / 1000)
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
        let chain = ([requested] + (tenant.fallbacks[requested] ?? [])).compactMap { config.models[$0] }
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

    private func completionID() -> String {
        let source = request.requestID.isEmpty ? String(Posix.wallMicros()) : request.requestID
        return "chatcmpl-" + String(source.filter { $0.isLetter || $0.isNumber }.prefix(32))
    }

    // MARK: mock

    private func mock(_ chat: ChatRequest, model: ModelConfig, outcome: inout Outcome) throws {
        let reply = MockProvider.replyText(for: chat)
        let usage = MockProvider.usage(for: chat, reply: reply)
        let id = completionID()
        let created = JSONValue.int(Int(Posix.wallMicros() / 1_000_000))
        let modelValue = JSONValue.string(model.name)
        outcome.usage = usage
        outcome.upstreamMs = 0
        outcome.status = 200
        guard chat.stream else {
            let body = JSONValue.object([
                ("id", .string(id)), ("object", .string("chat.completion")), ("created", created),
                ("model", modelValue),
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
            sink.json(200, body, headers: baseHeaders)
            return
        }
        writeStreamHead()
        func chunk(_ delta: JSONValue, finish: JSONValue) -> [UInt8] {
            let value = JSONValue.object([
                ("id", .string(id)), ("object", .string("chat.completion.chunk")), ("created", created),
                ("model", modelValue),
                ("choices", .array([.object([("index", .int(0)), ("delta", delta), ("finish_reason", finish)])])),
            ])
            return SSEParser.frame(data: value.jsonString)
        }
        var events = [chunk(.object([("role", .string("assistant")), ("content", .string(""))]), finish: .null)]
        for piece in MockProvider.chunks(reply) {
            events.append(chunk(.object([("content", .string(piece))]), finish: .null))
        }
        events.append(chunk(.object([]), finish: .string("stop")))
        if chat.includeUsage {
            let value = JSONValue.object([
                ("id", .string(id)), ("object", .string("chat.completion.chunk")), ("created", created),
                ("model", modelValue), ("choices", .array([])), ("usage", usage.openAI),
            ])
            events.append(SSEParser.frame(data: value.jsonString))
        }
        events.append(SSEParser.frame(data: "[DONE]"))
        for event in events {
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

    // MARK: OpenAI-compatible upstream

    private func openAI(_ chat: ChatRequest, model: ModelConfig, backend: BackendConfig, outcome: inout Outcome)
        throws
    {
        var body = chat.body.setting("model", .string(model.upstreamModel))
        if chat.stream {
            // Always ask for usage so streams are accounted exactly; the extra chunk is dropped
            // below unless the client asked for it.
            let options = (chat.body["stream_options"] ?? .object([])).setting("include_usage", .bool(true))
            body = body.setting("stream_options", options)
        }
        let headers = LimitStage.upstreamHeaders(
            backend: backend, principal: principal, accept: chat.stream ? "text/event-stream" : "application/json",
            requestID: request.requestID, trace: outcome.trace)
        let outgoing = OutgoingRequest(
            method: "POST", url: backend.baseURL + "/chat/completions", headers: headers, body: body.bytes,
            connectTimeoutMs: backend.connectTimeoutMs, totalTimeoutMs: backend.timeoutMs)
        let started = Posix.monotonicMs()
        defer { outcome.upstreamMs = Int(Posix.monotonicMs() - started) }
        if chat.stream {
            try stream(outgoing, chat: chat, outcome: &outcome)
        } else {
            try complete(outgoing, outcome: &outcome)
        }
    }

    private func complete(_ outgoing: OutgoingRequest, outcome: inout Outcome) throws {
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
        outcome.usage = Usage(openAI: json["usage"])
        outcome.status = 200
        sink.send(200, collected, headers: baseHeaders)
    }

    private func stream(_ outgoing: OutgoingRequest, chat: ChatRequest, outcome: inout Outcome) throws {
        var parser = SSEParser()
        var errorBody = [UInt8]()
        var usage: Usage?
        var clientGone = false
        var broken = false
        var sawDone = false
        var streamedText = 0
        let started = Posix.monotonicMs()
        var firstByteMs: Int?
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
            for event in events {
                if event.data == "[DONE]" {
                    sawDone = true
                    sink.body(SSEParser.frame(data: event.data))
                    continue
                }
                let json = try? JSONParser.parse(event.data)
                for choice in json?["choices"]?.arrayValue ?? [] {
                    streamedText += choice["delta"]?["content"]?.stringValue?.utf8.count ?? 0
                }
                if let reported = Usage(openAI: json?["usage"]) {
                    usage = reported
                    // The usage-only chunk is dropped unless the client asked for usage.
                    if !chat.includeUsage, json?["choices"]?.arrayValue?.isEmpty == true { continue }
                }
                sink.body(SSEParser.frame(data: event.data, event: event.event))
            }
            if !events.isEmpty && !sink.flush() {
                clientGone = true
                return false
            }
            return true
        }
        outcome.ttfbMs = firstByteMs
        // Without a usage report, count what was streamed (prompt and text by the documented estimate).
        if let usage {
            outcome.usage = usage
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
        if broken {
            failure = .upstreamError("the upstream stream sent an oversized event")
        } else if case .failure(let error) = result {
            failure = error.isTimeout ? .upstreamTimeout : .upstreamError("the upstream stream was cut off")
        } else if !sawDone {
            failure = .upstreamError("the upstream stream ended without [DONE]")
        }
        if let failure {
            // Mid-stream: a final error event and a clean end, so SDKs raise instead of hanging.
            outcome.errorCode = failure.code
            sink.body(SSEParser.frame(data: failure.body.jsonString))
            sink.body(SSEParser.frame(data: "[DONE]"))
        }
        sink.flush()
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
            throw GatewayError.upstreamError("transport failure (curl \(error.code))")
        }
    }

    /// An upstream non-2xx answer as the client's error: client errors pass through, the rest are 502.
    /// An upstream non-2xx answer: 429 and 5xx are retryable (with the upstream's Retry-After), the rest final.
    static func failure(_ status: Int, _ body: [UInt8], retryAfter: String?) -> any Error {
        let error = upstreamFailure(status, body)
        guard status == 429 || status >= 500 else { return error }
        let seconds = retryAfter.flatMap { Int($0.trimmingCharacters(in: " ")) }
        return RetryableUpstream(error: error, retryAfterMs: seconds.map { min($0, 600) * 1000 })
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
