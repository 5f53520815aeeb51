import TenantGateCore
import TenantGateSystem

extension AccountingStore {
    /// Releases reservations whose holder died (past their expiry) and trims the rate log.
    @discardableResult
    public func sweep(nowMs: Int64) throws -> Int {
        try db.transaction {
            let expired = try db.statement("SELECT id FROM reservations WHERE expires_ms < ? LIMIT 500")
                .all([.int(nowMs)]).compactMap { $0[0].int }
            for id in expired { try cancel(reservation: id) }
            let stale = try db.statement("SELECT id FROM rate_log WHERE at_ms < ? LIMIT 5000")
                .all([.int(nowMs - 2 * AccountingStore.window)]).compactMap { $0[0].int }
            for id in stale { try dropRateEntry(id) }
            try db.statement("DELETE FROM settled_batches WHERE at_ms < ?").run([
                .int(nowMs - AccountingStore.batchIDRetentionMs)
            ])
            // Announced thresholds of periods long over (a month's last for at most 31 days).
            try db.statement("DELETE FROM budget_notices WHERE at_ms < ?").run([.int(nowMs - 40 * 86_400_000)])
            return expired.count
        }
    }

    /// Each tenant's spend (used and reserved) today and this month, nano-USD, by tenant id.
    public func spendByTenant(nowMs: Int64) throws -> [String: (day: Int64, month: Int64)] {
        try perTenant("used_nano + reserved_nano", nowMs: nowMs)
    }

    /// Every tenant's held nano-USD today and this month (requests in flight and leases), by tenant id.
    public func heldByTenant(nowMs: Int64) throws -> [String: (day: Int64, month: Int64)] {
        try perTenant("reserved_nano", nowMs: nowMs)
    }

    /// `amount` (an expression over budget_counters' columns) summed today and this month, per tenant.
    func perTenant(_ amount: String, nowMs: Int64) throws -> [String: (day: Int64, month: Int64)] {
        let periods = Periods(epochMs: nowMs)
        let prefix = AccountingStore.tenantScope("")
        var out: [String: (day: Int64, month: Int64)] = [:]
        try db.statement(
            """
            SELECT scope, COALESCE(SUM(CASE WHEN period = ?1 THEN \(amount) END), 0), COALESCE(SUM(\(amount)), 0)
            FROM budget_counters WHERE period BETWEEN ?2 AND ?3 AND scope LIKE 'tenant:%' GROUP BY scope
            """
        ).forEach([.text("d:\(periods.day)"), .text("d:\(periods.month)-01"), .text("d:\(periods.month)-31")]) {
            row in
            let scope = row.text(0)
            guard scope.hasPrefix(prefix) else { return }
            out[String(scope.dropFirst(prefix.count))] = (row.int(1), row.int(2))
        }
        return out
    }

    /// What is used now against each limit, for `/v1/tenant-info`.
    public func usageNow(tenant: String, nowMs: Int64) throws -> (
        requests: Int64, tokens: Int64, day: (tokens: Int64, nano: Int64), month: (tokens: Int64, nano: Int64),
        globalDay: Int64, globalMonth: Int64
    ) {
        let since = nowMs - AccountingStore.window
        let periods = Periods(epochMs: nowMs)
        let scope = AccountingStore.tenantScope(tenant)
        return (
            try windowSum(tenant, "r", since: since).sum, try windowSum(tenant, "t", since: since).sum,
            try counter(scope, "d:\(periods.day)"), try monthCounter(scope, periods.month),
            try counter(AccountingStore.globalScope, "d:\(periods.day)").nano,
            try monthCounter(AccountingStore.globalScope, periods.month).nano
        )
    }
}
