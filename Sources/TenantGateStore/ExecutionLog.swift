import TenantGateCore
import TenantGateSystem

/// The execution log: one row per finished request with its daily and hourly rollups (written in the
/// settlement's transaction by the limit ledger), and what is read back from it: usage reports and
/// retention.
public struct ExecutionLog {
    let db: any SQLConnection

    /// The log over `db`.
    public init(_ db: any SQLConnection) { self.db = db }

    /// Appends the rows of `records` (inside the caller's transaction; a few multi-row statements,
    /// queued: see `SQLStatement.queue`); their rollups go through `Rollups`.
    func append(_ records: [ExecutionRecord]) throws {
        try ExecutionLog.rows.write(db, records.map(row))
    }

    private static let rows = MultiRowInsert(
        table: "executions",
        columns: [
            "request_id", "at_ms", "tenant", "key_id", "end_user", "model", "backend", "status", "error_code",
            "latency_ms", "upstream_ms", "ttfb_ms", "tokens_in", "tokens_out", "tokens_cached", "cost_nano", "streamed",
            "fallback_used", "retries", "prompt", "trace_id", "policy_triggers", "cache", "saved_tokens", "saved_nano",
            "retrieval", "endpoint",
        ])

    private func row(_ record: ExecutionRecord) -> [SQLValue] {
        [
            .text(record.requestID), .int(record.atMs), .text(record.tenant), opt(record.keyID),
            opt(record.endUser), opt(record.model), opt(record.backend), .int(Int64(record.status)),
            opt(record.errorCode), .int(Int64(record.latencyMs)), opt(record.upstreamMs), opt(record.ttfbMs),
            .int(Int64(record.usage.promptTokens)), .int(Int64(record.usage.completionTokens)),
            .int(Int64(record.usage.cachedTokens)), .int(record.costNano), .int(record.streamed ? 1 : 0),
            .int(record.fallbackUsed ? 1 : 0), .int(Int64(record.retries)), opt(record.prompt),
            opt(record.traceID),
            record.policyTriggers.isEmpty ? .null : .text(record.policyTriggers.json.jsonString), opt(record.cache),
            record.cache == nil ? .null : .int(record.savedTokens),
            record.cache == nil ? .null : .int(record.savedNano), opt(record.retrieval), opt(record.endpoint),
        ]
    }

    /// The daily and hourly rollups of a settlement batch, summed per row and written once at its end.
    struct Rollups {
        struct Day: Hashable, Comparable {
            let day: String
            let tenant: String
            let model: String
            static func < (a: Day, b: Day) -> Bool { (a.day, a.tenant, a.model) < (b.day, b.tenant, b.model) }
        }
        struct Hour: Hashable, Comparable {
            let hour: Int64
            let tenant: String
            static func < (a: Hour, b: Hour) -> Bool { (a.hour, a.tenant) < (b.hour, b.tenant) }
        }
        /// requests, failures, refusals, tokens in, tokens out, cost
        var days: [Day: [Int64]] = [:]
        struct KeyDay: Hashable, Comparable {
            let day: String
            let tenant: String
            let key: String
            static func < (a: KeyDay, b: KeyDay) -> Bool { (a.day, a.tenant, a.key) < (b.day, b.tenant, b.key) }
        }
        /// requests, failures, refusals, cost
        var hours: [Hour: [Int64]] = [:]
        /// Per key (requests, failures, refusals, tokens in, tokens out, cost), for spend by key.
        var keys: [KeyDay: [Int64]] = [:]

        mutating func add(_ record: ExecutionRecord, day: String) {
            let outcome = Outcome(status: record.status, code: record.errorCode)
            let failed: Int64 = outcome == .failed ? 1 : 0
            let refused: Int64 = outcome == .refused ? 1 : 0
            let dayDelta = [
                1, failed, refused, Int64(record.usage.promptTokens), Int64(record.usage.completionTokens),
                record.costNano,
            ]
            let dayKey = Day(day: day, tenant: record.tenant, model: record.model ?? "")
            days[dayKey] = zip(days[dayKey] ?? [0, 0, 0, 0, 0, 0], dayDelta).map { $0 &+ $1 }
            if let key = record.keyID {
                let keyDay = KeyDay(day: day, tenant: record.tenant, key: key)
                keys[keyDay] = zip(keys[keyDay] ?? [0, 0, 0, 0, 0, 0], dayDelta).map { $0 &+ $1 }
            }
            let hourKey = Hour(hour: record.atMs / 3_600_000, tenant: record.tenant)
            hours[hourKey] = zip(hours[hourKey] ?? [0, 0, 0, 0], [1, failed, refused, record.costNano]).map {
                $0 &+ $1
            }
        }
    }

    /// Adds what `rollups` summed to the rollup rows (inside the caller's transaction; queued).
    func write(_ rollups: Rollups) throws {
        try ExecutionLog.daily.write(
            db,
            rollups.days.sorted { $0.key < $1.key }.map { key, v in
                [.text(key.day), .text(key.tenant), .text(key.model)] + v.map { .int($0) }
            })
        try ExecutionLog.hourly.write(
            db,
            rollups.hours.sorted { $0.key < $1.key }.map { key, v in
                [.int(key.hour), .text(key.tenant)] + v.map { .int($0) }
            })
        try ExecutionLog.byKey.write(
            db,
            rollups.keys.sorted { $0.key < $1.key }.map { key, v in
                [.text(key.day), .text(key.tenant), .text(key.key)] + v.map { .int($0) }
            })
    }

    /// A rollup table's upsert: `keys` name a row, `counts` are added to it.
    private static func rollup(_ table: String, keys: [String], counts: [String]) -> MultiRowInsert {
        MultiRowInsert(
            table: table, columns: keys + counts,
            upsert: (
                keys.joined(separator: ", "),
                counts.map { "\($0) = CAST(\(table).\($0) + excluded.\($0) AS INTEGER)" }.joined(separator: ",\n  ")
            ))
    }

    private static let counts = ["requests", "errors", "refused", "tokens_in", "tokens_out", "cost_nano"]
    private static let daily = rollup("usage_daily", keys: ["day", "tenant", "model"], counts: counts)
    private static let hourly = rollup(
        "usage_hourly", keys: ["hour", "tenant"], counts: ["requests", "errors", "refused", "cost_nano"])
    private static let byKey = rollup("usage_keys", keys: ["day", "tenant", "key_id"], counts: counts)

    private func opt(_ s: String?) -> SQLValue { s.map { .text($0) } ?? .null }
    private func opt(_ i: Int?) -> SQLValue { i.map { .int(Int64($0)) } ?? .null }
}

/// How a request ended, for the figures: served, refused by the gateway (a limit, budget, policy, flag or
/// a bad request: 4xx), failed (5xx: upstream errors, timeouts, the gateway's own), or abandoned by its
/// client (499). An error rate counts failures only: refusals are the gateway doing its job.
public enum Outcome: String, Sendable {
    case ok, refused, failed, abandoned

    /// Error codes that are failures whatever their status (an upstream's own 4xx relayed as ours).
    public static let failureCodes: Set<String> = [
        "upstream_error", "upstream_timeout", "circuit_open", "upstream_key_unavailable", "upstream_key_missing",
        "internal_error", "service_unavailable",
    ]

    /// The outcome of an answer with HTTP status `status` and error code `code`.
    public init(status: Int, code: String? = nil) {
        if let code, Outcome.failureCodes.contains(code), status != 499 {
            self = .failed
            return
        }
        switch status {
        case 499: self = .abandoned
        case 500...: self = .failed
        case 400..<500: self = .refused
        default: self = .ok
        }
    }
}

/// One row of `tenantgate usage`.
public struct UsageRow: Sendable {
    public let key: String
    public let requests: Int64
    /// Failed requests (5xx).
    public let errors: Int64
    /// Requests the gateway refused (4xx).
    public let refused: Int64
    public let tokensIn: Int64
    public let tokensOut: Int64
    public let costNano: Int64
}

extension ExecutionLog {
    /// Usage from the daily rollups (never the raw execution rows), grouped by `day`, `model`, `tenant` or
    /// `key` (the per-key rollups, kept from migration 18 on),
    /// most expensive first when `top` is given.
    public func usage(tenant: String?, sinceDay: String, by: String, top: Int?) throws -> [UsageRow] {
        let column: String
        var table = "usage_daily"
        switch by {
        case "day": column = "day"
        case "model": column = "model"
        case "key":
            column = "key_id"
            table = "usage_keys"
        default: column = "tenant"
        }
        var sql = """
            SELECT \(column), SUM(requests), SUM(errors), SUM(tokens_in), SUM(tokens_out), SUM(cost_nano),
              SUM(refused)
            FROM \(table) WHERE day >= ?
            """
        var bindings: [SQLValue] = [.text(sinceDay)]
        if let tenant {
            sql += " AND tenant = ?"
            bindings.append(.text(tenant))
        }
        sql += " GROUP BY 1"
        sql += top != nil ? " ORDER BY 6 DESC, 1 LIMIT \(max(1, top ?? 1))" : " ORDER BY 1"
        return try db.query(sql, bindings).map {
            UsageRow(
                key: $0[0].text ?? "", requests: $0[1].int ?? 0, errors: $0[2].int ?? 0, refused: $0[6].int ?? 0,
                tokensIn: $0[3].int ?? 0, tokensOut: $0[4].int ?? 0, costNano: $0[5].int ?? 0)
        }
    }

    /// Deletes execution rows older than each tenant's retention, 1,000 rows per short transaction so
    /// traffic is never stalled; rollups stay. Returns the number of rows deleted.
    public func prune(retentionDays: [String: Int], defaultDays: Int, nowMs: Int64) throws -> Int {
        var deleted = 0
        let tenants = try db.query("SELECT DISTINCT tenant FROM executions").compactMap { $0[0].text }
        for tenant in tenants {
            let days = retentionDays[tenant] ?? defaultDays
            let cutoff = nowMs - Int64(days) * 86_400_000
            while true {
                let n: Int = try db.transaction {
                    try db.statement(
                        """
                        DELETE FROM executions WHERE id IN
                          (SELECT id FROM executions WHERE tenant = ? AND at_ms < ? LIMIT 1000)
                        """
                    ).run([.text(tenant), .int(cutoff)])
                    return db.changes
                }
                deleted += n
                if n < 1000 { break }
            }
        }
        // Hourly rollups serve only the dashboard's last 24 hours.
        try db.transaction {
            try db.statement("DELETE FROM usage_hourly WHERE hour < ?").run([.int(nowMs / 3_600_000 - 48)])
        }
        return deleted
    }
}
