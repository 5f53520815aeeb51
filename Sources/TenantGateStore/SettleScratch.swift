import TenantGateCore
import TenantGateSystem

/// What a settlement batch gathers while it is written and writes once at its end (the store is a value;
/// this is its scratch): audit events, metric increments, rollups and budget counter changes, each
/// summed per row. Summing the budget rows is exact: in a settlement every `used` change is ≥ 0 and
/// every `reserved` change ≤ 0, and `max(0, max(0, r − a) − b) = max(0, r − a − b)`; nothing in a batch
/// reads these rows.
final class SettleScratch {
    var batching = false
    var events: [AuditChain.Pending] = []
    var metrics = MetricCounters.Tally()
    var rollups = ExecutionLog.Rollups()
    /// (scope, period) → used tokens, used nano, reserved tokens, reserved nano
    var budget: [BudgetRow: [Int64]] = [:]
    /// Lease rows read in this batch, and those changed since (see `AccountingStore.leaseRow`).
    var leases: [Int64: LeaseRowCache.Row] = [:]
    var changedLeases: Set<Int64> = []
    /// What the worker's cache of lease rows becomes when the batch commits (nil: forget the row).
    var leaseUpdates: [Int64: LeaseRowCache.Row?] = [:]
    /// The execution rows, written at the end in multi-row inserts.
    var executions: [ExecutionRecord] = []
    /// Budget thresholds the batch reached.
    var notices: [BudgetNotice] = []

    struct BudgetRow: Hashable, Comparable {
        let scope: String
        let period: String
        static func < (a: BudgetRow, b: BudgetRow) -> Bool { (a.scope, a.period) < (b.scope, b.period) }
    }

    func reset() {
        batching = false
        events.removeAll()
        metrics = MetricCounters.Tally()
        rollups = ExecutionLog.Rollups()
        budget.removeAll()
        leases.removeAll()
        changedLeases.removeAll()
        leaseUpdates.removeAll()
        executions.removeAll()
        notices.removeAll()
    }
}
