import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// Calls the model through the fallback router and its provider: a whole answer is left for the reply
/// stage, a stream is relayed to the client as it comes. Usage and cost land in `call.served`.
struct UpstreamStage: Stage {
    let name = "upstream"

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        guard let target = call.target else { return }
        let client = UpstreamClient(
            transport: services.resources.transport, principal: call.principal, requestID: call.request.requestID,
            trace: call.trace, ids: services.resources.ids)
        switch call.input {
        case .chat(let chat, let messages):
            try self.chat(chat, messages: messages, target: target, client: client, &call, services)
        case .embeddings(let embed):
            try embeddings(embed, target: target, client: client, &call, services)
        case .countTokens(let messages):
            try countTokens(messages, target: target, client: client, &call, services)
        case .none: return
        }
    }

    // MARK: chat

    private func chat(
        _ chat: ChatRequest, messages: MessagesRequest?, target: Target, client: UpstreamClient,
        _ call: inout ModelCall, _ services: StageServices
    ) throws {
        let router = FallbackRouter(circuits: RememberedCircuits(services.resources.shared), log: services.log)
        let sink = services.sink
        var retries = 0
        // Only Anthropic clients see it (in message_start, before the exact count arrives).
        let inputEstimate = call.api == .anthropic ? TokenEstimate.prompt(chat.promptText) : 0
        let created = Int(Posix.wallMicros() / 1_000_000)
        // Mid-stream policies and the cache's recorder read every piece: native streams are decoded and
        // written again.
        let guarded = chat.stream && (call.tenant.policies.any(.midstream) || call.cache?.key != nil)
        var fresh: JSONValue?
        try router.serve(
            target.chain, tenant: call.tenant, started: { sink.headWritten }, onRetry: { retries += 1 }
        ) { candidate, index in
            call.served.model = candidate.name
            call.served.backend = candidate.backend.name
            call.served.fallbackUsed = index > 0
            call.served.retries = retries
            var providerCall = ProviderCall(
                chat: chat, model: candidate.model, backend: candidate.backend, completionID: call.completionID,
                created: created, messages: messages, nativeSystem: call.nativeSystem,
                anthropicVersion: UpstreamClient.headerValue(call.request.headers["anthropic-version"]),
                anthropicBeta: UpstreamClient.headerValue(call.request.headers["anthropic-beta"]))
            providerCall.passthrough = !guarded
            let writer = ReplyWriter.of(
                call, model: candidate.name, includeUsage: chat.includeUsage, inputEstimate: inputEstimate,
                services: services)
            if candidate.backend.responsesNative, let state = call.responses, UpstreamStage.nativeResponses(call) {
                fresh = nil
                try native(
                    state, candidate: candidate, chat: chat, writer: writer, client: client, &call, services)
                call.served.retries = retries
                if let usage = call.served.usage { call.served.costNano = Money.cost(usage, candidate.model) }
                return
            }
            switch Provider.of(candidate.backend.provider) {
            case .local(let provider):
                let (answer, stream) = provider.answer(providerCall)
                call.served.usage = answer.usage
                call.served.upstreamMs = 0
                if chat.stream {
                    fresh = relayLocal(stream, usage: answer.usage, created: created, writer: writer, &call, services)
                } else {
                    fresh = UpstreamStage.neutral(answer, call: providerCall)
                    reply(answer, writer: writer, &call)
                }
            case .remote(let provider):
                let outgoing = try client.outgoing(
                    try provider.request(providerCall), backend: candidate.backend, stream: chat.stream)
                let started = Posix.monotonicMs()
                defer { call.served.upstreamMs = Int(Posix.monotonicMs() - started) }
                if chat.stream {
                    fresh = try relay(
                        outgoing, decoder: provider.streamDecoder(providerCall), chat: chat, writer: writer,
                        client: client, &call, services)
                } else {
                    let (json, raw) = try client.fetchJSON(outgoing, limit: services.options.maxUpstreamBytes)
                    let answer = try provider.answer(json, raw: raw, call: providerCall)
                    call.served.usage = answer.usage
                    fresh = UpstreamStage.neutral(answer, call: providerCall)
                    reply(answer, writer: writer, &call)
                }
            }
            call.served.retries = retries
            if let usage = call.served.usage { call.served.costNano = Money.cost(usage, candidate.model) }
        }
        ResponseCacheService.keep(fresh, chat: chat, messages: messages, target: target, &call)
    }

    /// Whether a Responses API call may go to a `responses: native` backend as the client wrote it: only
    /// when no stage changed what the upstream must see (a tenant prompt, retrieved context, a guardrail
    /// rewrite) and nothing has to read the answer piece by piece (mid-stream policies, the cache).
    static func nativeResponses(_ call: ModelCall) -> Bool {
        call.prompt == nil && call.retrieval == nil && call.cache?.key == nil
            && !call.tenant.policies.any(.midstream)
            && !call.policyTriggers.contains { $0.mode == .enforce && ($0.action == .redact || $0.action == .inject) }
    }

    /// A Responses API call served by the backend's own `/responses` (nothing stored upstream; the
    /// earlier conversation sent as input items); the answer keeps the upstream's shape with the gateway's
    /// id.
    private func native(
        _ state: ResponsesState, candidate: (name: String, model: ModelConfig, backend: BackendConfig),
        chat: ChatRequest, writer: ReplyWriter, client: UpstreamClient, _ call: inout ModelCall,
        _ services: StageServices
    ) throws {
        // The cap that was reserved goes upstream, as on every other path (and the one a budget fitted).
        let body = ResponsesNative.body(
            state.request, previous: state.previous, upstreamModel: candidate.model.upstreamModel
        ).setting("max_output_tokens", .int(chat.completionCap(for: candidate.model)))
        let outgoing = try client.outgoing(
            ProviderRequest(url: candidate.backend.baseURL + "/responses", body: body), backend: candidate.backend,
            stream: chat.stream)
        let started = Posix.monotonicMs()
        defer { call.served.upstreamMs = Int(Posix.monotonicMs() - started) }
        if chat.stream {
            let keeper = ResponsesKeeper(call, services: services)
            let decoder = ResponsesNativeDecoder(
                id: state.id, model: candidate.name, request: state.request.original,
                beforeFinal: { keeper?.keep($0) })
            _ = try relay(outgoing, decoder: decoder, chat: chat, writer: writer, client: client, &call, services)
        } else {
            let (json, _) = try client.fetchJSON(outgoing, limit: services.options.maxUpstreamBytes)
            guard json["output"]?.arrayValue != nil else {
                throw GatewayError.upstreamError("the upstream's answer is not a response object")
            }
            let response = ResponsesNative.rewrite(
                json, id: state.id, model: candidate.name, request: state.request.original)
            call.served.usage = ResponsesNative.usage(response)
            call.reply = PendingReply(body: response.bytes)
        }
    }

    /// A whole answer in the provider-neutral (Chat Completions) shape the cache keeps.
    static func neutral(_ answer: ProviderAnswer, call: ProviderCall) -> JSONValue? {
        switch answer {
        case .chat(let json, _, _): return json
        case .native(let bytes, _):
            // Only text and tool use replay faithfully; thinking or server tool blocks are not kept.
            guard let json = try? JSONParser.parse(bytes),
                (json["content"]?.arrayValue ?? []).allSatisfy({
                    ["text", "tool_use"].contains($0["type"]?.stringValue ?? "")
                })
            else { return nil }
            return AnthropicResponse.completion(
                json, id: call.completionID, model: call.model.name, created: call.created
            ).0
        }
    }

    /// A whole answer, in the client's API, for the reply stage.
    private func reply(_ answer: ProviderAnswer, writer: ReplyWriter, _ call: inout ModelCall) {
        switch answer {
        case .chat(let json, let raw, let usage):
            call.reply = PendingReply(body: writer.completion(json, raw: raw, usage: usage))
        case .native(let bytes, _):
            call.reply = PendingReply(body: bytes)
        }
    }

    /// A locally made stream (the mock), flushed piece by piece like a real one.
    private func relayLocal(
        _ pieces: [StreamPiece], usage: Usage?, created: Int, writer: ReplyWriter, _ call: inout ModelCall,
        _ services: StageServices
    ) -> JSONValue? {
        var relay = StreamRelay(
            writer: writer, filters: AnswerFilters.of(call, services), sink: services.sink,
            headers: call.answerHeaders)
        relay.open()
        call.status = 200
        defer { call.policyTriggers.record(AnswerFilters.triggers(relay)) }
        let factory = ChunkFactory(id: call.completionID, model: call.served.model ?? "", created: created)
        for piece in pieces {
            guard relay.write([piece], usage: usage, usageChunk: { factory.usage($0) }) else {
                if relay.clientGone {
                    call.status = 499
                    call.errorCode = "client_closed"
                }
                return nil
            }
        }
        return AnswerFilters.recorded(relay, model: call.served.model ?? "")
    }

    /// Relays an upstream stream: SSE events → the provider's decoder → the relay. A failure before the
    /// first byte reached the client is thrown (retried or answered as an error); after it, the stream
    /// ends with an error event.
    private func relay(
        _ outgoing: OutgoingRequest, decoder: any StreamDecoder, chat: ChatRequest, writer: ReplyWriter,
        client: UpstreamClient, _ call: inout ModelCall, _ services: StageServices
    ) throws -> JSONValue? {
        var decoder = decoder
        var relay = StreamRelay(
            writer: writer, filters: AnswerFilters.of(call, services), sink: services.sink,
            headers: call.answerHeaders)
        defer { call.policyTriggers.record(AnswerFilters.triggers(relay)) }
        var parser = SSEParser()
        var errorBody = [UInt8]()
        var broken = false
        let started = Posix.monotonicMs()
        var firstByteMs: Int?
        let result = client.transport.perform(outgoing) { status, bytes in
            guard (200..<300).contains(status) else {
                errorBody.append(contentsOf: bytes)
                return errorBody.count <= 1 << 20
            }
            if firstByteMs == nil { firstByteMs = Int(Posix.monotonicMs() - started) }
            guard let events = parser.feed(bytes) else {
                broken = true
                return false
            }
            var pieces: [StreamPiece] = []
            for event in events {
                pieces += decoder.decode(event)
                if decoder.failure != nil { break }
            }
            guard relay.write(pieces, usage: decoder.usage, usageChunk: decoder.usageChunk) else { return false }
            return decoder.failure == nil
        }
        call.served.ttfbMs = firstByteMs
        // Without a usage report, count what was streamed (prompt and text by the documented estimate).
        if let usage = decoder.usage {
            call.served.usage = usage
        } else if decoder.streamedTextBytes > 0 {
            call.served.usage = Usage(
                promptTokens: TokenEstimate.prompt(chat.promptText),
                completionTokens: decoder.streamedTextBytes.saturatingAdd(3) / 4)
        }
        if relay.clientGone {
            call.status = 499
            call.errorCode = "client_closed"
            return nil
        }
        if !relay.opened {
            let head = try UpstreamClient.check(result, bodyTooLarge: false)
            if !(200..<300).contains(head.status) {
                throw UpstreamClient.failure(head.status, errorBody, retryAfter: head.headers["retry-after"])
            }
        }
        var failure: GatewayError?
        if relay.stoppedByFilter {
            // A policy ended the answer: a proper end (content_filter) went out already.
        } else if let message = decoder.failure {
            failure = .upstreamError("the upstream stream reported an error: \(message.prefix(300))")
        } else if broken {
            failure = .upstreamError("the upstream stream sent an oversized event")
        } else if case .failure(let error) = result {
            failure = error.isTimeout ? .upstreamTimeout : .upstreamError("the upstream stream was cut off")
        } else if !decoder.ended {
            failure = .upstreamError(decoder.missingEnd)
        }
        // Nothing reached the client yet (no event it would see: an empty or non-SSE 2xx body, a stream
        // cut before its first event): a plain error answer, retried or passed to a fallback like any.
        if !relay.opened, let failure { throw failure }
        relay.open()
        call.status = 200
        if let failure {
            call.errorCode = failure.code
            // A native stream already carried the upstream's own error event.
            if !(decoder.forwardsFailure && decoder.failure != nil) { relay.fail(failure) }
        }
        services.sink.flush()
        // Only a stream that ended well, untouched by a policy, is kept.
        guard failure == nil, !relay.stoppedByFilter else { return nil }
        return AnswerFilters.recorded(relay, model: call.served.model ?? "")
    }

    // MARK: embeddings and token counts

    private func embeddings(
        _ embed: EmbeddingsRequest, target: Target, client: UpstreamClient, _ call: inout ModelCall,
        _ services: StageServices
    ) throws {
        let provider = Provider.of(target.backend.provider)
        if case .local(let local) = provider, let mock = local as? any LocalEmbeddingsProvider {
            let (body, usage) = mock.embeddings(embed, model: target.model)
            call.served.usage = usage
            call.served.upstreamMs = 0
            call.reply = PendingReply(body: body.bytes)
        } else if let remote = provider.embeddings {
            let outgoing = try client.outgoing(
                remote.embeddingsRequest(embed, model: target.model, backend: target.backend), backend: target.backend,
                stream: false)
            let started = Posix.monotonicMs()
            defer { call.served.upstreamMs = Int(Posix.monotonicMs() - started) }
            let router = FallbackRouter(circuits: RememberedCircuits(services.resources.shared), log: services.log)
            var retries = 0
            try router.serve(
                [(target.name, target.model, target.backend)], tenant: call.tenant, started: { false },
                onRetry: { retries += 1 }
            ) { _, _ in
                let (json, raw) = try client.fetchJSON(outgoing, limit: services.options.maxUpstreamBytes)
                call.served.usage = Usage(openAI: json["usage"])
                call.reply = PendingReply(body: raw)
            }
            call.served.retries = retries
        } else {
            throw GatewayError.invalidRequest("Model '\(target.name)' does not offer embeddings.", param: "model")
        }
        if let usage = call.served.usage { call.served.costNano = Money.cost(usage, target.model) }
    }

    private func countTokens(
        _ messages: MessagesRequest, target: Target, client: UpstreamClient, _ call: inout ModelCall,
        _ services: StageServices
    ) throws {
        guard let counter = Provider.of(target.backend.provider).tokenCounting else { return }
        let request = counter.countTokensRequest(
            messages, model: target.model, backend: target.backend,
            anthropicBeta: UpstreamClient.headerValue(call.request.headers["anthropic-beta"]))
        let outgoing = try client.outgoing(request, backend: target.backend, stream: false)
        let raw: [UInt8]
        do {
            raw = try client.fetch(outgoing, limit: 1 << 20)
        } catch let failure as RetryableUpstream {
            throw failure.error
        }
        guard let answer = try? JSONParser.parse(raw), answer["input_tokens"]?.intValue != nil else {
            throw GatewayError.upstreamError("the upstream's token count is not a JSON object with input_tokens")
        }
        call.reply = PendingReply(body: raw)
    }
}
