import TenantGateCore
import TenantGateServing
import TenantGateSystem

extension Gateway {
    static let metricHelp: [String: (String, String)] = [
        "tenantgate_requests_total": ("counter", "Model requests by tenant, model and HTTP status."),
        "tenantgate_tokens_total": ("counter", "Tokens by tenant, model and type (input, output, cached)."),
        "tenantgate_cost_usd_total": ("counter", "Cost in USD by tenant and model."),
        "tenantgate_rate_limited_total": (
            "counter", "Requests refused by a rate limit or budget, by tenant and limit."
        ),
        "tenantgate_request_duration_seconds": (
            "histogram", "Time from request to the last byte, by tenant and model."
        ),
        "tenantgate_upstream_duration_seconds": ("histogram", "Time spent in the upstream call, by tenant and model."),
        "tenantgate_cache_hits_total": (
            "counter", "Answers served from the cache, by tenant and kind (hit, semantic-hit)."
        ),
        "tenantgate_cache_saved_usd_total": ("counter", "Cost the cache saved, in USD, by tenant."),
        "tenantgate_policy_triggers_total": (
            "counter", "Guardrail policy triggers by tenant, policy, action and mode (shadow: recorded only)."
        ),
    ]

    /// `GET /metrics`: Prometheus text for the whole deployment, from the shared database. nginx allows
    /// loopback only by default; with `TENANTGATE_METRICS_TOKEN` set, a matching bearer token is required.
    func metrics(_ request: Request, sink: ResponseSink, resources: ThreadResources) throws -> Int {
        if let token = Posix.env("TENANTGATE_METRICS_TOKEN"), !token.isEmpty {
            let given = Crypto.sha256(Array((request.credential ?? "").utf8))
            guard Crypto.constantTimeEqual(given, Crypto.sha256(Array(token.utf8))) else {
                throw GatewayError.invalidAPIKey
            }
        }
        let body = try scrape(resources.store)
        sink.head(
            status: 200,
            headers: [
                ("Content-Type", "text/plain; version=0.0.4; charset=utf-8"), ("Content-Length", String(body.count)),
                ("Cache-Control", "no-store"),
            ])
        sink.body(body)
        return 200
    }

    private func scrape(_ store: StorePorts) throws -> [UInt8] {
        let now = Posix.wallMicros() / 1000
        var renderer = MetricsFormat.Renderer(help: Gateway.metricHelp, capacity: 1 << 20)
        try store.operations.renderCounters(into: &renderer)
        var text = ""
        let workers = try store.operations.workersAlive(sinceMs: now - 5000)
        text += "# HELP tenantgate_workers_alive Worker processes that reported in the last 5 s.\n"
        text += "# TYPE tenantgate_workers_alive gauge\ntenantgate_workers_alive \(workers.workers)\n"
        text += "# HELP tenantgate_pool_in_flight_requests Requests being handled now, all workers, all endpoints.\n"
        text +=
            "# TYPE tenantgate_pool_in_flight_requests gauge\ntenantgate_pool_in_flight_requests \(workers.inFlight)\n"
        text += "# HELP tenantgate_pool_slots Request slots of the pool (threads × workers).\n"
        text += "# TYPE tenantgate_pool_slots gauge\ntenantgate_pool_slots \(concurrency.poolSlots)\n"
        let config = configs.config
        text += "# HELP tenantgate_in_flight_requests Model calls in flight now, by tenant, all workers.\n"
        text += "# TYPE tenantgate_in_flight_requests gauge\n"
        for id in config.tenants.keys.sorted() {
            text +=
                "tenantgate_in_flight_requests{tenant=\"\(MetricsFormat.escape(id))\"} \(concurrency.inFlight(id))\n"
        }
        text += "# HELP tenantgate_config_version Configuration version the answering worker serves.\n"
        text += "# TYPE tenantgate_config_version gauge\ntenantgate_config_version \(config.version)\n"
        text += "# HELP tenantgate_budget_remaining_usd USD left in each tenant budget period.\n"
        text += "# TYPE tenantgate_budget_remaining_usd gauge\n"
        let spend = try store.accounting.spendByTenant(nowMs: now)
        for id in config.tenants.keys.sorted() {
            guard let limits = config.tenants[id]?.limits else { continue }
            let used = spend[id] ?? (0, 0)
            let label = MetricsFormat.escape(id)
            if let daily = limits.dailyNano {
                text +=
                    "tenantgate_budget_remaining_usd{tenant=\"\(label)\",period=\"daily\"} \(Double(max(0, daily - used.0)) / 1e9)\n"
            }
            if let monthly = limits.monthlyNano {
                text +=
                    "tenantgate_budget_remaining_usd{tenant=\"\(label)\",period=\"monthly\"} \(Double(max(0, monthly - used.1)) / 1e9)\n"
            }
        }
        text += "# HELP tenantgate_circuit_open 1 while a tenant's circuit for a backend is open.\n"
        text += "# TYPE tenantgate_circuit_open gauge\n"
        for (tenant, backend, open) in try store.circuits.states(nowMs: now) {
            text +=
                "tenantgate_circuit_open{tenant=\"\(MetricsFormat.escape(tenant))\",backend=\"\(MetricsFormat.escape(backend))\"} \(open ? 1 : 0)\n"
        }
        renderer.append(text)
        return renderer.finish()
    }
}
