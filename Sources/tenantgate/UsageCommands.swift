import ArgumentParser
import TenantGateCore
import TenantGateStore
import TenantGateSystem

struct UsageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "usage", abstract: "Requests, tokens and cost from the daily rollups.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var only: TenantChoice
    @Option(help: "First day, YYYY-MM-DD (default: the first of this month, UTC).") var since: String?
    @Option(help: "Group by day, model, tenant or key.") var by: String = "tenant"
    @Option(help: "Only the N most expensive rows.") var top: Int?
    @Flag var json = false

    func validate() throws {
        guard ["day", "model", "tenant", "key"].contains(by) else {
            throw ValidationError("--by must be day, model, tenant or key")
        }
        if let since {
            let parts = since.split(separator: "-")
            guard parts.count == 3, parts.allSatisfy({ Int($0) != nil }), since.count == 10 else {
                throw ValidationError("--since must be YYYY-MM-DD")
            }
        }
        _ = try only.name()
        if let top, top < 1 { throw ValidationError("--top must be at least 1") }
    }

    func run() throws {
        try reporting {
            let periods = Periods(epochMs: Posix.wallMicros() / 1000)
            let first = since ?? "\(periods.month)-01"
            let db = try global.open()
            let tenant = try only.resolve(db, required: false)
            let rows = try ExecutionLog(db).usage(tenant: tenant, sinceDay: first, by: by, top: top)
            if json {
                print(
                    JSONValue.array(
                        rows.map {
                            .object([
                                (by, .string($0.key)), ("requests", .int(Int($0.requests))),
                                ("refused", .int(Int($0.refused))), ("failed", .int(Int($0.errors))),
                                ("tokens_in", .int(Int($0.tokensIn))),
                                ("tokens_out", .int(Int($0.tokensOut))),
                                ("cost_usd", .number(Money.usdString(nano: $0.costNano))),
                            ])
                        }
                    ).jsonString)
                return
            }
            // Refusals (limits, budgets, policies, bad requests: 4xx) apart from failures (5xx).
            print(
                "\(by.padding(24))\("requests".padding(10))\("refused".padding(9))\("failed".padding(8))\("tokens_in".padding(12))\("tokens_out".padding(12))cost"
            )
            for r in rows {
                print(
                    "\(r.key.padding(24))\(String(r.requests).padding(10))\(String(r.refused).padding(9))\(String(r.errors).padding(8))\(String(r.tokensIn).padding(12))\(String(r.tokensOut).padding(12))\(Money.display(nano: r.costNano))"
                )
            }
        }
    }
}

struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract:
            "Delete execution rows and audit events past each tenant's audit.retention_days (default 90), stored responses past responses.retention_days (30)."
    )
    @OptionGroup var global: GlobalOptions
    @Flag var json = false

    func run() throws {
        try reporting {
            let db = try global.open()
            let config = try ConfigStore(db).snapshot()
            var retention: [String: Int] = [:]
            for (id, tenant) in config.tenants {
                if let days = tenant.effective["audit"]?["retention_days"]?.intValue { retention[id] = days }
            }
            let now = Posix.wallMicros() / 1000
            let n = try ExecutionLog(db).prune(retentionDays: retention, defaultDays: 90, nowMs: now)
            if !json { print("pruned \(n) execution rows") }
            // The audit trail keeps the same retention, each chain re-anchored before its oldest events go.
            let chain = try AuditChain(db)
            var events = 0
            for tenant in try chain.tenants() {
                let days = retention[tenant] ?? 90
                events += try chain.prune(tenant: tenant, beforeMs: now - Int64(days) * 86_400_000, nowMs: now)
            }
            if events > 0 {
                try db.transaction {
                    try AdminStore(db).audit(
                        user: "cli", address: "local", action: "prune", target: AuditChain.system, before: nil,
                        after: JSONValue.object([("execution_rows", .int(n)), ("audit_events", .int(events))])
                            .jsonString,
                        atMs: now)
                }
            }
            if !json { print("pruned \(events) audit events (each chain re-anchored)") }
            // Stored Responses API responses: responses.retention_days (default 30, OpenAI's).
            var kept: [String: Int] = [:]
            for (id, tenant) in config.tenants {
                if let days = tenant.effective["responses"]?["retention_days"]?.intValue { kept[id] = days }
            }
            let responses = try db.transaction {
                try ResponseStore(db).prune(retentionDays: kept, defaultDays: 30, nowMs: now)
            }
            if json {
                return print(
                    JSONValue.object([
                        ("execution_rows", .int(n)), ("audit_events", .int(events)),
                        ("stored_responses", .int(responses)),
                    ]).jsonString)
            }
            print("pruned \(responses) stored responses")
        }
    }
}

extension String {
    fileprivate func padding(_ width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}
