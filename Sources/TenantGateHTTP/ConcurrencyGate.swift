import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// Fair share of the pool: how many model calls each tenant, and all tenants together, may have in
/// flight across every worker at once. The counts live in memory shared by the pool's workers
/// (`SharedCounters`), so the caps are exact across processes and cost two atomic operations.
///
/// A tenant's cap is `limits.max_concurrent`, else a quarter of the pool's request slots; all model calls
/// together may take all but a tenth of the slots (at most 64 kept back), so `/v1/models`, `/v1/tenant-info`, the health and
/// metrics endpoints and the admin page always find a free thread, whatever the upstreams do.
public final class ConcurrencyGate: Sendable {
    private let counters: SharedCounters
    private let row: Int
    /// Request slots of the whole pool (threads × workers).
    let poolSlots: Int

    private static let poolKey = SharedCounters.key("\u{0}pool")

    public init(counters: SharedCounters, row: Int, poolSlots: Int) {
        self.counters = counters
        self.row = row
        self.poolSlots = max(1, poolSlots)
    }

    /// The cap of a tenant without `limits.max_concurrent`.
    var defaultTenantCap: Int { max(1, poolSlots / 4) }
    /// The cap of all model calls together.
    var poolCap: Int { max(1, poolSlots - max(1, min(64, poolSlots / 10))) }

    /// Takes one in-flight slot for `tenant` (and one of the pool's), or refuses with `429`.
    func admit(_ tenant: TenantConfig) throws(GatewayError) {
        let key = SharedCounters.key(tenant.id.rawValue)
        let cap = tenant.maxConcurrent ?? defaultTenantCap
        guard counters.acquire(key, row: row, limit: Int32(clamping: cap)) else {
            throw GatewayError.concurrencyLimited(scope: "tenant", limit: cap)
        }
        guard counters.acquire(ConcurrencyGate.poolKey, row: row, limit: Int32(clamping: poolCap)) else {
            counters.release(key, row: row)
            throw GatewayError.concurrencyLimited(scope: "pool", limit: poolCap)
        }
    }

    /// Gives back what `admit` took.
    func release(_ tenant: TenantConfig) {
        counters.release(ConcurrencyGate.poolKey, row: row)
        counters.release(SharedCounters.key(tenant.id.rawValue), row: row)
    }

    /// Model calls in flight for `tenant` across the pool now.
    func inFlight(_ tenant: String) -> Int { counters.total(SharedCounters.key(tenant)) }
}
