import TenantGateCore
import TenantGateSystem

/// `AccountingReads` over a worker's pooled read connections (usage is read on the write connection, as
/// the settlements that change it are written there).
public struct PooledAccountingReads: AccountingReads {
    let readers: ConnectionPool
    let writer: SharedWriter

    public init(readers: ConnectionPool, writer: SharedWriter) {
        self.readers = readers
        self.writer = writer
    }

    public func refusalNow(tenant: String, limits: Limits, nowMs: Int64, tokens: Bool, money: Bool) throws
        -> LimitRefusal?
    {
        try readers.with {
            try AccountingStore($0).refusalNow(
                tenant: tenant, limits: limits, nowMs: nowMs, tokens: tokens, money: money)
        }
    }

    public func budgetsLeft(tenant: String, limits: Limits, nowMs: Int64) throws -> [BudgetLeft] {
        try readers.with { try AccountingStore($0).budgetsLeft(tenant: tenant, limits: limits, nowMs: nowMs) }
    }

    public func usageNow(tenant: String, nowMs: Int64) throws -> UsageNow {
        let used = try writer.accounting { try $0.usageNow(tenant: tenant, nowMs: nowMs) }
        return UsageNow(
            requests: used.requests, tokens: used.tokens, dayTokens: used.day.tokens, dayNano: used.day.nano,
            monthTokens: used.month.tokens, monthNano: used.month.nano)
    }

    public func spendByTenant(nowMs: Int64) throws -> [String: (day: Int64, month: Int64)] {
        try readers.with { try AccountingStore($0).spendByTenant(nowMs: nowMs) }
    }
}
