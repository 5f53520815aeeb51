import TenantGateCore
import TenantGateSystem

/// `POST /v1/messages/count_tokens` (Anthropic): exact from an Anthropic backend (the client's body,
/// natively), TenantGate's documented estimate for every other backend. Free, like upstream: no token or
/// money is charged; a call that reaches the upstream counts against the tenant's requests per minute and
/// is logged as an execution with zero tokens.
struct CountTokensHandler {
    let config: GatewayConfig
    let principal: Principal
    let request: Request
    let sink: ResponseSink
    let resources: ThreadResources
    let log: AppLog

    func run(outcome: inout Outcome) throws {
        let tenant = principal.tenant
        var json = try JSONParser.parseRequestBody(request.body)
        guard case .object = json else { throw GatewayError.invalidRequest("The request body must be a JSON object.") }
        // The Messages validation needs max_tokens, which count_tokens does not take.
        if json["max_tokens"] == nil { json = json.setting("max_tokens", .int(1)) }
        let parsed = try MessagesAPI.parse(json: json)
        let subject = parsed.chat.user ?? principal.subject ?? principal.key.id
        guard tenant.feature("messages_api", subject: subject) else {
            throw GatewayError.featureDisabled("messages_api")
        }
        try parsed.checkGates(tenant: tenant, subject: subject, beta: request.headers["anthropic-beta"] != nil)
        let (name, model, backend) = try ModelSelection.resolve(parsed.chat.model, tenant: tenant, config: config)
        outcome.model = name
        outcome.backend = backend.name
        var headers = [("X-Tenant-ID", tenant.id.rawValue), ("X-TenantGate-Model", name)]
        guard backend.provider == .anthropic else {
            let tools = parsed.original["tools"].map { ($0.jsonString.utf8.count + 3) / 4 } ?? 0
            let estimate = TokenEstimate.prompt(parsed.chat.promptText) + tools
            outcome.status = 200
            sink.json(200, .object([("input_tokens", .int(estimate))]), headers: headers)
            return
        }
        // The upstream's shared key is spent on it: it is a request like any other for the rate limit.
        outcome.accountable = true
        try LimitStage.reserve(
            tenant: tenant, need: Reservation(promptTokens: 0, completionTokens: 0, costNano: 0), backend: backend,
            resources: resources, log: log, requestID: request.requestID, outcome: &outcome)
        let body = MessagesAPI.nativeBody(parsed.original, upstreamModel: model.upstreamModel, system: nil)
            .removing("max_tokens").removing("stream")
        var lines = try LimitStage.upstreamHeaders(
            backend: backend, principal: principal, accept: "application/json", requestID: request.requestID,
            trace: outcome.trace)
        if let beta = ChatHandler.headerValue(request.headers["anthropic-beta"]) {
            lines.append("anthropic-beta: \(beta)")
        }
        let outgoing = OutgoingRequest(
            method: "POST", url: AnthropicRequest.url(baseURL: backend.baseURL) + "/count_tokens", headers: lines,
            body: body.bytes, connectTimeoutMs: backend.connectTimeoutMs, totalTimeoutMs: backend.timeoutMs)
        var collected = [UInt8]()
        let result = resources.curl.perform(outgoing) { _, bytes in
            collected.append(contentsOf: bytes)
            return collected.count <= 1 << 20
        }
        let head = try ChatHandler.check(result, bodyTooLarge: collected.count > 1 << 20)
        guard (200..<300).contains(head.status) else {
            let failure = ChatHandler.failure(head.status, collected, retryAfter: head.headers["retry-after"])
            throw (failure as? RetryableUpstream)?.error ?? failure
        }
        guard let answer = try? JSONParser.parse(collected), answer["input_tokens"]?.intValue != nil else {
            throw GatewayError.upstreamError("the upstream's token count is not a JSON object with input_tokens")
        }
        outcome.status = 200
        headers += outcome.limitHeaders
        sink.send(200, collected, headers: headers)
    }
}
