import TenantGateCore
import TenantGateSystem

/// One row of the executions page.
public struct ExecutionRow: Sendable {
    public let id: Int64
    public let atMs: Int64
    public let requestID: String
    public let tenant: String
    public let model: String
    public let status: Int
    public let errorCode: String
    public let latencyMs: Int
    public let tokensIn: Int
    public let tokensOut: Int
    public let costNano: Int64
    public let streamed: Bool
    public let fallbackUsed: Bool
    public let keyID: String
}

/// What the executions page filters by; `before` is the keyset cursor (at_ms, id) of the last row shown.
public struct ExecutionFilter: Sendable {
    public var tenant: String?
    public var status: Int?
    /// `ok` (< 400) or `error` (≥ 400), when no exact status is asked.
    public var outcome: String?
    public var model: String?
    public var fromMs: Int64?
    public var toMs: Int64?
    public var before: (atMs: Int64, id: Int64)?

    /// An empty filter.
    public init() {}
}

/// Per-tenant figures for the dashboard.
public struct TenantActivity: Sendable {
    public var todayNano: Int64 = 0
    public var monthNano: Int64 = 0
    public var requests24h: Int64 = 0
    /// Failed (5xx) in the last 24 hours.
    public var errors24h: Int64 = 0
    /// Refused by the gateway (4xx) in the last 24 hours.
    public var refused24h: Int64 = 0

    /// No activity.
    public init() {}

    init(monthNano: Int64, todayNano: Int64) {
        self.monthNano = monthNano
        self.todayNano = todayNano
    }
}

/// What the admin pages show: activity, spend and executions, from the rollups wherever they can serve.
extension AdminStore {
    /// Spend today and this month, requests and errors in the last 24 hours, per tenant; and total spend
    /// per day over the last `days` days (oldest first). Served from the daily and hourly rollups only.
    public func activity(nowMs: Int64, days: Int) throws -> (
        tenants: [String: TenantActivity], daily: [(String, Int64)]
    ) {
        let periods = Periods(epochMs: nowMs)
        let today = Int(nowMs / 86_400_000)
        let firstDay = CivilDate.isoDate(epochSeconds: Int64(today - days + 1) * 86_400)
        let monthStart = periods.month + "-01"
        var tenants: [String: TenantActivity] = [:]
        var perDay: [String: Int64] = [:]
        do {
            try db.statement("SELECT day, SUM(cost_nano) FROM usage_daily WHERE day >= ? GROUP BY day")
                .forEach([.text(firstDay)]) { row in perDay[row.text(0)] = row.int(1) }
            try db.statement(
                """
                SELECT tenant, SUM(cost_nano), SUM(CASE WHEN day = ? THEN cost_nano ELSE 0 END) FROM usage_daily
                WHERE day >= ? GROUP BY tenant
                """
            ).forEach([.text(periods.day), .text(monthStart)]) { row in
                tenants[row.text(0)] = TenantActivity(monthNano: row.int(1), todayNano: row.int(2))
            }
            try db.statement(
                "SELECT tenant, SUM(requests), SUM(errors), SUM(refused) FROM usage_hourly WHERE hour > ? GROUP BY tenant"
            ).forEach([.int(nowMs / 3_600_000 - 24)]) { row in
                tenants[row.text(0), default: TenantActivity()].requests24h = row.int(1)
                tenants[row.text(0), default: TenantActivity()].errors24h = row.int(2)
                tenants[row.text(0), default: TenantActivity()].refused24h = row.int(3)
            }
        }
        let daily = (0..<days).map { offset -> (String, Int64) in
            let day = CivilDate.isoDate(epochSeconds: Int64(today - days + 1 + offset) * 86_400)
            return (day, perDay[day] ?? 0)
        }
        return (tenants, daily)
    }

    /// One tenant's spend and requests per day over the last `days` days (oldest first), from the rollups.
    public func tenantDaily(_ tenant: String, nowMs: Int64, days: Int) throws -> [(
        day: String, nano: Int64, requests: Int64
    )] {
        let today = Int(nowMs / 86_400_000)
        let firstDay = CivilDate.isoDate(epochSeconds: Int64(today - days + 1) * 86_400)
        var found: [String: (Int64, Int64)] = [:]
        try db.statement(
            "SELECT day, SUM(cost_nano), SUM(requests) FROM usage_daily WHERE day >= ? AND tenant = ? GROUP BY day"
        ).forEach([.text(firstDay), .text(tenant)]) { row in found[row.text(0)] = (row.int(1), row.int(2)) }
        return (0..<days).map { offset in
            let day = CivilDate.isoDate(epochSeconds: Int64(today - days + 1 + offset) * 86_400)
            return (day, found[day]?.0 ?? 0, found[day]?.1 ?? 0)
        }
    }

    /// The tenant's latest executions that guardrail policies acted on: (time, request id, status, the
    /// triggers as stored), newest first, among its last `scan` executions.
    public func policyTriggers(tenant: String, limit: Int, scan: Int = 5_000) throws -> [(
        atMs: Int64, requestID: String, status: Int, triggers: JSONValue
    )] {
        var out: [(atMs: Int64, requestID: String, status: Int, triggers: JSONValue)] = []
        try db.statement(
            """
            SELECT at_ms, request_id, status, policy_triggers FROM (SELECT at_ms, id, request_id, status, policy_triggers
              FROM executions WHERE tenant = ? ORDER BY at_ms DESC, id DESC LIMIT ?) AS recent
            WHERE policy_triggers IS NOT NULL ORDER BY at_ms DESC, id DESC LIMIT ?
            """
        ).forEach([.text(tenant), .int(Int64(scan)), .int(Int64(limit))]) { r in
            out.append((r.int(0), r.text(1), Int(r.int(2)), (try? JSONParser.parse(r.text(3))) ?? .array([])))
        }
        return out
    }

    /// Execution rows matching `filter`, newest first, at most `limit` (keyset pagination on (at_ms, id)).
    /// Tenant and time use indexes; status and model are checked on at most `scanBudget` rows of that
    /// range, so every query is bounded: when the budget runs out first, `scannedTo` is the cursor to
    /// continue from.
    public func executions(_ filter: ExecutionFilter, limit: Int, scanBudget: Int = 20_000) throws -> (
        rows: [ExecutionRow], scannedTo: (atMs: Int64, id: Int64)?
    ) {
        var indexed: [String] = []
        var values: [SQLValue] = []
        if let tenant = filter.tenant {
            indexed.append("tenant = ?")
            values.append(.text(tenant))
        }
        if let from = filter.fromMs {
            indexed.append("at_ms >= ?")
            values.append(.int(from))
        }
        if let to = filter.toMs {
            indexed.append("at_ms < ?")
            values.append(.int(to))
        }
        if let before = filter.before {
            indexed.append("(at_ms, id) < (?, ?)")
            values += [.int(before.atMs), .int(before.id)]
        }
        var residual: [String] = []
        var residualValues: [SQLValue] = []
        if let status = filter.status {
            residual.append("status = ?")
            residualValues.append(.int(Int64(status)))
        } else if filter.outcome == "failed" {
            residual.append("(status >= 500 OR (status <> 499 AND error_code IN (\(AdminStore.failureCodesSQL))))")
        } else if filter.outcome == "refused" {
            residual.append(
                "status >= 400 AND status < 500 AND status <> 499 AND (error_code IS NULL OR error_code NOT IN (\(AdminStore.failureCodesSQL)))"
            )
        } else if filter.outcome == "ok" {
            residual.append("status < 400")
        }
        if let model = filter.model {
            residual.append("model = ?")
            residualValues.append(.text(model))
        }
        let whereIndexed = indexed.isEmpty ? "" : "WHERE " + indexed.joined(separator: " AND ")
        let columns = """
            id, at_ms, request_id, tenant, model, status, error_code, latency_ms, tokens_in, tokens_out, cost_nano,
            streamed, fallback_used, key_id
            """
        let sql: String
        var bindings = values
        if residual.isEmpty {
            sql = "SELECT \(columns) FROM executions \(whereIndexed) ORDER BY at_ms DESC, id DESC LIMIT ?"
        } else {
            sql = """
                SELECT \(columns) FROM (SELECT * FROM executions \(whereIndexed) ORDER BY at_ms DESC, id DESC LIMIT ?) AS recent
                WHERE \(residual.joined(separator: " AND ")) ORDER BY at_ms DESC, id DESC LIMIT ?
                """
            bindings += [.int(Int64(scanBudget))] + residualValues
        }
        bindings.append(.int(Int64(limit)))
        var rows: [ExecutionRow] = []
        try db.statement(sql).forEach(bindings) { r in
            rows.append(
                ExecutionRow(
                    id: r.int(0), atMs: r.int(1), requestID: r.text(2), tenant: r.text(3), model: r.text(4),
                    status: Int(r.int(5)), errorCode: r.text(6), latencyMs: Int(r.int(7)), tokensIn: Int(r.int(8)),
                    tokensOut: Int(r.int(9)), costNano: r.int(10), streamed: r.int(11) != 0,
                    fallbackUsed: r.int(12) != 0, keyID: r.text(13)))
        }
        guard !residual.isEmpty, rows.count < limit else { return (rows, nil) }
        let last = try db.statement(
            "SELECT at_ms, id FROM executions \(whereIndexed) ORDER BY at_ms DESC, id DESC LIMIT 1 OFFSET ?"
        ).all(values + [.int(Int64(scanBudget - 1))]).first
        guard let at = last?[0].int, let id = last?[1].int else { return (rows, nil) }
        return (rows, (at, id))
    }

    /// Requests, errors and spend from the daily rollups for days in [fromDay, toDay], optionally of one
    /// tenant and model.
    public func rollupTotals(tenant: String?, model: String?, fromDay: String, toDay: String) throws -> (
        requests: Int64, errors: Int64, refused: Int64, nano: Int64
    ) {
        var sql =
            "SELECT SUM(requests), SUM(errors), SUM(cost_nano), SUM(refused) FROM usage_daily WHERE day >= ? AND day <= ?"
        var values: [SQLValue] = [.text(fromDay), .text(toDay)]
        if let tenant {
            sql += " AND tenant = ?"
            values.append(.text(tenant))
        }
        if let model {
            sql += " AND model = ?"
            values.append(.text(model))
        }
        let row = try db.statement(sql).all(values).first
        return (row?[0].int ?? 0, row?[1].int ?? 0, row?[3].int ?? 0, row?[2].int ?? 0)
    }
}

extension AdminStore {
    /// `Outcome.failureCodes` as an SQL list (fixed names: no client text reaches it).
    static let failureCodesSQL = Outcome.failureCodes.sorted().map { "'\($0)'" }.joined(separator: ", ")
}
