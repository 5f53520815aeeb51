import TenantGateCore
import TenantGateStore
import TenantGateSystem

/// Admission by leases: a worker takes, for a tenant, a lease of rate-window and budget capacity in one
/// SQLite transaction (`AccountingStore.reserve` with `leaseMs`) and admits that tenant's requests from it
/// in memory, so most requests run no write transaction before their upstream call.
///
/// Exactness: a lease is a reservation like any other. Its hold counts in the budget counters and its
/// window entries count in the per-minute windows of every worker (dated at the end of its admissions, so
/// every 60 s window that contains one of them counts the whole lease). A request admitted from it takes its
/// worst case out of the lease, never more than the lease holds; its settlement charges what it used and
/// takes that out of the hold; what it did not use goes back to the lease. So a hard budget is never
/// exceeded and a per-minute limit never admits more than its number, whatever the workers do. Near a limit
/// the store grants no lease and admission is one exact reservation per request.
///
/// A lease admits for `leaseMs`; then (or when a request does not fit it, or the tenant's limits change) it
/// is retired: its unused part goes back at once, and its row goes when the last request it admitted has
/// settled. A drained worker retires all of its leases; a killed worker's leases expire like reservations.
final class LeaseBook: Sendable {
    /// One lease; every mutable field is read and written under the book's lock.
    final class Lease: @unchecked Sendable {  // mutable state only under `LeaseBook.leases`' lock
        let id: Int64
        let limits: Limits
        let admitUntilMs: Int64
        let status: LimitStatus
        var requests: Int
        var tokens: Int64
        var nano: Int64
        var inFlight = 0
        var inFlightTokens: Int64 = 0
        var consumedRequests: Int64 = 0
        var usedTokens: Int64 = 0
        var retired = false

        init(id: Int64, limits: Limits, grant: AccountingStore.LeaseGrant, status: LimitStatus) {
            self.id = id
            self.limits = limits
            admitUntilMs = grant.admitUntilMs
            self.status = status
            requests = grant.requests
            tokens = grant.tokens
            nano = grant.nano
        }
    }

    /// A request's share of a lease: its worst case, given back (less what it used) when it settles.
    struct Claim: Sendable {
        let lease: Lease
        let tokens: Int64
        let nano: Int64
    }

    /// How long a lease admits.
    static let leaseMs: Int64 = 1000

    private let leases = Locked<[String: Lease]>([:])
    private let settlements: SettleQueue

    init(settlements: SettleQueue) { self.settlements = settlements }

    /// Admits a request from the tenant's lease, if it has one that fits; retires one that cannot admit.
    func admit(tenant: String, limits: Limits, need: Reservation, nowMs: Int64) -> (Claim, LimitStatus)? {
        leases.withLock { book in
            guard let lease = book[tenant] else { return nil }
            guard lease.limits == limits, nowMs < lease.admitUntilMs, let claim = take(need, from: lease) else {
                book[tenant] = nil
                retire(lease)
                return nil
            }
            return (claim, status(of: lease))
        }
    }

    /// Installs a lease the store just granted and admits the request that asked for it.
    func install(tenant: String, limits: Limits, admission: Admission, need: Reservation) -> (Claim, LimitStatus)? {
        guard let grant = admission.lease else { return nil }
        let lease = Lease(id: admission.id, limits: limits, grant: grant, status: admission.status)
        return leases.withLock { book in
            if let older = book[tenant] { retire(older) }  // another thread's lease, raced in: retire it
            book[tenant] = lease
            // The grant holds at least this request's worst case.
            guard let claim = take(need, from: lease) else {
                book[tenant] = nil
                retire(lease)
                return nil
            }
            return (claim, status(of: lease))
        }
    }

    /// Queues the settlement of a request admitted from a lease; its unused worst case returns to the lease.
    func settle(_ claim: Claim, record: ExecutionRecord) {
        let lease = claim.lease
        let consumed = AccountingStore.consumed(record)
        let used = consumed ? Int64(record.usage.promptTokens + record.usage.completionTokens) : 0
        let usedNano = consumed ? record.costNano : 0
        leases.withLock { _ in
            lease.inFlight -= 1
            lease.inFlightTokens -= claim.tokens
            if consumed { lease.consumedRequests += 1 }
            lease.usedTokens = lease.usedTokens.saturatingAdd(used)
            if !lease.retired {
                if !consumed && lease.requests != Int.max { lease.requests += 1 }
                lease.tokens = lease.tokens.saturatingAdd(claim.tokens - min(used, claim.tokens))
                lease.nano = lease.nano.saturatingAdd(claim.nano - min(usedNano, claim.nano))
            }
            // Queued under the lock: the lease's settlements and its retirement reach the store in order.
            settlements.enqueue(.leased(lease: lease.id, record: record))
            if lease.retired && lease.inFlight == 0 {
                settlements.enqueue(
                    .retire(
                        lease: lease.id, tokens: 0, nano: 0, requests: lease.consumedRequests,
                        windowTokens: lease.usedTokens, final: true))
            }
        }
    }

    /// Retires every lease that stopped admitting (called about once a second), or all of them (drain).
    func retireExpired(nowMs: Int64, all: Bool = false) {
        leases.withLock { book in
            for (tenant, lease) in book where all || nowMs >= lease.admitUntilMs {
                book[tenant] = nil
                retire(lease)
            }
        }
    }

    // MARK: under the lock

    private func take(_ need: Reservation, from lease: Lease) -> Claim? {
        let tokens = Int64(need.tokens)
        guard lease.requests >= 1, lease.tokens >= tokens, lease.nano >= need.costNano else { return nil }
        if lease.requests != Int.max { lease.requests -= 1 }
        lease.tokens -= tokens
        lease.nano -= need.costNano
        lease.inFlight += 1
        lease.inFlightTokens += tokens
        return Claim(lease: lease, tokens: tokens, nano: need.costNano)
    }

    /// Stops a lease admitting: its unused part goes back now; its window entries shrink to what it admitted
    /// (requests still in flight count at their worst case until they settle).
    private func retire(_ lease: Lease) {
        guard !lease.retired else { return }
        lease.retired = true
        settlements.enqueue(
            .retire(
                lease: lease.id, tokens: lease.tokens, nano: lease.nano,
                requests: lease.consumedRequests + Int64(lease.inFlight),
                windowTokens: lease.usedTokens.saturatingAdd(lease.inFlightTokens), final: lease.inFlight == 0))
        lease.requests = 0
        lease.tokens = 0
        lease.nano = 0
    }

    /// The response headers' view: what the store saw when the lease was taken, plus what it still holds.
    private func status(of lease: Lease) -> LimitStatus {
        var status = lease.status
        status.crossed = []
        if let remaining = status.requestsRemaining, lease.requests != Int.max {
            status.requestsRemaining = remaining + lease.requests
        }
        if let remaining = status.tokensRemaining { status.tokensRemaining = remaining + Int(lease.tokens) }
        return status
    }
}
