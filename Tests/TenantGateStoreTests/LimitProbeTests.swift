import Testing

@testable import TenantGateCore
@testable import TenantGateStore

/// `refusalNow`: what any admission would be refused with now, read without reserving; and the charge of a
/// request stopped after inspection.
@Suite struct LimitProbeTests {
    @Test(arguments: TestEngine.available) func aFullRequestWindowIsReportedAndChargedRequestsFillIt(
        _ engine: TestEngine
    ) throws {
        let store = AccountingStore(try testDB(engine))
        let l = try limits(#"{"rate_limit":{"requests_per_minute":3}}"#)
        #expect(try store.refusalNow(tenant: "a", limits: l, nowMs: day0) == nil)
        _ = try store.reserve(tenant: "a", limits: l, need: one, nowMs: day0, expiresMs: day0 + 1000)
        // Two requests stopped by a policy: each is one request of the window, nothing else.
        for t in [1, 2] as [Int64] {
            var blocked = ExecutionRecord(requestID: "b\(t)", atMs: day0 + t, tenant: "a", status: 403)
            blocked.chargesRequest = true
            try store.settle(reservation: nil, record: blocked)
        }
        #expect(
            try store.refusalNow(tenant: "a", limits: l, nowMs: day0 + 10)
                == .rate(limit: "requests", retryAfter: 60))
        #expect(throws: LimitRefusal.self) {
            try store.reserve(tenant: "a", limits: l, need: one, nowMs: day0 + 10, expiresMs: day0 + 1000)
        }
        // Reading reserved nothing, and another tenant is not at its limit.
        #expect(try store.usageNow(tenant: "a", nowMs: day0 + 10).requests == 3)
        #expect(try store.refusalNow(tenant: "b", limits: l, nowMs: day0 + 10) == nil)
        // The window slides: a minute after the first, one request has room again.
        #expect(try store.refusalNow(tenant: "a", limits: l, nowMs: day0 + 60_000) == nil)
    }

    @Test(arguments: TestEngine.available) func reachedHardBudgetsAndTokenWindowsAreReported(_ engine: TestEngine)
        throws
    {
        let store = AccountingStore(try testDB(engine))
        let budget = try limits(#"{"budget":{"daily_tokens":100}}"#)
        try store.settle(reservation: nil, record: record("a", at: day0, tokens: 90))
        #expect(try store.refusalNow(tenant: "a", limits: budget, nowMs: day0 + 1) == nil)
        try store.settle(reservation: nil, record: record("a", at: day0 + 2, tokens: 10))
        let reached = try store.refusalNow(tenant: "a", limits: budget, nowMs: day0 + 3)
        #expect(reached == .budget(scope: "tenant", budget: "daily_tokens", resetsAt: day0 / 1000 + 86_400))
        // A request that spends nothing (token counting) is not refused by a budget.
        #expect(try store.refusalNow(tenant: "a", limits: budget, nowMs: day0 + 3, tokens: false) == nil)
        // Spent USD does not stop a request whose every model is free; spent tokens do.
        let usd = try limits(#"{"budget":{"daily_usd":0.000001}}"#)
        try store.settle(reservation: nil, record: record("u", at: day0, tokens: 10, cost: 1000))
        #expect(try store.refusalNow(tenant: "u", limits: usd, nowMs: day0 + 1) != nil)
        #expect(try store.refusalNow(tenant: "u", limits: usd, nowMs: day0 + 1, money: false) == nil)
        #expect(try store.refusalNow(tenant: "a", limits: budget, nowMs: day0 + 3, money: false) != nil)
        // A soft budget never refuses.
        let soft = try limits(#"{"budget":{"daily_tokens":100,"enforcement":"soft"}}"#)
        #expect(try store.refusalNow(tenant: "a", limits: soft, nowMs: day0 + 3) == nil)
        // A held worst case counts like a used one.
        let tpm = try limits(#"{"rate_limit":{"tokens_per_minute":20}}"#)
        _ = try store.reserve(
            tenant: "c", limits: tpm, need: Reservation(promptTokens: 10, completionTokens: 10, costNano: 0),
            nowMs: day0, expiresMs: day0 + 1000)
        #expect(
            try store.refusalNow(tenant: "c", limits: tpm, nowMs: day0 + 1) == .rate(limit: "tokens", retryAfter: 60))
    }
}

/// Budget thresholds are announced on settled use, once per budget and period, never on holds.
@Suite struct BudgetNoticeTests {
    @Test(arguments: TestEngine.available) func settledUseAnnouncesEachThresholdOnce(_ engine: TestEngine) throws {
        let store = AccountingStore(try testDB(engine))
        let l = try limits(#"{"budget":{"daily_tokens":100}}"#)
        func settle(_ tokens: Int, at: Int64) throws -> [BudgetNotice] {
            var r = record("a", at: day0 + at, tokens: tokens)
            r.budgetLimits = l
            return try store.settle([.request(reservation: nil, record: r)])
        }
        // A hold of the whole budget announces nothing.
        _ = try store.reserve(
            tenant: "a", limits: l, need: Reservation(promptTokens: 50, completionTokens: 50, costNano: 0),
            nowMs: day0, expiresMs: day0 + 1000)
        #expect(try settle(10, at: 1).isEmpty)
        let half = try settle(45, at: 2)
        #expect(half.map(\.percent) == [50] && half.first?.budget == "daily_tokens")
        #expect(try settle(1, at: 3).isEmpty)  // still over 50 %: not again
        #expect(try settle(50, at: 4).map(\.percent) == [80, 100])
        // A refusal that could not be fitted says the budget is used up: 100 % once, even below it.
        let other = try limits(#"{"budget":{"daily_tokens":1000}}"#)
        var refused = record("b", at: day0 + 10, tokens: 0, status: 429)
        refused.budgetLimits = other
        refused.refusedLimit = "daily_tokens"
        // A refusal with room left (a big input) is not exhaustion.
        #expect(try store.settle([.request(reservation: nil, record: refused)]).isEmpty)
        refused.budgetExhausted = true
        #expect(try store.settle([.request(reservation: nil, record: refused)]).map(\.percent) == [100])
        #expect(try store.settle([.request(reservation: nil, record: refused)]).isEmpty)
        // A record without budget limits (a tenant without budgets) checks nothing.
        #expect(try store.settle([.request(reservation: nil, record: record("a", at: day0 + 5))]).isEmpty)
        // The next day starts over.
        var next = record("a", at: day0 + 86_400_000, tokens: 60)
        next.budgetLimits = l
        #expect(try store.settle([.request(reservation: nil, record: next)]).map(\.percent) == [50])
    }
}
