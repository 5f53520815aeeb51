import TenantGateCore
import TenantGateSystem

/// Shared, exact accounting in SQLite (or PostgreSQL): every check-and-reserve is one `BEGIN IMMEDIATE` transaction,
/// so limits and budgets hold across all workers and processes.
/// Split by concern: reservation and rate windows here, settlement (`+Settlement`), reads for the
/// pages and tenant-info (`+Reads`), probes before admission and budget notices (`+Probe`).
public struct AccountingStore {
    let db: any SQLConnection
    static let window: Int64 = 60_000
    /// What the settlement being written gathers for its end (audit events, counters, rollups).
    let audit = SettleScratch()
    /// The worker's lease rows as its committed settlements left them (nil: read them every batch).
    let leaseRows: LeaseRowCache?
    /// The audit keys events are chained with (the worker's writer's, or opened per use).
    /// (nil: opened per settlement that chains events; a read allocates nothing for it).
    let auditKeys: AuditKeys?

    /// Wraps a connection; `leaseRows` (the worker's writer's) spares settlements re-reading lease rows,
    /// `auditKeys` (the same writer's) re-opening the audit key.
    public init(_ db: any SQLConnection, leaseRows: LeaseRowCache? = nil, auditKeys: AuditKeys? = nil) {
        self.db = db
        self.leaseRows = leaseRows
        self.auditKeys = auditKeys
    }

    static func tenantScope(_ tenant: String) -> String { "tenant:\(tenant)" }
    static let globalScope = "global"

    func windowSum(_ tenant: String, _ kind: String, since: Int64) throws -> (sum: Int64, oldest: Int64?) {
        let row = try db.statement(
            "SELECT COALESCE(SUM(amount), 0), MIN(at_ms) FROM rate_log WHERE tenant = ? AND kind = ? AND at_ms > ?"
        ).all([.text(tenant), .text(kind), .int(since)]).first
        return (row?[0].int ?? 0, row?[1].int)
    }

    /// The window total of (tenant, kind) after dropping entries that left the window: each entry is
    /// added once and removed once, so a check costs O(1) amortised however high the limit.
    func windowTotal(_ tenant: String, _ kind: String, since: Int64) throws -> (total: Int64, oldest: Int64?) {
        let oldestSQL = "SELECT MIN(at_ms) FROM rate_log WHERE tenant = ? AND kind = ?"
        var oldest = try db.statement(oldestSQL).all([.text(tenant), .text(kind)]).first?.first?.int
        // Expired entries are deleted only when there are any (the common case is one index seek).
        if let first = oldest, first <= since {
            let expired = try db.statement(
                "DELETE FROM rate_log WHERE tenant = ? AND kind = ? AND at_ms <= ? RETURNING amount"
            ).all([.text(tenant), .text(kind), .int(since)]).reduce(Int64(0)) { $0 + ($1[0].int ?? 0) }
            if expired != 0 { try addToTotal(tenant, kind, -expired) }
            oldest = try db.statement(oldestSQL).all([.text(tenant), .text(kind)]).first?.first?.int
        }
        let total =
            try db.statement("SELECT total FROM rate_totals WHERE tenant = ? AND kind = ?")
            .all([.text(tenant), .text(kind)]).first?.first?.int ?? 0
        return (total, oldest)
    }

    func addToTotal(_ tenant: String, _ kind: String, _ delta: Int64) throws {
        try db.statement(
            """
            INSERT INTO rate_totals(tenant, kind, total) VALUES (?1, ?2, MAX(0, ?3))
            ON CONFLICT(tenant, kind) DO UPDATE SET total = MAX(0, CAST(rate_totals.total + ?3 AS INTEGER))
            """
        ).run([.text(tenant), .text(kind), .int(delta)])
    }

    /// Removes one rate-window entry (if still there) and its share of the total.
    func dropRateEntry(_ id: Int64) throws {
        guard
            let row = try db.statement("DELETE FROM rate_log WHERE id = ? RETURNING tenant, kind, amount")
                .all([.int(id)]).first, let tenant = row[0].text, let kind = row[1].text
        else { return }
        try addToTotal(tenant, kind, -(row[2].int ?? 0))
    }

    func counter(_ scope: String, _ period: String) throws -> (tokens: Int64, nano: Int64) {
        let row = try db.statement(
            """
            SELECT used_tokens + reserved_tokens, used_nano + reserved_nano FROM budget_counters
            WHERE scope = ? AND period = ?
            """
        ).all([.text(scope), .text(period)]).first
        return (row?[0].int ?? 0, row?[1].int ?? 0)
    }

    /// A month's total is the sum of its day rows: one counter row written per request, not two.
    func monthCounter(_ scope: String, _ month: String) throws -> (tokens: Int64, nano: Int64) {
        let row = try db.statement(
            """
            SELECT COALESCE(SUM(used_tokens + reserved_tokens), 0), COALESCE(SUM(used_nano + reserved_nano), 0)
            FROM budget_counters WHERE scope = ? AND period BETWEEN ? AND ?
            """
        ).all([.text(scope), .text("d:\(month)-01"), .text("d:\(month)-31")]).first
        return (row?[0].int ?? 0, row?[1].int ?? 0)
    }

    /// Changes a budget counter row; inside a settlement batch the changes are summed per row and
    /// written at its end (`SettleScratch`).
    func bump(
        _ scope: String, _ period: String, usedTokens: Int64, usedNano: Int64, reservedTokens: Int64,
        reservedNano: Int64
    ) throws {
        if audit.batching && usedTokens >= 0 && usedNano >= 0 && reservedTokens <= 0 && reservedNano <= 0 {
            let row = SettleScratch.BudgetRow(scope: scope, period: period)
            audit.budget[row] = zip(
                audit.budget[row] ?? [0, 0, 0, 0], [usedTokens, usedNano, reservedTokens, reservedNano]
            )
            .map { $0 &+ $1 }
            return
        }
        try db.statement(
            """
            INSERT INTO budget_counters(scope, period, used_tokens, used_nano, reserved_tokens, reserved_nano)
            VALUES (?1, ?2, ?3, ?4, ?5, ?6)
            ON CONFLICT(scope, period) DO UPDATE SET
              used_tokens = CAST(budget_counters.used_tokens + ?3 AS INTEGER),
              used_nano = CAST(budget_counters.used_nano + ?4 AS INTEGER),
              reserved_tokens = MAX(0, CAST(budget_counters.reserved_tokens + ?5 AS INTEGER)),
              reserved_nano = MAX(0, CAST(budget_counters.reserved_nano + ?6 AS INTEGER))
            """
        ).queue([
            .text(scope), .text(period), .int(usedTokens), .int(usedNano), .int(reservedTokens), .int(reservedNano),
        ])
    }

    static let budgetUpsert = MultiRowInsert(
        table: "budget_counters",
        columns: ["scope", "period", "used_tokens", "used_nano", "reserved_tokens", "reserved_nano"],
        upsert: (
            "scope, period",
            """
            used_tokens = CAST(budget_counters.used_tokens + excluded.used_tokens AS INTEGER),
              used_nano = CAST(budget_counters.used_nano + excluded.used_nano AS INTEGER),
              reserved_tokens = MAX(0, CAST(budget_counters.reserved_tokens + excluded.reserved_tokens AS INTEGER)),
              reserved_nano = MAX(0, CAST(budget_counters.reserved_nano + excluded.reserved_nano AS INTEGER))
            """
        ))

    /// Checks every limit and budget and reserves the worst case atomically; throws `LimitRefusal`
    /// (and writes nothing) when a hard one would be exceeded. Returns the reservation id and the status
    /// for the response headers.
    public func reserve(
        tenant: String, limits: Limits, need: Reservation, nowMs: Int64, expiresMs: Int64
    ) throws -> (id: Int64, status: LimitStatus) {
        let job = ReserveJob(tenant: tenant, limits: limits, need: need, nowMs: nowMs, expiresMs: expiresMs)
        guard let result = try reserve([job]).first else { throw LimitRefusal.rate(limit: "requests", retryAfter: 1) }
        let admission = try result.get()
        return (admission.id, admission.status)
    }

    /// Runs many reservations in one transaction (group commit), in order: each sees the ones before it,
    /// so the outcome is exactly that of running them one by one. A refusal fails only its own job.
    public func reserve(_ jobs: [ReserveJob]) throws -> [Result<Admission, LimitRefusal>] {
        try db.transaction {
            try jobs.map { job in
                do {
                    let (id, status, lease) = try reserveOne(
                        tenant: job.tenant, limits: job.limits, need: job.need, nowMs: job.nowMs,
                        expiresMs: job.expiresMs, leaseMs: job.leaseMs, leaseFactor: job.leaseFactor)
                    return .success(Admission(id: id, status: status, lease: lease))
                } catch let refusal as LimitRefusal {
                    return .failure(refusal)
                }
            }
        }
    }

    public typealias LeaseGrant = TenantGateCore.LeaseGrant
    public typealias BudgetLeft = TenantGateCore.BudgetLeft
    /// See `LeaseGrant.defaultFactor` and `LeaseGrant.threshold`.
    public static let leaseFactor = LeaseGrant.defaultFactor
    public static let leaseThreshold = LeaseGrant.threshold

    func reserveOne(
        tenant: String, limits: Limits, need: Reservation, nowMs: Int64, expiresMs: Int64, leaseMs: Int64 = 0,
        leaseFactor: Int64 = AccountingStore.leaseFactor
    ) throws -> (id: Int64, status: LimitStatus, lease: LeaseGrant?) {
        var status = LimitStatus()
        let since = nowMs - AccountingStore.window
        let periods = Periods(epochMs: nowMs)
        let scope = AccountingStore.tenantScope(tenant)
        let rate = try limits.requestsPerMinute.map { _ in try windowTotal(tenant, "r", since: since) }
        let tokenRate = try limits.tokensPerMinute.map { _ in try windowTotal(tenant, "t", since: since) }
        let day = try counter(scope, "d:\(periods.day)")
        let month = try monthCounter(scope, periods.month)
        let global = limits.globalDailyNano != nil || limits.globalMonthlyNano != nil
        let gd = global ? try counter(AccountingStore.globalScope, "d:\(periods.day)") : (tokens: 0, nano: 0)
        let gm = global ? try monthCounter(AccountingStore.globalScope, periods.month) : (tokens: 0, nano: 0)

        // The amounts to hold: this request's worst case, or a lease when every dimension has room.
        var requests = 1
        var tokens = Int64(need.tokens)
        var nano = need.costNano
        var lease: LeaseGrant?
        if leaseMs > 0 {
            let hard = limits.enforcement == .hard
            let globalHard = limits.globalEnforcement == .hard
            var tokenRooms: [Int64] = []
            var nanoRooms: [Int64] = []
            if let tpm = limits.tokensPerMinute, let used = tokenRate?.total { tokenRooms.append(Int64(tpm) - used) }
            if hard, let cap = limits.dailyTokens { tokenRooms.append(Int64(cap) - day.tokens) }
            if hard, let cap = limits.monthlyTokens { tokenRooms.append(Int64(cap) - month.tokens) }
            if hard, let cap = limits.dailyNano { nanoRooms.append(cap - day.nano) }
            if hard, let cap = limits.monthlyNano { nanoRooms.append(cap - month.nano) }
            if globalHard, let cap = limits.globalDailyNano { nanoRooms.append(cap - gd.nano) }
            if globalHard, let cap = limits.globalMonthlyNano { nanoRooms.append(cap - gm.nano) }
            let requestRoom = limits.requestsPerMinute.map { Int64($0) - (rate?.total ?? 0) }
            let k = AccountingStore.leaseThreshold
            let roomy =
                (requestRoom.map { $0 >= k } ?? true)
                && tokenRooms.allSatisfy { $0 >= Int64(need.tokens).saturatingMultiply(k) }
                && nanoRooms.allSatisfy { $0 >= need.costNano.saturatingMultiply(k) }
            if roomy {
                let factor = leaseFactor
                requests = requestRoom.map { Int(min(factor, $0 / k)) } ?? Int.max
                tokens = ([Int64(need.tokens).saturatingMultiply(factor)] + tokenRooms.map { $0 / k }).min() ?? tokens
                nano = ([need.costNano.saturatingMultiply(factor)] + nanoRooms.map { $0 / k }).min() ?? nano
                lease = LeaseGrant(
                    requests: requests, tokens: tokens, nano: nano, admitUntilMs: nowMs + leaseMs, day: periods.day)
            }
        }
        let windowRequests = Int64(requests == Int.max ? 1 : requests)

        if let rpm = limits.requestsPerMinute, let rate {
            let (used, oldest) = rate
            status.requestLimit = rpm
            if used.saturatingAdd(windowRequests) > rpm {
                throw LimitRefusal.rate(limit: "requests", retryAfter: retryAfter(oldest, nowMs))
            }
            status.requestsRemaining = rpm - Int(used) - Int(windowRequests)
            status.resetAt = ((oldest ?? nowMs) + AccountingStore.window + 999) / 1000
        }
        if let tpm = limits.tokensPerMinute, let tokenRate {
            let (used, oldest) = tokenRate
            status.tokenLimit = tpm
            if used.saturatingAdd(tokens) > tpm {
                let wait = need.tokens > tpm ? 60 : retryAfter(oldest, nowMs)
                throw LimitRefusal.rate(limit: "tokens", retryAfter: wait)
            }
            status.tokensRemaining = tpm - Int(used) - Int(tokens)
        }
        var all: [(String, String, Int64?, Int64, Enforcement, Int64)] = [
            (
                "tenant", "daily_tokens", limits.dailyTokens.map(Int64.init), day.tokens.saturatingAdd(tokens),
                limits.enforcement, periods.dayResetsAt
            ),
            (
                "tenant", "monthly_tokens", limits.monthlyTokens.map(Int64.init), month.tokens.saturatingAdd(tokens),
                limits.enforcement, periods.monthResetsAt
            ),
            (
                "tenant", "daily_usd", limits.dailyNano, day.nano.saturatingAdd(nano), limits.enforcement,
                periods.dayResetsAt
            ),
            (
                "tenant", "monthly_usd", limits.monthlyNano, month.nano.saturatingAdd(nano), limits.enforcement,
                periods.monthResetsAt
            ),
        ]
        if global {
            all.append(
                (
                    "global", "daily_usd", limits.globalDailyNano, gd.nano.saturatingAdd(nano),
                    limits.globalEnforcement, periods.dayResetsAt
                ))
            all.append(
                (
                    "global", "monthly_usd", limits.globalMonthlyNano, gm.nano.saturatingAdd(nano),
                    limits.globalEnforcement, periods.monthResetsAt
                ))
        }
        for (scopeName, budget, limit, wouldBe, enforcement, resetsAt) in all {
            guard let limit, wouldBe > limit else { continue }
            if enforcement == .hard {
                throw LimitRefusal.budget(scope: scopeName, budget: budget, resetsAt: resetsAt)
            }
            status.warnings.append(scopeName == "global" ? "global_\(budget)" : budget)
        }
        // A lease's window entries are dated at the end of its admissions, so every window that contains
        // one of them counts the whole lease.
        let entryAt = lease?.admitUntilMs ?? nowMs
        var rpmRow: SQLValue = .null
        var tpmRow: SQLValue = .null
        let insert = try db.statement(
            "INSERT INTO rate_log(tenant, kind, at_ms, amount) VALUES (?, ?, ?, ?) RETURNING id")
        if limits.requestsPerMinute != nil {
            rpmRow =
                try insert.all([.text(tenant), .text("r"), .int(entryAt), .int(windowRequests)]).first?.first ?? .null
            try addToTotal(tenant, "r", windowRequests)
        }
        if limits.tokensPerMinute != nil {
            tpmRow = try insert.all([.text(tenant), .text("t"), .int(entryAt), .int(tokens)]).first?.first ?? .null
            try addToTotal(tenant, "t", tokens)
        }
        for s in [scope, AccountingStore.globalScope] {
            try bump(s, "d:\(periods.day)", usedTokens: 0, usedNano: 0, reservedTokens: tokens, reservedNano: nano)
        }
        let id =
            try db.statement(
                """
                INSERT INTO reservations(tenant, day, month, tokens, nano, rpm_row, tpm_row, expires_ms)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id
                """
            ).all([
                .text(tenant), .text(periods.day), .text(periods.month), .int(tokens), .int(nano), rpmRow, tpmRow,
                .int(expiresMs + (lease == nil ? 0 : leaseMs)),
            ]).first?.first?.int ?? 0
        return (id, status, lease)
    }

    func retryAfter(_ oldest: Int64?, _ nowMs: Int64) -> Int {
        guard let oldest else { return 1 }
        return max(1, Int((oldest + AccountingStore.window - nowMs + 999) / 1000))
    }

    /// Drops a reservation's held amounts; `consumed: false` also removes its rate-window entries.
    /// Deletes a reservation and fixes its rate-window entries; returns (day, tokens, nano) it held.
    func release(id: Int64, consumed: Bool, actualTokens: Int64) throws -> (String, Int64, Int64)? {
        guard
            let row = try db.statement(
                "DELETE FROM reservations WHERE id = ? RETURNING tenant, day, month, tokens, nano, rpm_row, tpm_row"
            ).all([.int(id)]).first, let tenant = row[0].text, let day = row[1].text
        else { return nil }
        if consumed {
            if let tpm = row[6].int,
                let old = try db.statement("SELECT amount FROM rate_log WHERE id = ?").all([.int(tpm)]).first?.first?
                    .int
            {
                try db.statement("UPDATE rate_log SET amount = ? WHERE id = ?").run([.int(actualTokens), .int(tpm)])
                try addToTotal(tenant, "t", actualTokens - old)
            }
        } else {
            for rowID in [row[5].int, row[6].int].compactMap({ $0 }) { try dropRateEntry(rowID) }
        }
        return (day, row[3].int ?? 0, row[4].int ?? 0)
    }

    /// Gives a reservation (or lease) back whole: its hold and its window entries, as if it never was.
    func cancel(reservation id: Int64) throws {
        try writeLeases()
        audit.leaseUpdates[id] = .some(nil)
        let tenant = try db.statement("SELECT tenant FROM reservations WHERE id = ?").all([.int(id)]).first?.first?.text
        if let tenant, let held = try release(id: id, consumed: false, actualTokens: 0) { try unreserve(tenant, held) }
    }

    /// Returns a released reservation's amounts to the tenant's and the global day rows.
    func unreserve(_ tenant: String, _ held: (String, Int64, Int64)) throws {
        for s in [AccountingStore.tenantScope(tenant), AccountingStore.globalScope] {
            try bump(s, "d:\(held.0)", usedTokens: 0, usedNano: 0, reservedTokens: -held.1, reservedNano: -held.2)
        }
    }

    /// How long a settled batch's id is kept: far longer than a batch is retried.
    static let batchIDRetentionMs: Int64 = 600_000

}
