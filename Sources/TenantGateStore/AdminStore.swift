import TenantGateCore
import TenantGateSystem

/// A logged-in admin session.
public struct AdminSession: Sendable {
    public let user: String
    /// The session's CSRF token (sent in every state-changing form).
    public let csrf: String
    public let createdMs: Int64
}

/// One admin audit entry.
public struct AuditEntry: Sendable {
    public let id: Int64
    public let atMs: Int64
    public let user: String
    public let address: String
    public let action: String
    public let target: String
    public let before: String?
    public let after: String?
}

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
    public var errors24h: Int64 = 0

    /// No activity.
    public init() {}

    init(monthNano: Int64, todayNano: Int64) {
        self.monthNano = monthNano
        self.todayNano = todayNano
    }
}

/// Admin users, sessions, login throttling, the audit log, and the admin page's read models (from the
/// rollups wherever they can serve).
public struct AdminStore {
    private let db: SQLiteConnection

    /// PBKDF2-HMAC-SHA256 rounds for new passwords.
    public static let iterations = 600_000

    /// Wraps a connection.
    public init(_ db: SQLiteConnection) { self.db = db }

    // MARK: users

    /// Creates the user or replaces its password (and ends its sessions); the audit entry (by `by`, from
    /// `address`) commits in the same transaction.
    public func setPassword(user: String, password: String, nowMs: Int64, by: String, address: String) throws {
        let salt = try Crypto.randomBytes(16)
        let hash = try Crypto.pbkdf2SHA256(
            password: Array(password.utf8), salt: salt, iterations: AdminStore.iterations)
        try db.transaction {
            try db.statement(
                """
                INSERT INTO admin_users(name, salt, hash, iterations, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                ON CONFLICT(name) DO UPDATE SET salt = excluded.salt, hash = excluded.hash,
                  iterations = excluded.iterations, updated_at = excluded.updated_at
                """
            ).run([.text(user), .blob(salt), .blob(hash), .int(Int64(AdminStore.iterations)), .int(nowMs / 1000)])
            let existed = !(try db.query("SELECT 1 FROM admin_sessions WHERE user = ?", [.text(user)]).isEmpty)
            try db.statement("DELETE FROM admin_sessions WHERE user = ?").run([.text(user)])
            try audit(
                user: by, address: address, action: "admin_password", target: user, before: nil,
                after: existed ? "{\"sessions_ended\":true}" : nil, atMs: nowMs)
        }
    }

    /// Whether `password` is `user`'s. An unknown user costs the same PBKDF2 work as a known one.
    public func verify(user: String, password: String) throws -> Bool {
        let row = try db.statement("SELECT salt, hash, iterations FROM admin_users WHERE name = ?").all([.text(user)])
            .first
        let salt = row?[0].blob ?? [UInt8](repeating: 0, count: 16)
        let iterations = Int(row?[2].int ?? Int64(AdminStore.iterations))
        let computed = try Crypto.pbkdf2SHA256(password: Array(password.utf8), salt: salt, iterations: iterations)
        guard let stored = row?[1].blob else { return false }
        return Crypto.constantTimeEqual(computed, stored)
    }

    /// The number of admin users.
    public func userCount() throws -> Int {
        Int(try db.statement("SELECT COUNT(*) FROM admin_users").all().first?.first?.int ?? 0)
    }

    // MARK: login throttling

    /// Whether `address` has logged in as `user` before (a known-good address keeps its way in while
    /// strangers are slowed down on the account).
    public func isKnownAddress(user: String, address: String) throws -> Bool {
        !(try db.statement("SELECT 1 FROM admin_known_addresses WHERE user = ? AND address = ?")
            .all([.text(user), .text(address)]).isEmpty)
    }

    /// Whether the user has logged in successfully from any address.
    public func hasKnownAddresses(user: String) throws -> Bool {
        !(try db.statement("SELECT 1 FROM admin_known_addresses WHERE user = ? LIMIT 1").all([.text(user)]).isEmpty)
    }

    /// Remembers a successful login's address for the user.
    public func rememberAddress(user: String, address: String, nowMs: Int64) throws {
        try db.statement(
            """
            INSERT INTO admin_known_addresses(user, address, last_ms) VALUES (?1, ?2, ?3)
            ON CONFLICT(user, address) DO UPDATE SET last_ms = excluded.last_ms
            """
        ).run([.text(user), .text(address), .int(nowMs)])
    }

    /// Failed logins of each subject (`user:…`, `addr:…`) since `sinceMs`.
    public func failures(_ subjects: [String], sinceMs: Int64) throws -> Int {
        var worst = 0
        for subject in subjects {
            let n =
                try db.statement("SELECT COUNT(*) FROM admin_login_failures WHERE subject = ? AND at_ms >= ?")
                .all([.text(subject), .int(sinceMs)]).first?.first?.int ?? 0
            worst = max(worst, Int(n))
        }
        return worst
    }

    /// Records a failed login for each subject (and forgets failures older than a day); `written` runs in
    /// the same transaction (the audit entry).
    public func recordFailure(_ subjects: [String], atMs: Int64, written: (() throws -> Void)? = nil) throws {
        try db.transaction {
            try written?()
            for subject in subjects {
                try db.statement("INSERT INTO admin_login_failures(subject, at_ms) VALUES (?, ?)")
                    .run([.text(subject), .int(atMs)])
            }
            try db.statement("DELETE FROM admin_login_failures WHERE at_ms < ?").run([.int(atMs - 86_400_000)])
        }
    }

    /// Forgets a subject's failures (after a successful login).
    public func clearFailures(_ subject: String) throws {
        try db.transaction {
            try db.statement("DELETE FROM admin_login_failures WHERE subject = ?").run([.text(subject)])
        }
    }

    // MARK: sessions

    /// Starts a session: returns the cookie value (256 random bits; only its SHA-256 is stored) and CSRF token.
    public func createSession(user: String, address: String, nowMs: Int64) throws -> (id: String, csrf: String) {
        let id = Crypto.hex(try Crypto.randomBytes(32))
        let csrf = Crypto.hex(try Crypto.randomBytes(32))
        try db.transaction {
            try db.statement(
                "INSERT INTO admin_sessions(id_hash, user, csrf, address, created_ms, seen_ms) VALUES (?, ?, ?, ?, ?, ?)"
            ).run([
                .blob(Crypto.sha256(Array(id.utf8))), .text(user), .text(csrf), .text(address), .int(nowMs),
                .int(nowMs),
            ])
            try db.statement("DELETE FROM admin_sessions WHERE seen_ms < ?").run([.int(nowMs - 86_400_000)])
        }
        return (id, csrf)
    }

    /// The live session for a cookie value, or nil when unknown, idle too long or too old (then it is deleted).
    public func session(id: String, nowMs: Int64, idleMs: Int64, absoluteMs: Int64) throws -> AdminSession? {
        let key = SQLValue.blob(Crypto.sha256(Array(id.utf8)))
        guard
            let row = try db.statement("SELECT user, csrf, created_ms, seen_ms FROM admin_sessions WHERE id_hash = ?")
                .all([key]).first,
            let user = row[0].text, let csrf = row[1].text, let created = row[2].int, let seen = row[3].int
        else { return nil }
        if nowMs - seen > idleMs || nowMs - created > absoluteMs {
            try db.transaction { try db.statement("DELETE FROM admin_sessions WHERE id_hash = ?").run([key]) }
            return nil
        }
        if nowMs - seen > 15_000 {
            try db.transaction {
                try db.statement("UPDATE admin_sessions SET seen_ms = ? WHERE id_hash = ?").run([.int(nowMs), key])
            }
        }
        return AdminSession(user: user, csrf: csrf, createdMs: created)
    }

    /// Ends a session server-side.
    public func endSession(id: String) throws {
        try db.transaction {
            try db.statement("DELETE FROM admin_sessions WHERE id_hash = ?").run([.blob(Crypto.sha256(Array(id.utf8)))])
        }
    }

    // MARK: audit

    /// Appends an audit entry; call inside the transaction that makes the change.
    public func audit(
        user: String, address: String, action: String, target: String, before: String?, after: String?, atMs: Int64
    ) throws {
        try db.statement(
            "INSERT INTO admin_audit(at_ms, user, address, action, target, before, after) VALUES (?, ?, ?, ?, ?, ?, ?)"
        ).run([
            .int(atMs), .text(user), .text(address), .text(action), .text(target), before.map { .text($0) } ?? .null,
            after.map { .text($0) } ?? .null,
        ])
    }

    /// Audit entries for a configuration change made outside the admin page (the CLI): one per tenant that
    /// changed, and one for the top-level settings, backends and models if they changed. Call inside the
    /// change's transaction (`ConfigStore.apply(…, written:)`).
    public func auditConfigChange(
        user: String, address: String, action: String, before: ConfigState, after: ConfigState, atMs: Int64
    ) throws {
        for id in Set(before.tenants.keys).union(after.tenants.keys).sorted()
        where before.tenants[id] != after.tenants[id] {
            try audit(
                user: user, address: address, action: action, target: id, before: before.tenants[id]?.jsonString,
                after: after.tenants[id]?.jsonString, atMs: atMs)
        }
        func shared(_ state: ConfigState) -> JSONValue {
            var document = state
            document.tenants = [:]
            return document.document().removing("tenants")
        }
        if shared(before) != shared(after) {
            try audit(
                user: user, address: address, action: action, target: "", before: shared(before).jsonString,
                after: shared(after).jsonString, atMs: atMs)
        }
    }

    /// Audit entries, newest first, before the id `beforeID` (keyset pagination).
    public func auditEntries(target: String?, beforeID: Int64?, limit: Int) throws -> [AuditEntry] {
        var sql = "SELECT id, at_ms, user, address, action, target, before, after FROM admin_audit WHERE id < ?"
        var values: [SQLValue] = [.int(beforeID ?? Int64.max)]
        if let target {
            sql += " AND target = ?"
            values.append(.text(target))
        }
        sql += " ORDER BY id DESC LIMIT ?"
        values.append(.int(Int64(limit)))
        return try db.statement(sql).all(values).map { r in
            AuditEntry(
                id: r[0].int ?? 0, atMs: r[1].int ?? 0, user: r[2].text ?? "", address: r[3].text ?? "",
                action: r[4].text ?? "", target: r[5].text ?? "", before: r[6].text, after: r[7].text)
        }
    }

    /// Runs `body` in one write transaction (a config change and its audit entry together).
    public func transaction<T>(_ body: () throws -> T) throws -> T { try db.transaction(body) }

    // MARK: read models

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
                "SELECT tenant, SUM(requests), SUM(errors) FROM usage_hourly WHERE hour > ? GROUP BY tenant"
            ).forEach([.int(nowMs / 3_600_000 - 24)]) { row in
                tenants[row.text(0), default: TenantActivity()].requests24h = row.int(1)
                tenants[row.text(0), default: TenantActivity()].errors24h = row.int(2)
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
              FROM executions WHERE tenant = ? ORDER BY at_ms DESC, id DESC LIMIT ?)
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
        } else if filter.outcome == "error" {
            residual.append("status >= 400")
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
                SELECT \(columns) FROM (SELECT * FROM executions \(whereIndexed) ORDER BY at_ms DESC, id DESC LIMIT ?)
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
        requests: Int64, errors: Int64, nano: Int64
    ) {
        var sql = "SELECT SUM(requests), SUM(errors), SUM(cost_nano) FROM usage_daily WHERE day >= ? AND day <= ?"
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
        return (row?[0].int ?? 0, row?[1].int ?? 0, row?[2].int ?? 0)
    }
}
