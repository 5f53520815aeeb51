import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// Routes a request: operator endpoints by the front end's route, tenant endpoints after authentication,
/// model calls through their `Pipeline`; then settles and logs.
public final class Gateway: Sendable {
    let configs: any ConfigSource
    let log: AppLog
    let options: GatewayOptions
    let authenticator = Authenticator(hasher: OpenSSLKeyHasher())
    let admin: (any AdminResponder)?

    /// The pool's fair share of in-flight model calls.
    let concurrency: ConcurrencyGate

    public init(
        configs: any ConfigSource, log: AppLog, options: GatewayOptions, concurrency: ConcurrencyGate,
        admin: (any AdminResponder)? = nil
    ) {
        self.configs = configs
        self.log = log
        self.options = options
        self.concurrency = concurrency
        self.admin = admin
    }

    /// Requests being handled by this worker now.
    public let inFlight = Locked(0)

    /// Handles one request completely; never throws, always answers.
    public func handle(_ request: Request, tooLarge: Bool, sink: ResponseSink, resources: ThreadResources) {
        let started = Posix.monotonicMs()
        inFlight.withLock { $0 += 1 }
        defer { inFlight.withLock { $0 -= 1 } }
        var exchange = Exchange()
        let api: ClientAPI = request.path.hasPrefix("/v1/messages") ? .anthropic : .openAI
        exchange.trace = TraceContext(header: request.headers["traceparent"], newTraceID: resources.ids.hex(bytes: 16))
        var failure: GatewayError?
        do {
            if tooLarge { throw GatewayError.requestTooLarge(limit: options.maxBodyBytes) }
            if request.bodyIncomplete {
                throw GatewayError.invalidRequest("The request body ended before its Content-Length.")
            }
            try route(request, sink: sink, resources: resources, exchange: &exchange)
        } catch let retryable as RetryableUpstream {
            failure = retryable.error
        } catch let error as GatewayError {
            failure = error
        } catch let error as any StorageFailure where error.isStorageFailure {
            // The disk is full, a write failed or the database stayed locked past the busy timeout: the
            // transaction rolled back, nothing changed; the client may retry later.
            failure = .serviceUnavailable("the database cannot take the write now (\(error.reason))")
            exchange.errorDetail = "storage: \(error.reason)"
        } catch {
            failure = .internalError
            exchange.errorDetail = ErrorDetail.of(error)
        }
        if let failure {
            exchange.errorCode = failure.code
            exchange.status = failure.status
            exchange.call?.errorCode = failure.code
            exchange.call?.status = failure.status
            if !sink.headWritten {
                let headers = exchange.call?.baseHeaders ?? exchange.tenant.map { [("X-Tenant-ID", $0)] } ?? []
                sink.json(failure.status, ReplyWriter.errorBody(failure, api: api), headers: headers + failure.headers)
            }
        } else if let call = exchange.call {
            exchange.status = call.status
            exchange.errorCode = call.errorCode
        }
        if request.route != .api && request.route != .admin {
            sink.release()
            return
        }
        let latency = Int(Posix.monotonicMs() - started)
        if let call = exchange.call, call.accountable {
            // The end of a successful answer waits until its execution row and settlement are written:
            // whatever the client saw succeed is in the books even if this worker is killed a moment later.
            // (An error answer does not wait: its row follows, and a store that just failed it may still be
            // failing.)
            let seq = settle(call, latencyMs: latency, resources: resources)
            let succeeded = failure == nil && (200..<300).contains(call.status) && call.errorCode == nil
            if succeeded && options.durableSettlements && !resources.settlements.waitWritten(seq) {
                let error = GatewayError.serviceUnavailable("The request could not be recorded; it was not served.")
                exchange.status = error.status
                exchange.errorCode = error.code
                sink.replaceEnd(
                    status: error.status, body: ReplyWriter.errorBody(error, api: api).bytes,
                    tail: call.streamed ? ReplyWriter.failureTail(error, api: call.api) : [])
            }
        }
        sink.release()
        logRequest(request, exchange, latencyMs: latency)
    }

    private func route(_ request: Request, sink: ResponseSink, resources: ThreadResources, exchange: inout Exchange)
        throws
    {
        // The front end's location chose the route; the path only picks an endpoint inside it.
        switch (request.route, request.method, request.path) {
        case (.healthz, "GET", "/healthz"), (.healthz, "HEAD", "/healthz"):
            exchange.status = 200
            sink.json(200, .object([("status", .string("ok"))]))
            return
        case (.readyz, "GET", "/readyz"):
            exchange.status = try ready(sink: sink, resources: resources)
            return
        case (.metrics, "GET", "/metrics"):
            exchange.status = try metrics(request, sink: sink, resources: resources)
            return
        case (.admin, _, _) where request.path == "/admin" || request.path.hasPrefix("/admin/"):
            guard let admin else { throw GatewayError.notFound }
            let config = configs.config
            let answer = try admin.respond(to: request, sink: sink, config: config)
            exchange.status = answer.status
            exchange.errorCode = answer.errorCode
            exchange.errorDetail = answer.errorDetail
            return
        case (.api, _, _): break
        default: throw GatewayError.notFound
        }
        let endpoint: Endpoint?
        switch request.path {
        case "/v1/chat/completions": endpoint = .chat
        case "/v1/messages": endpoint = .messages
        case "/v1/messages/count_tokens": endpoint = .countTokens
        case "/v1/embeddings": endpoint = .embeddings
        case "/v1/responses": endpoint = .responses
        case let path where path.hasPrefix("/v1/responses/"): endpoint = nil
        case "/v1/models", "/v1/tenant-info", "/v1/collections": endpoint = nil
        case let path where path.hasPrefix("/v1/collections/"): endpoint = nil
        default: throw GatewayError.notFound
        }
        let (config, jwt) = configs.snapshot
        let principal = try authenticator.authenticate(
            ResolutionInput(
                pathTenant: request.pathTenant, headerTenant: request.headers["x-tenant-id"],
                credential: request.credential, providerKey: request.headers["x-provider-key"]), config: config,
            jwt: jwt, now: Posix.wallMicros() / 1_000_000)
        exchange.tenant = principal.tenant.id.rawValue
        exchange.keyID = principal.key.id
        // A JWT's principal has no key row (its record has no lookup prefix): nothing to mark.
        if !principal.key.lookupPrefix.isEmpty { configs.markUsed(principal.key.id) }
        let tenantHeader = [("X-Tenant-ID", principal.tenant.id.rawValue)]
        switch (request.method, endpoint) {
        case ("POST", let endpoint?):
            var call = ModelCall(
                endpoint: endpoint, request: request, principal: principal, config: config, trace: exchange.trace,
                inspection: InspectionBudget(rate: options.inspection, clock: Posix.threadCPUNanos))
            defer { exchange.call = call }
            // A BYOK tenant's model calls carry the client's own provider key, beside its gateway credential.
            _ = try principal.requireProviderKey()
            // Fair share: a model call holds a thread for the upstream's whole answer.
            do {
                try concurrency.admit(principal.tenant)
            } catch {
                call.accountable = true
                call.hold.refusedLimit = error.type
                throw error
            }
            defer { concurrency.release(principal.tenant) }
            let services = StageServices(sink: sink, resources: resources, log: log, options: options)
            try Pipeline.of(endpoint).run(&call, services)
        case (_, nil) where request.path.hasPrefix("/v1/collections"):
            // Adding documents and searching may call the tenant's embedding model: they take a slot of the
            // tenant's fair share like any model call.
            if request.method == "POST" { try concurrency.admit(principal.tenant) }
            defer { if request.method == "POST" { concurrency.release(principal.tenant) } }
            let documents = DocumentsEndpoint(
                context: RequestContext(
                    request: request, principal: principal, config: config, trace: exchange.trace,
                    resources: resources, log: log), sink: sink)
            exchange.status = try documents.respond()
        case (_, nil) where request.path.hasPrefix("/v1/responses/"):
            exchange.status = try storedResponse(request, principal: principal, sink: sink, resources: resources)
        case ("GET", nil) where request.path == "/v1/models":
            exchange.status = 200
            sink.json(200, models(principal.tenant, config), headers: tenantHeader)
        case ("GET", nil):
            exchange.status = 200
            let user = request.queryValue("user")
            if let user, !Bounds.isIdentifier(user) {
                throw GatewayError.invalidRequest(
                    "'user' must be 1 to \(Bounds.maxUserBytes) bytes without control characters.", param: "user")
            }
            // Flags roll out by a subject the client cannot choose: `user` is checked but picks no bucket.
            _ = user
            let subject = principal.subject ?? principal.key.id
            var info = tenantInfo(principal.tenant, config, subject: subject)
            info = info.setting("limits", try limitsNow(principal.tenant, resources: resources))
            info = info.setting("key", keyInfo(principal))
            sink.json(200, info, headers: tenantHeader)
        default:
            throw GatewayError.methodNotAllowed
        }
    }

}
