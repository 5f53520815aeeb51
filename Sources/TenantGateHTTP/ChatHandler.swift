import TenantGateCore
import TenantGateStore
import TenantGateSystem

/// `POST /v1/chat/completions`: validate, pick the model and backend, call it, answer (JSON or SSE).
struct ChatHandler {
    let config: GatewayConfig
    let tenant: TenantConfig
    let keyID: String
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
        guard let modelName = chat.model ?? tenant.defaultModel else {
            throw GatewayError.invalidRequest("No model given and the tenant has no default model.", param: "model")
        }
        // Only catalog names become the model label: arbitrary client strings would explode metric cardinality.
        if config.models[modelName] != nil { outcome.model = modelName }
        guard tenant.models.contains(modelName), let model = config.models[modelName],
            let backend = config.backends[model.backend]
        else { throw GatewayError.modelNotAllowed(modelName) }
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
        outcome.backend = backend.name
        try reserve(chat, model: model, backend: backend, outcome: &outcome)
        baseHeaders += outcome.limitHeaders
        switch backend.provider {
        case .mock:
            try mock(chat, model: model, outcome: &outcome)
        case .openai:
            try openAI(chat, model: model, backend: backend, outcome: &outcome)
        case .anthropic:
            throw GatewayError.upstreamError("provider 'anthropic' is not supported by this build")
        }
        if let usage = outcome.usage { outcome.costNano = Money.cost(usage, model) }
    }

    private func reserve(_ chat: ChatRequest, model: ModelConfig, backend: BackendConfig, outcome: inout Outcome)
        throws
    {
        try LimitStage.reserve(
            tenant: tenant, need: Reservation(chat: chat, model: model), backend: backend, resources: resources,
            log: log, requestID: request.requestID, outcome: &outcome)
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
            backend: backend, accept: chat.stream ? "text/event-stream" : "application/json",
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
        guard (200..<300).contains(head.status) else { throw ChatHandler.upstreamFailure(head.status, collected) }
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
            if !(200..<300).contains(head.status) { throw ChatHandler.upstreamFailure(head.status, errorBody) }
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
            if error.isTimeout { throw GatewayError.upstreamTimeout }
            if error.isConnect { throw GatewayError.upstreamError("could not connect to the upstream") }
            throw GatewayError.upstreamError("transport failure (curl \(error.code))")
        }
    }

    /// An upstream non-2xx answer as the client's error: client errors pass through, the rest are 502.
    static func upstreamFailure(_ status: Int, _ body: [UInt8]) -> GatewayError {
        if [400, 404, 422].contains(status), let json = try? JSONParser.parse(body),
            let message = json["error"]?["message"]?.stringValue
        {
            return .invalidRequest("Upstream rejected the request: \(message.prefix(500))")
        }
        return .upstreamError("the upstream answered HTTP \(status)")
    }
}
