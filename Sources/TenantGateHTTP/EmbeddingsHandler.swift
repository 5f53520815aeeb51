import TenantGateCore
import TenantGateStore
import TenantGateSystem

/// `POST /v1/embeddings`: validate, check the `embeddings` flag and the model, reserve, call the
/// OpenAI-compatible backend (or the mock), answer with the upstream's body.
struct EmbeddingsHandler {
    let config: GatewayConfig
    let principal: Principal
    let request: Request
    let sink: ResponseSink
    let resources: ThreadResources
    let options: GatewayOptions
    let log: AppLog

    func run(outcome: inout Outcome) throws {
        let tenant = principal.tenant
        let embed = try EmbeddingsRequest.parse(request.body)
        outcome.endUser = embed.user ?? principal.subject
        let subject = embed.user ?? principal.subject ?? principal.key.id
        guard tenant.feature("embeddings", subject: subject) else { throw GatewayError.featureDisabled("embeddings") }
        if let name = embed.model ?? tenant.defaultModel, config.models[name] != nil { outcome.model = name }
        let (modelName, model, backend) = try ModelSelection.resolve(embed.model, tenant: tenant, config: config)
        outcome.backend = backend.name
        guard backend.provider != .anthropic else {
            // Refused before anything is reserved or sent.
            throw GatewayError.invalidRequest("Model '\(modelName)' does not offer embeddings.", param: "model")
        }
        let bound = embed.tokenBound
        try LimitStage.reserve(
            tenant: tenant,
            need: Reservation(
                promptTokens: bound, completionTokens: 0,
                costNano: Money.cost(Usage(promptTokens: bound, completionTokens: 0), model)),
            backend: backend, resources: resources, log: log, requestID: request.requestID, outcome: &outcome)
        let headers = [("X-Tenant-ID", tenant.id.rawValue)] + outcome.limitHeaders
        switch backend.provider {
        case .mock:
            let data: [JSONValue] = embed.texts.enumerated().map { index, text in
                .object([
                    ("object", .string("embedding")), ("index", .int(index)),
                    ("embedding", .array(MockProvider.embedding(text).map { .number(String($0)) })),
                ])
            }
            let tokens = embed.texts.reduce(embed.tokenIDs) { $0 + TokenEstimate.text($1) }
            let usage = Usage(promptTokens: tokens, completionTokens: 0)
            outcome.usage = usage
            outcome.upstreamMs = 0
            outcome.status = 200
            sink.json(
                200,
                .object([
                    ("object", .string("list")), ("data", .array(data)), ("model", .string(model.name)),
                    ("usage", .object([("prompt_tokens", .int(tokens)), ("total_tokens", .int(tokens))])),
                ]), headers: headers)
        case .openai:
            let body = embed.body.setting("model", .string(model.upstreamModel)).bytes
            let outgoing = OutgoingRequest(
                method: "POST", url: backend.baseURL + "/embeddings",
                headers: try LimitStage.upstreamHeaders(
                    backend: backend, principal: principal, accept: "application/json", requestID: request.requestID,
                    trace: outcome.trace),
                body: body, connectTimeoutMs: backend.connectTimeoutMs, totalTimeoutMs: backend.timeoutMs)
            var collected = [UInt8]()
            let limit = options.maxUpstreamBytes
            let started = Posix.monotonicMs()
            let result = resources.curl.perform(outgoing) { _, bytes in
                collected.append(contentsOf: bytes)
                return collected.count <= limit
            }
            outcome.upstreamMs = Int(Posix.monotonicMs() - started)
            let head = try ChatHandler.check(result, bodyTooLarge: collected.count > limit)
            guard (200..<300).contains(head.status) else { throw ChatHandler.upstreamFailure(head.status, collected) }
            guard let json = try? JSONParser.parse(collected), case .object = json else {
                throw GatewayError.upstreamError("the upstream returned a body that is not a JSON object")
            }
            outcome.usage = Usage(openAI: json["usage"])
            outcome.status = 200
            sink.send(200, collected, headers: headers)
        case .anthropic:
            return  // refused above
        }
        if let usage = outcome.usage { outcome.costNano = Money.cost(usage, model) }
    }
}
