import TenantGateCore
import TenantGateServing
import TenantGateSystem

extension Gateway {
    /// `GET /readyz`: the schema is current and every stored upstream key opens; returns the status sent.
    func ready(sink: ResponseSink, resources: ThreadResources) throws -> Int {
        let operations = resources.store.operations
        let version = (try? operations.schemaVersion()) ?? -1
        let current = operations.currentSchemaVersion
        let unopened = configs.config.unavailableUpstreamKeyCount
        if version == current && unopened > 0 {
            // Serving, but the tenants whose stored keys cannot be opened are refused: an operator must look.
            sink.json(
                503,
                .object([
                    ("status", .string("degraded")), ("schema_version", .int(version)),
                    ("upstream_keys_unavailable", .int(unopened)),
                    ("error", .string("stored upstream keys cannot be opened: master key missing or wrong")),
                ]))
            return 503
        } else if version == current {
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

    /// The calling key as `/v1/tenant-info` shows it: its id, expiry and own model list (nil: the tenant's).
    func keyInfo(_ principal: Principal) -> JSONValue {
        let key = principal.key
        return .object([
            ("id", .string(key.id)),
            ("expires_at", key.expiresAt.map { .string(AppLog.timestamp($0 * 1_000_000)) } ?? .null),
            ("models", key.models.map { .array($0.map { .string($0) }) } ?? .null),
        ])
    }

    func models(_ tenant: TenantConfig, _ config: GatewayConfig) -> JSONValue {
        let data: [JSONValue] = tenant.models.map { name in
            .object([
                ("id", .string(name)), ("object", .string("model")), ("created", .int(0)),
                ("owned_by", .string(config.models[name]?.backend ?? "tenantgate")),
            ])
        }
        return .object([("object", .string("list")), ("data", .array(data))])
    }

    /// Each configured limit with what remains now and when it resets.
    func limitsNow(_ tenant: TenantConfig, resources: ThreadResources) throws -> JSONValue {
        let now = Posix.wallMicros() / 1000
        let used = try resources.store.accounting.usageNow(tenant: tenant.id.rawValue, nowMs: now)
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
            "daily_tokens", l.dailyTokens.map(Int64.init), used.dayTokens, periods.dayResetsAt, usd: false,
            l.enforcement)
        add(
            "monthly_tokens", l.monthlyTokens.map(Int64.init), used.monthTokens, periods.monthResetsAt, usd: false,
            l.enforcement)
        add("daily_usd", l.dailyNano, used.dayNano, periods.dayResetsAt, usd: true, l.enforcement)
        add("monthly_usd", l.monthlyNano, used.monthNano, periods.monthResetsAt, usd: true, l.enforcement)
        // The global budget is the operator's: its spend across all tenants is not shown to any one tenant.
        let stored = try resources.store.operations.storageBytes(tenant: tenant.id.rawValue)
        let quota = tenant.storageQuotaBytes
        var storage: [(String, JSONValue)] = [
            ("limit_bytes", .int(Int(quota))), ("used_bytes", .int(Int(stored))),
            ("remaining_bytes", .int(Int(max(0, quota - stored)))),
        ]
        if stored >= quota { storage.append(("status", .string("exhausted"))) }
        out.append(("storage", .object(storage)))
        return .object(out)
    }

    func tenantInfo(_ tenant: TenantConfig, _ config: GatewayConfig, subject: String) -> JSONValue {
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
}
