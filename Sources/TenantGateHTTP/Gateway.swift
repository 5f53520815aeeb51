import TenantGateCore
import TenantGateServing
import TenantGateStore
import TenantGateSystem

/// SHA-256 and constant-time comparison for the authenticator, over OpenSSL.
struct OpenSSLKeyHasher: KeyHasher {
    func hash(_ key: String) -> [UInt8] { Crypto.sha256(Array(key.utf8)) }
    func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool { Crypto.constantTimeEqual(a, b) }
}

/// JWT signature checks for the authenticator, over OpenSSL.
struct OpenSSLJWTVerifier: JWTSignatureVerifier {
    let key: JWTKey
    func verify(_ algorithm: JWTAlgorithm, signingInput: [UInt8], signature: [UInt8]) -> Bool {
        key.verify(algorithm.rawValue, signingInput: signingInput, signature: signature)
    }
}

/// What a request did, for its answer and its log line; a model call carries its own `ModelCall`.
struct Exchange {
    var status = 0
    var tenant: String?
    var keyID: String?
    var errorCode: String?
    /// For the log: what failed on the server's side (a storage failure's reason, an unexpected error).
    var errorDetail: String?
    /// The request's trace.
    var trace = TraceContext(header: nil, newTraceID: "")
    /// The model call, for the model endpoints.
    var call: ModelCall?
}

/// What every thread of a worker shares: the pooled read connections, the one write connection, and
/// the group-commit queues and lease book built on it.
struct WorkerServices: Sendable {
    let readers: ConnectionPool
    /// Connections for long reads (a collection's vectors, its full-text index), so a scan never holds
    /// one that a model call needs for its circuit check.
    let scans: ConnectionPool
    /// The admin page's own connections: its work (a login's 600k-round PBKDF2, a page of executions)
    /// never holds one that the API's requests need.
    let admin: ConnectionPool
    /// Circuits found closed lately (read from memory, not through a pooled connection, per model call).
    let closedCircuits = ClosedCircuits()
    let writer: SharedWriter
    let settlements: SettleQueue
    let reservations: ReserveBatcher
    let leases: LeaseBook
}

/// Per-thread resources: a reusable curl handle (made on first use, so upstream connections stay alive
/// per thread) beside the worker's shared services. Never shared between threads.
final class ThreadResources {
    private(set) lazy var curl = CurlClient()
    let shared: WorkerServices
    /// Trace and span ids for this thread's requests.
    let ids: IDGenerator

    init(_ shared: WorkerServices) {
        self.shared = shared
        // Seeded once per thread from the CSPRNG (failing that, from the clocks: ids stay distinct).
        let clocks = [UInt64(bitPattern: Posix.wallMicros()), UInt64(bitPattern: Posix.monotonicMicros())]
        ids = IDGenerator(
            seed: (try? Crypto.randomBytes(32))
                ?? clocks.flatMap { word in (0..<8).map { UInt8(truncatingIfNeeded: word >> UInt64($0 * 8)) } })
    }

    var readers: ConnectionPool { shared.readers }
    var scans: ConnectionPool { shared.scans }
    var writer: SharedWriter { shared.writer }
    var settlements: SettleQueue { shared.settlements }
    var reservations: ReserveBatcher { shared.reservations }
    var leases: LeaseBook { shared.leases }

    /// The circuit breakers, over a pooled connection for the duration of `body`.
    func circuits<T>(_ body: (CircuitStore) throws -> T) throws -> T {
        try readers.with { try body(CircuitStore(reader: $0, writer: shared.writer)) }
    }
}

/// Settings that shape every request.
public struct GatewayOptions: Sendable {
    /// Largest accepted request body.
    public var maxBodyBytes: Int
    /// Largest upstream response body kept in memory (non-streaming).
    public var maxUpstreamBytes = 32 << 20
    /// Whether a successful answer waits for its settlement (`WorkerOptions.durableSettlements`).
    public var durableSettlements: Bool
    /// CPU the content inspection of one request may take (`TENANTGATE_INSPECTION_BASE_MS`,
    /// `TENANTGATE_INSPECTION_MS_PER_MIB`, `TENANTGATE_INSPECTION_US_PER_CHECK`; default 20 ms + 100 ms per
    /// MiB + 50 µs per text checked).
    public var inspection = InspectionRate.standard

    /// Creates options.
    public init(maxBodyBytes: Int, durableSettlements: Bool = true) {
        self.maxBodyBytes = maxBodyBytes
        self.durableSettlements = durableSettlements
    }

    /// Options with the inspection rate read from the environment (unset or not a number: the default).
    public static func fromEnvironment(maxBodyBytes: Int, durableSettlements: Bool) -> GatewayOptions {
        var options = GatewayOptions(maxBodyBytes: maxBodyBytes, durableSettlements: durableSettlements)
        func number(_ name: String) -> Int? { Posix.env(name).flatMap { Int($0) } }
        options.inspection = InspectionRate(
            baseMs: number("TENANTGATE_INSPECTION_BASE_MS") ?? 20,
            msPerMiB: number("TENANTGATE_INSPECTION_MS_PER_MIB") ?? 100,
            microsPerCheck: number("TENANTGATE_INSPECTION_US_PER_CHECK") ?? 50)
        return options
    }
}

/// Routes a request: operator endpoints by the front end's route, tenant endpoints after authentication,
/// model calls through their `Pipeline`; then settles and logs.
final class Gateway: Sendable {
    let configs: ConfigCache
    let log: AppLog
    let options: GatewayOptions
    let authenticator = Authenticator(hasher: OpenSSLKeyHasher())
    let admin: (any AdminResponder)?

    /// The pool's fair share of in-flight model calls.
    let concurrency: ConcurrencyGate

    init(
        configs: ConfigCache, log: AppLog, options: GatewayOptions, concurrency: ConcurrencyGate,
        admin: (any AdminResponder)? = nil
    ) {
        self.configs = configs
        self.log = log
        self.options = options
        self.concurrency = concurrency
        self.admin = admin
    }

    /// Requests being handled by this worker now.
    let inFlight = Locked(0)

    /// Handles one request completely; never throws, always answers.
    func handle(_ request: Request, tooLarge: Bool, sink: ResponseSink, resources: ThreadResources) {
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

    /// Queues the execution row and the settlement of what the call held (group-committed by `SettleQueue`);
    /// returns its sequence number in the queue.
    private func settle(_ call: ModelCall, latencyMs: Int, resources: ThreadResources) -> Int64 {
        var record = ExecutionRecord(
            requestID: call.request.requestID, atMs: Posix.wallMicros() / 1000, tenant: call.tenant.id.rawValue,
            status: call.status)
        record.keyID = call.principal.key.id
        record.endUser = call.endUser
        record.model = call.served.model
        record.backend = call.served.backend
        record.errorCode = call.errorCode
        record.latencyMs = latencyMs
        record.upstreamMs = call.served.upstreamMs
        record.ttfbMs = call.served.ttfbMs
        record.usage = call.served.usage ?? Usage(promptTokens: 0, completionTokens: 0)
        record.costNano = call.served.costNano ?? 0
        record.streamed = call.streamed
        record.prompt = call.prompt.map { "\($0.name)@\($0.version)" }
        record.traceID = call.trace.traceID
        record.fallbackUsed = call.served.fallbackUsed
        record.retries = call.served.retries
        record.refusedLimit = call.hold.refusedLimit
        record.policyTriggers = call.policyTriggers
        record.auditCapture = call.tenant.effective["audit"]?["capture_requests"]?.boolValue ?? false
        record.endpoint = call.endpoint.rawValue
        if let cache = call.cache {
            record.cache = cache.outcome
            if cache.outcome == "miss" && (cache.embeddingNano > 0 || cache.embeddingTokens > 0) {
                // The question's embedding is billed with the call it was made for.
                record.usage = Usage(
                    promptTokens: record.usage.promptTokens.saturatingAdd(cache.embeddingTokens),
                    completionTokens: record.usage.completionTokens, cachedTokens: record.usage.cachedTokens,
                    cacheWriteTokens: record.usage.cacheWriteTokens)
                record.costNano = record.costNano.saturatingAdd(cache.embeddingNano)
            }
            if cache.outcome != "miss" {
                record.savedTokens = cache.savedTokens
                record.savedNano = cache.savedNano
                if cache.touch { record.cacheHitKey = cache.key }
            }
            // An answer a policy redacted or stopped is not kept, nor anything but a clean success.
            let changed = call.policyTriggers.contains {
                $0.mode == .enforce && ($0.action == .redact || $0.action == .block)
            }
            if !changed && call.status == 200 && call.errorCode == nil { record.cacheWrite = cache.write }
        }
        // The question's embedding (vector and hybrid retrieval) is an execution of its own, settled already.
        record.retrieval = call.retrieval?.record
        // Inspected, then stopped before reserving (a policy block): the inspection costs one request.
        let limits = call.tenant.limits
        if limits.dailyTokens != nil || limits.monthlyTokens != nil || limits.dailyNano != nil
            || limits.monthlyNano != nil || limits.globalDailyNano != nil || limits.globalMonthlyNano != nil
        {
            record.budgetLimits = limits
        }
        // Inspected, then stopped by a policy before reserving: the inspection costs one request.
        record.chargesRequest =
            call.policyBlocked && call.hold.reservationID == nil && call.hold.leaseClaim == nil
            && limits.requestsPerMinute != nil
        if let claim = call.hold.leaseClaim { return resources.leases.settle(claim, record: record) }
        return resources.settlements.enqueue(reservation: call.hold.reservationID, record: record)
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
            let answer = try resources.shared.admin.with {
                admin.respond(to: request, sink: sink, db: $0, config: config)
            }
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
        configs.markUsed(principal.key.id)
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
                principal: principal, config: config, request: request, trace: exchange.trace, sink: sink,
                resources: resources, log: log)
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
            sink.json(200, info, headers: tenantHeader)
        default:
            throw GatewayError.methodNotAllowed
        }
    }

    /// `GET|DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`: the tenant's stored
    /// responses (flag `responses_api`). Another tenant's id, or one never issued, is `404` like an unknown one.
    private func storedResponse(
        _ request: Request, principal: Principal, sink: ResponseSink, resources: ThreadResources
    ) throws -> Int {
        // Flags roll out by the same subject as the model calls (the JWT subject, else the key).
        let tenant = principal.tenant
        guard tenant.feature("responses_api", subject: principal.subject ?? principal.key.id) else {
            throw GatewayError.featureDisabled("responses_api")
        }
        let parts = request.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst(3).map(String.init)
        guard let id = parts.first, parts.count <= 2 else { throw GatewayError.notFound }
        let owner = tenant.id.rawValue
        let missing = GatewayError.missing("Response with id '\(ResponseStore.isID(id) ? id : "?")'")
        let headers = [("X-Tenant-ID", owner)]
        switch (request.method, parts.count > 1 ? parts[1] : nil) {
        case ("GET", nil):
            guard let response = try resources.readers.with({ try ResponseStore($0).response(tenant: owner, id: id) })
            else { throw missing }
            sink.json(200, response, headers: headers)
        case ("DELETE", nil):
            guard try resources.writer.withTransaction({ try ResponseStore($0).delete(tenant: owner, id: id) }) else {
                throw missing
            }
            sink.json(
                200, .object([("id", .string(id)), ("object", .string("response.deleted")), ("deleted", .bool(true))]),
                headers: headers)
        case ("GET", "input_items"):
            guard let items = try resources.readers.with({ try ResponseStore($0).inputItems(tenant: owner, id: id) })
            else { throw missing }
            // Newest first by default (OpenAI's `order=desc`); `order=asc` gives them as sent.
            let ordered = request.queryValue("order") == "asc" ? items : items.reversed()
            let limit = min(max(request.queryValue("limit").flatMap { Int($0) } ?? 20, 1), 100)
            let page = Array(ordered.prefix(limit))
            sink.json(
                200,
                .object([
                    ("object", .string("list")), ("data", .array(page)),
                    ("first_id", page.first?["id"] ?? .null), ("last_id", page.last?["id"] ?? .null),
                    ("has_more", .bool(ordered.count > page.count)),
                ]), headers: headers)
        case (_, nil), (_, "input_items"): throw GatewayError.methodNotAllowed
        default: throw GatewayError.notFound
        }
        return 200
    }

    /// `GET /readyz`: the schema is current and every stored upstream key opens; returns the status sent.
    private func ready(sink: ResponseSink, resources: ThreadResources) throws -> Int {
        let version = (try? resources.readers.with { try Migrations.version($0) }) ?? -1
        let unopened = configs.config.unavailableUpstreamKeyCount
        if version == Migrations.current && unopened > 0 {
            // Serving, but the tenants whose stored keys cannot be opened are refused: an operator must look.
            sink.json(
                503,
                .object([
                    ("status", .string("degraded")), ("schema_version", .int(version)),
                    ("upstream_keys_unavailable", .int(unopened)),
                    ("error", .string("stored upstream keys cannot be opened: master key missing or wrong")),
                ]))
            return 503
        } else if version == Migrations.current {
            // A backend whose key variable is not set: this worker serves every other call, so it stays
            // ready, but says which backend is degraded and why.
            let missing = configs.config.missingBackendKeys(env: Posix.env)
            var body: [(String, JSONValue)] = [
                ("status", .string(missing.isEmpty ? "ready" : "degraded")), ("schema_version", .int(version)),
            ]
            if !missing.isEmpty {
                body.append(
                    (
                        "backends_degraded",
                        .array(
                            missing.map {
                                .object([
                                    ("backend", .string($0.backend)), ("error", .string("\($0.variable) is not set")),
                                    ("tenants", .int($0.tenants.count)),
                                ])
                            })
                    ))
            }
            sink.json(200, .object(body))
            return 200
        } else {
            sink.error(.serviceUnavailable("database not reachable or schema not current"))
            return 503
        }
    }

    private func models(_ tenant: TenantConfig, _ config: GatewayConfig) -> JSONValue {
        let data: [JSONValue] = tenant.models.map { name in
            .object([
                ("id", .string(name)), ("object", .string("model")), ("created", .int(0)),
                ("owned_by", .string(config.models[name]?.backend ?? "tenantgate")),
            ])
        }
        return .object([("object", .string("list")), ("data", .array(data))])
    }

    /// Each configured limit with what remains now and when it resets.
    private func limitsNow(_ tenant: TenantConfig, resources: ThreadResources) throws -> JSONValue {
        let now = Posix.wallMicros() / 1000
        let used = try resources.writer.accounting { try $0.usageNow(tenant: tenant.id.rawValue, nowMs: now) }
        let periods = Periods(epochMs: now)
        let l = tenant.limits
        var out: [(String, JSONValue)] = []
        func add(_ name: String, _ limit: Int64?, _ used: Int64, _ reset: Int64?, usd: Bool, _ enforcement: Enforcement)
        {
            guard let limit else { return }
            let value: (Int64) -> JSONValue = { usd ? .number(Money.usdString(nano: $0)) : .int(Int($0)) }
            var members: [(String, JSONValue)] = [
                ("limit", value(limit)), ("used", value(used)), ("remaining", value(max(0, limit - used))),
                ("enforcement", .string(enforcement.rawValue)),
            ]
            members.append(
                ("resets_at", reset.map { .string(AppLog.timestamp($0 * 1_000_000)) } ?? .string("rolling 60 s")))
            if limit - used <= 0 { members.append(("status", .string("exhausted"))) }
            out.append((name, .object(members)))
        }
        add("requests_per_minute", l.requestsPerMinute.map(Int64.init), used.requests, nil, usd: false, .hard)
        add("tokens_per_minute", l.tokensPerMinute.map(Int64.init), used.tokens, nil, usd: false, .hard)
        add(
            "daily_tokens", l.dailyTokens.map(Int64.init), used.day.tokens, periods.dayResetsAt, usd: false,
            l.enforcement)
        add(
            "monthly_tokens", l.monthlyTokens.map(Int64.init), used.month.tokens, periods.monthResetsAt, usd: false,
            l.enforcement)
        add("daily_usd", l.dailyNano, used.day.nano, periods.dayResetsAt, usd: true, l.enforcement)
        add("monthly_usd", l.monthlyNano, used.month.nano, periods.monthResetsAt, usd: true, l.enforcement)
        // The global budget is the operator's: its spend across all tenants is not shown to any one tenant.
        let stored = try resources.readers.with { try StorageUsage($0).bytes(tenant: tenant.id.rawValue) }
        let quota = tenant.storageQuotaBytes
        var storage: [(String, JSONValue)] = [
            ("limit_bytes", .int(Int(quota))), ("used_bytes", .int(Int(stored))),
            ("remaining_bytes", .int(Int(max(0, quota - stored)))),
        ]
        if stored >= quota { storage.append(("status", .string("exhausted"))) }
        out.append(("storage", .object(storage)))
        return .object(out)
    }

    private func tenantInfo(_ tenant: TenantConfig, _ config: GatewayConfig, subject: String) -> JSONValue {
        let backends = Set(tenant.models.compactMap { config.models[$0]?.backend }).sorted()
        var members: [(String, JSONValue)] = [
            ("tenant", .string(tenant.id.rawValue)), ("name", .string(tenant.name)),
            ("default_model", tenant.defaultModel.map { .string($0) } ?? .null),
            ("models", .array(tenant.models.map { .string($0) })),
            ("backends", .array(backends.map { .string($0) })),
        ]
        for key in ["rate_limit", "budget"] {
            members.append((key, tenant.effective[key] ?? .object([])))
        }
        members.append(
            ("features", .object(FeatureFlags.all(tenant: tenant, subject: subject).map { ($0, .bool($1)) })))
        members.append(("prompt_mode", .string(tenant.promptMode.rawValue)))
        members.append(
            (
                "prompts",
                .array(
                    tenant.prompts.keys.sorted().map { name in
                        .object([("name", .string(name)), ("version", .int(tenant.prompts[name]?.version ?? 0))])
                    })
            ))
        return .object(members)
    }

    private func logRequest(_ request: Request, _ exchange: Exchange, latencyMs: Int) {
        let level = exchange.status >= 500 ? "error" : exchange.status >= 400 ? "warn" : "info"
        guard log.enabled(level) else { return }
        let served = exchange.call?.served
        let usage = served?.usage
        var fields: [(String, JSONValue)] = [
            ("request_id", .string(request.requestID)),
            ("tenant", exchange.tenant.map { .string($0) } ?? .null),
            ("model", served?.model.map { .string($0) } ?? .null),
            ("status", .int(exchange.status)),
            ("latency_ms", .int(latencyMs)),
            ("upstream_ms", served?.upstreamMs.map { .int($0) } ?? .null),
            ("tokens_in", usage.map { .int($0.promptTokens) } ?? .null),
            ("tokens_out", usage.map { .int($0.completionTokens) } ?? .null),
            ("cost_usd", served?.costNano.map { .number(Money.usdString(nano: $0)) } ?? .null),
            ("cache", exchange.call?.cache.map { .string($0.outcome) } ?? .null),
            ("method", .string(request.method)),
            ("path", .string(request.path)),
        ]
        if let key = exchange.keyID { fields.append(("key_id", .string(key))) }
        if let prompt = exchange.call?.prompt { fields.append(("prompt", .string("\(prompt.name)@\(prompt.version)"))) }
        if let triggers = exchange.call?.policyTriggers, !triggers.isEmpty {
            fields.append(("policy", .string(triggers.map(\.summary).joined(separator: ","))))
            // Its content inspection ran out of CPU budget: the rules after it failed by their on_error.
            if triggers.contains(where: \.failed), let budget = exchange.call?.inspection, budget.exhausted {
                fields.append(("inspection", .string("budget_exhausted")))
                fields.append(("inspection_ms", .int(Int(budget.spentNanos / 1_000_000))))
            }
        }
        fields.append(("trace_id", .string(exchange.trace.traceID)))
        if let code = exchange.errorCode { fields.append(("error", .string(code))) }
        if let detail = exchange.errorDetail { fields.append(("error_detail", .string(detail))) }
        log.write("request", level: level, fields)
    }
}
