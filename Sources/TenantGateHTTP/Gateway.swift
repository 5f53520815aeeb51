import TenantGateCore
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

/// Serves the admin page (`/admin/…`): implemented by the TenantGateAdmin module, wired in by the executable.
public protocol AdminResponder: Sendable {
    /// Answers one request completely on `sink` (using this thread's `db` connection and the worker's
    /// configuration snapshot); returns the status it sent.
    func respond(to request: Request, sink: any ResponseSink, db: SQLiteConnection, config: GatewayConfig) -> Int
}

/// What a request did, for the log line.
struct Outcome {
    var status = 0
    var tenant: String?
    var keyID: String?
    var model: String?
    var usage: Usage?
    var upstreamMs: Int?
    var errorCode: String?
    var costNano: Int64?
    /// `name@version` of the tenant prompt template that served the request.
    var prompt: String?
    var endUser: String?
    var backend: String?
    var streamed = false
    var ttfbMs: Int?
    /// The reservation held for this request, settled (or released) when it ends.
    var reservationID: Int64?
    /// Or its share of the worker's lease for the tenant.
    var leaseClaim: LeaseBook.Claim?
    /// Rate-limit and budget-warning headers, sent with success and error answers alike.
    var limitHeaders: [(String, String)] = []
    /// Whether this request belongs in the execution log (a model call of a known tenant).
    var accountable = false
    /// The limit or budget that refused the request.
    var refusedLimit: String?
    /// The request's trace.
    var trace = TraceContext(header: nil, newTraceID: "")
    /// A fallback model served the request.
    var fallbackUsed = false
    /// Upstream attempts retried.
    var retries = 0
}

/// An upstream failure worth retrying (connect error, timeout, 429, 5xx), with the upstream's Retry-After.
struct RetryableUpstream: Error {
    let error: GatewayError
    let retryAfterMs: Int?
}

/// Per-thread resources: a reusable curl handle (made on first use, so upstream connections stay alive
/// per thread), the worker's small pool of SQLite connections, and the process's accounting connection.
final class ThreadResources {
    private(set) lazy var curl = CurlClient()
    let accounting: AccountingStore
    let readers: ConnectionPool
    private let writer: SQLiteConnection

    let settlements: SettleQueue
    let reservations: ReserveBatcher
    let leases: LeaseBook

    init(
        readers: ConnectionPool, writer: SQLiteConnection, accounting: AccountingStore, settlements: SettleQueue,
        reservations: ReserveBatcher, leases: LeaseBook
    ) {
        self.leases = leases
        self.readers = readers
        self.writer = writer
        self.accounting = accounting
        self.settlements = settlements
        self.reservations = reservations
    }

    /// The circuit breakers, over a pooled connection for the duration of `body`.
    func circuits<T>(_ body: (CircuitStore) throws -> T) rethrows -> T {
        try readers.with { try body(CircuitStore(reader: $0, writer: writer)) }
    }

    /// The connection all threads of a worker write accounting through. Writes are serialised per
    /// process anyway (SQLite has one writer); sharing one connection keeps its page cache warm, where a
    /// connection per thread would find its cache invalidated by every other thread's commit.
    static func accountingConnection(dbPath: String) throws -> SQLiteConnection {
        try SQLiteConnection(path: dbPath, cacheKiB: 4096)
    }
}

/// Settings that shape every request.
public struct GatewayOptions: Sendable {
    /// Largest accepted request body.
    public var maxBodyBytes: Int
    /// Largest upstream response body kept in memory (non-streaming).
    public var maxUpstreamBytes = 32 << 20

    /// Creates options.
    public init(maxBodyBytes: Int) { self.maxBodyBytes = maxBodyBytes }
}

/// The request pipeline: route → resolve tenant → authenticate → parse → model → backend → respond → log.
final class Gateway: @unchecked Sendable {  // immutable after init; shared by all threads of a worker
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
        var outcome = Outcome()
        let api: ClientAPI = request.path.hasPrefix("/v1/messages") ? .anthropic : .openAI
        let fresh = (try? Crypto.randomBytes(16)).map(Crypto.hex) ?? String(repeating: "0", count: 31) + "1"
        outcome.trace = TraceContext(header: request.headers["traceparent"], newTraceID: fresh)
        do {
            if tooLarge { throw GatewayError.requestTooLarge(limit: options.maxBodyBytes) }
            try route(request, sink: sink, resources: resources, outcome: &outcome)
        } catch let failure as RetryableUpstream {
            outcome.errorCode = failure.error.code
            outcome.status = failure.error.status
            if !sink.headWritten { answer(failure.error, api: api, sink: sink, outcome) }
        } catch let error as GatewayError {
            outcome.errorCode = error.code
            outcome.status = error.status
            if !sink.headWritten { answer(error, api: api, sink: sink, outcome) }
        } catch {
            outcome.errorCode = "internal_error"
            outcome.status = 500
            if !sink.headWritten { answer(.internalError, api: api, sink: sink, outcome) }
        }
        if request.route != .api && request.route != .admin { return }
        let latency = Int(Posix.monotonicMs() - started)
        if outcome.accountable { settle(request, outcome, latencyMs: latency, resources: resources) }
        logRequest(request, outcome, latencyMs: latency)
    }

    /// Queues the execution row and the settlement of the reservation (group-committed by `SettleQueue`).
    private func settle(_ request: Request, _ outcome: Outcome, latencyMs: Int, resources: ThreadResources) {
        guard let tenant = outcome.tenant else { return }
        var record = ExecutionRecord(
            requestID: request.requestID, atMs: Posix.wallMicros() / 1000, tenant: tenant, status: outcome.status)
        record.keyID = outcome.keyID
        record.endUser = outcome.endUser
        record.model = outcome.model
        record.backend = outcome.backend
        record.errorCode = outcome.errorCode
        record.latencyMs = latencyMs
        record.upstreamMs = outcome.upstreamMs
        record.ttfbMs = outcome.ttfbMs
        record.usage = outcome.usage ?? Usage(promptTokens: 0, completionTokens: 0)
        record.costNano = outcome.costNano ?? 0
        record.streamed = outcome.streamed
        record.prompt = outcome.prompt
        record.traceID = outcome.trace.traceID
        record.fallbackUsed = outcome.fallbackUsed
        record.retries = outcome.retries
        record.refusedLimit = outcome.refusedLimit
        if let claim = outcome.leaseClaim {
            resources.leases.settle(claim, record: record)
        } else {
            resources.settlements.enqueue(reservation: outcome.reservationID, record: record)
        }
    }

    /// An error answer in the client's API (Anthropic's shape on `/v1/messages`).
    private func answer(_ error: GatewayError, api: ClientAPI, sink: ResponseSink, _ outcome: Outcome) {
        sink.json(error.status, ReplyWriter.errorBody(error, api: api), headers: tenantHeader(outcome) + error.headers)
    }

    private func tenantHeader(_ outcome: Outcome) -> [(String, String)] {
        (outcome.tenant.map { [("X-Tenant-ID", $0)] } ?? []) + outcome.limitHeaders
    }

    private func route(_ request: Request, sink: ResponseSink, resources: ThreadResources, outcome: inout Outcome)
        throws
    {
        // The front end's location chose the route; the path only picks an endpoint inside it.
        switch (request.route, request.method, request.path) {
        case (.healthz, "GET", "/healthz"), (.healthz, "HEAD", "/healthz"):
            outcome.status = 200
            sink.json(200, .object([("status", .string("ok"))]))
            return
        case (.readyz, "GET", "/readyz"):
            try ready(sink: sink, resources: resources, outcome: &outcome)
            return
        case (.metrics, "GET", "/metrics"):
            try metrics(request, sink: sink, resources: resources, outcome: &outcome)
            return
        case (.admin, _, _) where request.path == "/admin" || request.path.hasPrefix("/admin/"):
            guard let admin else { throw GatewayError.notFound }
            let config = configs.config
            outcome.status = resources.readers.with { admin.respond(to: request, sink: sink, db: $0, config: config) }
            return
        case (.api, _, _): break
        default: throw GatewayError.notFound
        }
        let endpoints = [
            "/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens", "/v1/embeddings", "/v1/models",
            "/v1/tenant-info",
        ]
        guard endpoints.contains(request.path) else { throw GatewayError.notFound }
        let (config, jwt) = configs.snapshot
        let principal = try authenticator.authenticate(
            ResolutionInput(
                pathTenant: request.pathTenant, headerTenant: request.headers["x-tenant-id"],
                credential: request.credential, providerKey: request.headers["x-provider-key"]), config: config,
            jwt: jwt, now: Posix.wallMicros() / 1_000_000)
        outcome.tenant = principal.tenant.id.rawValue
        outcome.keyID = principal.key.id
        configs.markUsed(principal.key.id)
        var admitted = false
        defer { if admitted { concurrency.release(principal.tenant) } }
        if request.method == "POST" {
            // A BYOK tenant's model calls carry the client's own provider key, beside its gateway credential.
            _ = try principal.requireProviderKey()
            // Fair share: a model call holds a thread for the upstream's whole answer.
            do {
                try concurrency.admit(principal.tenant)
                admitted = true
            } catch {
                outcome.accountable = true
                outcome.refusedLimit = error.type
                throw error
            }
        }
        switch (request.method, request.path) {
        case ("POST", "/v1/chat/completions"):
            outcome.accountable = true
            var handler = ChatHandler(
                config: config, principal: principal, request: request, sink: sink, resources: resources,
                options: options, log: log)
            try handler.run(outcome: &outcome)
        case ("POST", "/v1/messages"):
            outcome.accountable = true
            var handler = ChatHandler(
                config: config, principal: principal, request: request, sink: sink, resources: resources,
                options: options, log: log, api: .anthropic)
            try handler.run(outcome: &outcome)
        case ("POST", "/v1/messages/count_tokens"):
            try CountTokensHandler(
                config: config, principal: principal, request: request, sink: sink, resources: resources, log: log
            ).run(outcome: &outcome)
        case ("POST", "/v1/embeddings"):
            outcome.accountable = true
            try EmbeddingsHandler(
                config: config, principal: principal, request: request, sink: sink, resources: resources,
                options: options, log: log
            ).run(outcome: &outcome)
        case ("GET", "/v1/models"):
            outcome.status = 200
            sink.json(200, models(principal.tenant, config), headers: tenantHeader(outcome))
        case ("GET", "/v1/tenant-info"):
            outcome.status = 200
            let user = request.queryValue("user")
            if let user, !Bounds.isIdentifier(user) {
                throw GatewayError.invalidRequest(
                    "'user' must be 1 to \(Bounds.maxUserBytes) bytes without control characters.", param: "user")
            }
            let subject = user ?? principal.key.id
            var info = tenantInfo(principal.tenant, config, subject: subject)
            info = info.setting("limits", try limitsNow(principal.tenant, resources: resources))
            sink.json(200, info, headers: tenantHeader(outcome))
        default:
            throw GatewayError.methodNotAllowed
        }
    }

    private func ready(sink: ResponseSink, resources: ThreadResources, outcome: inout Outcome) throws {
        let version = (try? resources.readers.with { try Migrations.version($0) }) ?? -1
        let unopened = configs.config.unavailableUpstreamKeyCount
        if version == Migrations.current && unopened > 0 {
            // Serving, but the tenants whose stored keys cannot be opened are refused: an operator must look.
            outcome.status = 503
            sink.json(
                503,
                .object([
                    ("status", .string("degraded")), ("schema_version", .int(version)),
                    ("upstream_keys_unavailable", .int(unopened)),
                    ("error", .string("stored upstream keys cannot be opened: master key missing or wrong")),
                ]))
        } else if version == Migrations.current {
            outcome.status = 200
            sink.json(200, .object([("status", .string("ready")), ("schema_version", .int(version))]))
        } else {
            outcome.status = 503
            sink.error(.serviceUnavailable("database not reachable or schema not current"))
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
        let used = try resources.accounting.usageNow(tenant: tenant.id.rawValue, nowMs: now)
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

    private func logRequest(_ request: Request, _ outcome: Outcome, latencyMs: Int) {
        var fields: [(String, JSONValue)] = [
            ("request_id", .string(request.requestID)),
            ("tenant", outcome.tenant.map { .string($0) } ?? .null),
            ("model", outcome.model.map { .string($0) } ?? .null),
            ("status", .int(outcome.status)),
            ("latency_ms", .int(latencyMs)),
            ("upstream_ms", outcome.upstreamMs.map { .int($0) } ?? .null),
            ("tokens_in", outcome.usage.map { .int($0.promptTokens) } ?? .null),
            ("tokens_out", outcome.usage.map { .int($0.completionTokens) } ?? .null),
            ("cost_usd", outcome.costNano.map { .number(Money.usdString(nano: $0)) } ?? .null),
            ("cache", .null),
            ("method", .string(request.method)),
            ("path", .string(request.path)),
        ]
        if let key = outcome.keyID { fields.append(("key_id", .string(key))) }
        if let prompt = outcome.prompt { fields.append(("prompt", .string(prompt))) }
        fields.append(("trace_id", .string(outcome.trace.traceID)))
        if let code = outcome.errorCode { fields.append(("error", .string(code))) }
        let level = outcome.status >= 500 ? "error" : outcome.status >= 400 ? "warn" : "info"
        log.write("request", level: level, fields)
    }
}
