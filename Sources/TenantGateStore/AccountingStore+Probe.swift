import TenantGateCore

extension AccountingStore {
    /// The refusal any admission of `tenant` would get now because a limit is reached already (read only:
    /// nothing is reserved). A request that will run content inspection asks this first, so a tenant at its
    /// limit makes the gateway inspect nothing (SPEC: a tenant at its limit burns nothing).
    ///
    /// Exact at the moment it reads, like a reservation: the per-minute windows count every admission and
    /// charged request of every worker; a budget counts what was used and what is held. `costs: false`
    /// (a request that spends no tokens, such as token counting) checks only the request window.
    public func refusalNow(tenant: String, limits: Limits, nowMs: Int64, costs: Bool = true) throws -> LimitRefusal? {
        let since = nowMs - AccountingStore.window
        if let rpm = limits.requestsPerMinute {
            let (used, oldest) = try windowSum(tenant, "r", since: since)
            if used >= Int64(rpm) { return .rate(limit: "requests", retryAfter: retryAfter(oldest, nowMs)) }
        }
        guard costs else { return nil }
        if let tpm = limits.tokensPerMinute {
            let (used, oldest) = try windowSum(tenant, "t", since: since)
            if used >= Int64(tpm) { return .rate(limit: "tokens", retryAfter: retryAfter(oldest, nowMs)) }
        }
        let periods = Periods(epochMs: nowMs)
        if limits.enforcement == .hard {
            let scope = AccountingStore.tenantScope(tenant)
            let day = try counter(scope, "d:\(periods.day)")
            let month = try monthCounter(scope, periods.month)
            let reached: [(String, Int64?, Int64, Int64)] = [
                ("daily_tokens", limits.dailyTokens.map(Int64.init), day.tokens, periods.dayResetsAt),
                ("monthly_tokens", limits.monthlyTokens.map(Int64.init), month.tokens, periods.monthResetsAt),
                ("daily_usd", limits.dailyNano, day.nano, periods.dayResetsAt),
                ("monthly_usd", limits.monthlyNano, month.nano, periods.monthResetsAt),
            ]
            for (budget, cap, used, resetsAt) in reached {
                if let cap, used >= cap { return .budget(scope: "tenant", budget: budget, resetsAt: resetsAt) }
            }
        }
        if limits.globalEnforcement == .hard {
            let scope = AccountingStore.globalScope
            if let cap = limits.globalDailyNano, try counter(scope, "d:\(periods.day)").nano >= cap {
                return .budget(scope: "global", budget: "daily_usd", resetsAt: periods.dayResetsAt)
            }
            if let cap = limits.globalMonthlyNano, try monthCounter(scope, periods.month).nano >= cap {
                return .budget(scope: "global", budget: "monthly_usd", resetsAt: periods.monthResetsAt)
            }
        }
        return nil
    }
}
