import TenantGateCore

extension AccountingStore {
    /// The refusal any admission of `tenant` would get now because a limit is reached already (read only:
    /// nothing is reserved). A request that will run content inspection asks this first, so a tenant at its
    /// limit makes the gateway inspect nothing (SPEC: a tenant at its limit burns nothing).
    ///
    /// Exact at the moment it reads, like a reservation: the per-minute windows count every admission and
    /// charged request of every worker; a budget counts what was used and what is held. `tokens: false`
    /// (a request that spends no tokens, such as token counting) checks only the request window; `money:
    /// false` (every model it may use is free) skips the USD budgets. Cost: a few index seeks, whatever
    /// the limits (the window totals are kept, not summed).
    public func refusalNow(
        tenant: String, limits: Limits, nowMs: Int64, tokens: Bool = true, money: Bool = true
    ) throws -> LimitRefusal? {
        let since = nowMs - AccountingStore.window
        if let rpm = limits.requestsPerMinute {
            let (used, oldest) = try windowNow(tenant, "r", since: since)
            if used >= Int64(rpm) { return .rate(limit: "requests", retryAfter: retryAfter(oldest, nowMs)) }
        }
        guard tokens else { return nil }
        if let tpm = limits.tokensPerMinute {
            let (used, oldest) = try windowNow(tenant, "t", since: since)
            if used >= Int64(tpm) { return .rate(limit: "tokens", retryAfter: retryAfter(oldest, nowMs)) }
        }
        for budget in try budgetsLeft(tenant: tenant, limits: limits, nowMs: nowMs)
        where budget.used >= budget.cap && (money || budget.countsTokens) {
            return .budget(scope: budget.scope, budget: budget.budget, resetsAt: budget.resetsAt)
        }
        return nil
    }

    /// The window's total now, read only: the kept total less the entries that left the window but are
    /// not trimmed yet (every reservation trims them, so they are few).
    private func windowNow(_ tenant: String, _ kind: String, since: Int64) throws -> (total: Int64, oldest: Int64?) {
        let total =
            try db.statement("SELECT total FROM rate_totals WHERE tenant = ? AND kind = ?")
            .all([.text(tenant), .text(kind)]).first?.first?.int ?? 0
        let expired =
            try db.statement(
                "SELECT COALESCE(SUM(amount), 0) FROM rate_log WHERE tenant = ? AND kind = ? AND at_ms <= ?"
            ).all([.text(tenant), .text(kind), .int(since)]).first?.first?.int ?? 0
        let oldest = try db.statement(
            "SELECT MIN(at_ms) FROM rate_log WHERE tenant = ? AND kind = ? AND at_ms > ?"
        ).all([.text(tenant), .text(kind), .int(since)]).first?.first?.int
        return (max(0, total - expired), oldest)
    }

    /// Every hard budget that applies to `tenant`, with what it has left now (read only).
    public func budgetsLeft(tenant: String, limits: Limits, nowMs: Int64) throws -> [BudgetLeft] {
        let periods = Periods(epochMs: nowMs)
        var out: [BudgetLeft] = []
        if limits.enforcement == .hard
            && (limits.dailyTokens != nil || limits.monthlyTokens != nil || limits.dailyNano != nil
                || limits.monthlyNano != nil)
        {
            let scope = AccountingStore.tenantScope(tenant)
            let day = try counter(scope, "d:\(periods.day)")
            let month = try monthCounter(scope, periods.month)
            let all: [(String, Int64?, Int64, Int64)] = [
                ("daily_tokens", limits.dailyTokens.map(Int64.init), day.tokens, periods.dayResetsAt),
                ("monthly_tokens", limits.monthlyTokens.map(Int64.init), month.tokens, periods.monthResetsAt),
                ("daily_usd", limits.dailyNano, day.nano, periods.dayResetsAt),
                ("monthly_usd", limits.monthlyNano, month.nano, periods.monthResetsAt),
            ]
            for (budget, cap, used, resetsAt) in all {
                guard let cap else { continue }
                out.append(BudgetLeft(scope: "tenant", budget: budget, cap: cap, used: used, resetsAt: resetsAt))
            }
        }
        if limits.globalEnforcement == .hard {
            let scope = AccountingStore.globalScope
            if let cap = limits.globalDailyNano {
                let used = try counter(scope, "d:\(periods.day)").nano
                out.append(
                    BudgetLeft(
                        scope: "global", budget: "daily_usd", cap: cap, used: used, resetsAt: periods.dayResetsAt))
            }
            if let cap = limits.globalMonthlyNano {
                let used = try monthCounter(scope, periods.month).nano
                out.append(
                    BudgetLeft(
                        scope: "global", budget: "monthly_usd", cap: cap, used: used, resetsAt: periods.monthResetsAt))
            }
        }
        return out
    }

    /// The budget thresholds (50, 80, 100 % of each budget, soft or hard) that settled use has reached and
    /// that nobody announced yet in this period: each is announced once (`budget_notices`), with the
    /// settlement that reached it. Holds do not count: a worst case held is not money spent. `exhausted`:
    /// budgets that refused a request that could not be fitted (`when_short: fit`): less than the smallest
    /// request is left, so they are announced at 100 % too.
    ///
    /// Cost: one read of the tenant's settled use (two with a global budget); the notices already made are
    /// read (and the new ones written) only once a threshold is reached.
    func announceThresholds(tenant: String, limits: Limits, nowMs: Int64, exhausted: Set<String> = []) throws
        -> [(budget: String, percent: Int)]
    {
        let periods = Periods(epochMs: nowMs)
        let tenantBudgets =
            limits.dailyTokens != nil || limits.monthlyTokens != nil || limits.dailyNano != nil
            || limits.monthlyNano != nil
        let globalBudgets = limits.globalDailyNano != nil || limits.globalMonthlyNano != nil
        var reached: [(scope: String, name: String, period: String, percent: Int64)] = []
        func check(_ scope: String, _ name: String, _ period: String, _ cap: Int64?, _ used: Int64) {
            guard let cap, cap > 0 else { return }
            // Compared as used/cap ≥ pct/100 without overflow: caps reach 10¹⁸ nano-USD.
            for pct in [50, 80, 100] as [Int64]
            where used.saturatingMultiply(100) >= cap.saturatingMultiply(pct)
                || (pct == 100 && exhausted.contains(name))
            {
                reached.append((scope, name, period, pct))
            }
        }
        if tenantBudgets {
            let scope = AccountingStore.tenantScope(tenant)
            let used = try settled(scope, periods)
            check(scope, "daily_tokens", periods.day, limits.dailyTokens.map(Int64.init), used.dayTokens)
            check(scope, "monthly_tokens", periods.month, limits.monthlyTokens.map(Int64.init), used.monthTokens)
            check(scope, "daily_usd", periods.day, limits.dailyNano, used.dayNano)
            check(scope, "monthly_usd", periods.month, limits.monthlyNano, used.monthNano)
        }
        if globalBudgets {
            let scope = AccountingStore.globalScope
            let used = try settled(scope, periods)
            check(scope, "global_daily_usd", periods.day, limits.globalDailyNano, used.dayNano)
            check(scope, "global_monthly_usd", periods.month, limits.globalMonthlyNano, used.monthNano)
        }
        guard !reached.isEmpty else { return [] }
        // What was announced already this day and month (every threshold reached stays reached).
        var known: Set<String> = []
        for scope in Set(reached.map(\.scope)) {
            try db.statement("SELECT budget, percent FROM budget_notices WHERE scope = ? AND period IN (?, ?)")
                .forEach([.text(scope), .text(periods.day), .text(periods.month)]) { row in
                    known.insert("\(scope)|\(row.text(0))|\(row.int(1))")
                }
        }
        var out: [(budget: String, percent: Int)] = []
        let insert = try db.statement(
            """
            INSERT INTO budget_notices(scope, period, budget, percent, at_ms) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT DO NOTHING RETURNING percent
            """)
        for r in reached where !known.contains("\(r.scope)|\(r.name)|\(r.percent)") {
            // Another worker's batch may have announced it since the read: the key decides, once.
            let fresh = try insert.all([.text(r.scope), .text(r.period), .text(r.name), .int(r.percent), .int(nowMs)])
            if !fresh.isEmpty { out.append((r.name, Int(r.percent))) }
        }
        return out
    }

    /// Settled use (not holds) of a scope today and this month, in one read.
    private func settled(_ scope: String, _ periods: Periods) throws -> (
        dayTokens: Int64, dayNano: Int64, monthTokens: Int64, monthNano: Int64
    ) {
        let row = try db.statement(
            """
            SELECT COALESCE(SUM(CASE WHEN period = ?2 THEN used_tokens END), 0),
                   COALESCE(SUM(CASE WHEN period = ?2 THEN used_nano END), 0),
                   COALESCE(SUM(used_tokens), 0), COALESCE(SUM(used_nano), 0)
            FROM budget_counters WHERE scope = ?1 AND period BETWEEN ?3 AND ?4
            """
        ).all([
            .text(scope), .text("d:\(periods.day)"), .text("d:\(periods.month)-01"), .text("d:\(periods.month)-31"),
        ]).first
        return (row?[0].int ?? 0, row?[1].int ?? 0, row?[2].int ?? 0, row?[3].int ?? 0)
    }

    /// One budget of a tenant as people read it: spent (settled), held (worst cases of requests in flight
    /// and leases), what is left, when it resets.
    public struct BudgetMeter: Sendable, Equatable {
        /// `daily_usd`, `monthly_usd`, `daily_tokens` or `monthly_tokens`.
        public let budget: String
        public let cap: Int64
        public let spent: Int64
        public let held: Int64
        public let enforcement: Enforcement
        /// Epoch seconds.
        public let resetsAt: Int64

        /// What is left once spend and holds are counted (never negative).
        public var left: Int64 { max(0, cap - spent - held) }
        /// Whether it counts tokens (else nano-USD).
        public var countsTokens: Bool { budget.hasSuffix("tokens") }
    }

    /// The tenant's budgets, each with spend and holds apart (read only).
    public func budgetMeters(tenant: String, limits: Limits, nowMs: Int64) throws -> [BudgetMeter] {
        let periods = Periods(epochMs: nowMs)
        let scope = AccountingStore.tenantScope(tenant)
        func read(_ from: String, _ to: String) throws -> [Int64] {
            let row = try db.statement(
                """
                SELECT COALESCE(SUM(used_tokens), 0), COALESCE(SUM(reserved_tokens), 0), COALESCE(SUM(used_nano), 0),
                       COALESCE(SUM(reserved_nano), 0)
                FROM budget_counters WHERE scope = ? AND period BETWEEN ? AND ?
                """
            ).all([.text(scope), .text(from), .text(to)]).first
            return (0..<4).map { row?[$0].int ?? 0 }
        }
        let day = try read("d:\(periods.day)", "d:\(periods.day)")
        let month = try read("d:\(periods.month)-01", "d:\(periods.month)-31")
        let all: [(String, Int64?, [Int64], Bool, Int64)] = [
            ("daily_usd", limits.dailyNano, day, false, periods.dayResetsAt),
            ("monthly_usd", limits.monthlyNano, month, false, periods.monthResetsAt),
            ("daily_tokens", limits.dailyTokens.map(Int64.init), day, true, periods.dayResetsAt),
            ("monthly_tokens", limits.monthlyTokens.map(Int64.init), month, true, periods.monthResetsAt),
        ]
        return all.compactMap { budget, cap, row, tokens, resetsAt in
            guard let cap else { return nil }
            return BudgetMeter(
                budget: budget, cap: cap, spent: tokens ? row[0] : row[2], held: tokens ? row[1] : row[3],
                enforcement: limits.enforcement, resetsAt: resetsAt)
        }
    }
}
