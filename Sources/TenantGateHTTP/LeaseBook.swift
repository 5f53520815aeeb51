import Dispatch
import TenantGateCore
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
///
/// One thread at a time takes a tenant's next lease; the others wait for it (briefly). Its size follows
/// demand: a lease used up before it expires makes the next one twice as large (up to `maxFactor` × the
/// request's worst case), one that expired mostly unused halves it (down to the store's default).
public final class LeaseBook: Sendable {
    /// One lease. Its counts change only under the book's lock; they sit behind a lock of their own as
    /// well (never contended), so that the compiler checks the sharing instead of a promise.
    @dynamicMemberLookup
    final class Lease: Sendable {
        /// What a lease still holds and what it admitted.
        struct Counts: Sendable {
            var requests: Int
            var tokens: Int64
            var nano: Int64
            var inFlight = 0
            var inFlightTokens: Int64 = 0
            var consumedRequests: Int64 = 0
            var usedTokens: Int64 = 0
            var retired = false
            /// Tokens taken by the requests it admitted (for sizing the next lease).
            var takenTokens: Int64 = 0
            /// A thread is taking the next lease already.
            var renewing = false
        }

        let id: Int64
        let limits: Limits
        let admitUntilMs: Int64
        let status: LimitStatus
        /// Tokens and requests granted (for sizing the next lease).
        let grantedTokens: Int64
        let grantedRequests: Int
        private let counts: Locked<Counts>

        /// `lease.requests`, `lease.tokens`, …: each count read or written under its lock.
        subscript<T>(dynamicMember path: WritableKeyPath<Counts, T>) -> T {
            get { counts.withLock { $0[keyPath: path] } }
            set { counts.withLock { $0[keyPath: path] = newValue } }
        }

        init(id: Int64, limits: Limits, grant: LeaseGrant, status: LimitStatus) {
            grantedTokens = grant.tokens
            grantedRequests = grant.requests
            self.id = id
            self.limits = limits
            admitUntilMs = grant.admitUntilMs
            self.status = status
            counts = Locked(Counts(requests: grant.requests, tokens: grant.tokens, nano: grant.nano))
        }
    }

    /// A request's share of a lease: its worst case, given back (less what it used) when it settles.
    struct Claim: Sendable {
        let lease: Lease
        let tokens: Int64
        let nano: Int64
    }

    /// How long a lease admits.
    static let leaseMs: Int64 = 2000
    /// The largest lease, in multiples of the request's worst case.
    static let maxFactor: Int64 = 4096
    /// A lease this close to its end, or with less than half left, is renewed ahead by one of the
    /// requests it admits, so nobody waits for the next one.
    static let renewAheadMs: Int64 = 500

    private struct State {
        var leases: [String: Lease] = [:]
        var factors: [String: Int64] = [:]
        /// Tenants whose next lease a thread is taking now; the others wait on the group.
        var fetching: [String: DispatchGroup] = [:]
        /// The worker is draining: a lease that arrives now is retired at once.
        var closed = false
    }

    /// What a request does next.
    enum Step {
        /// Admitted from the lease.
        case admitted(Claim, LimitStatus)
        /// Admitted from the lease, and this thread takes the next one (`install(…, admitting: false)`,
        /// then `endFetch`).
        case admittedRenewing(Claim, LimitStatus, factor: Int64)
        /// Another thread is taking the tenant's next lease: wait for it, then try again.
        case wait(DispatchGroup)
        /// Take the next lease (of this factor), then `install` it and `endFetch`.
        case fetch(factor: Int64)
    }

    private let leases = Locked(State())
    private let settlements: any SettlementQueueing

    public init(settlements: any SettlementQueueing) { self.settlements = settlements }

    /// Admits a request from the tenant's lease if it has one that fits (retiring one that cannot admit),
    /// else says whether to wait for another thread's lease or to take the next one.
    func begin(tenant: String, limits: Limits, need: Reservation, nowMs: Int64) -> Step {
        leases.withLock { state in
            if let lease = state.leases[tenant] {
                let expired = nowMs >= lease.admitUntilMs || lease.limits != limits
                let factor = state.factors[tenant] ?? LeaseGrant.defaultFactor
                if !expired, let claim = take(need, from: lease) {
                    let low =
                        lease.tokens < lease.grantedTokens / 2
                        || (lease.grantedRequests != Int.max && lease.requests < lease.grantedRequests / 2)
                    guard !lease.renewing, state.fetching[tenant] == nil,
                        low || nowMs >= lease.admitUntilMs - LeaseBook.renewAheadMs
                    else { return .admitted(claim, status(of: lease)) }
                    if low && nowMs < lease.admitUntilMs - LeaseBook.renewAheadMs {
                        state.factors[tenant] = min(factor * 2, LeaseBook.maxFactor)  // going fast: ask for more
                    }
                    lease.renewing = true
                    let group = DispatchGroup()
                    group.enter()
                    state.fetching[tenant] = group
                    return .admittedRenewing(
                        claim, status(of: lease), factor: state.factors[tenant] ?? LeaseGrant.defaultFactor)
                }
                if !expired {
                    state.factors[tenant] = min(factor * 2, LeaseBook.maxFactor)  // used up: ask for more
                } else if lease.takenTokens < lease.grantedTokens / 4 {
                    state.factors[tenant] = max(factor / 2, LeaseGrant.defaultFactor)  // mostly unused
                }
                state.leases[tenant] = nil
                retire(lease)
            }
            if let group = state.fetching[tenant] { return .wait(group) }
            let group = DispatchGroup()
            group.enter()
            state.fetching[tenant] = group
            return .fetch(factor: state.factors[tenant] ?? LeaseGrant.defaultFactor)
        }
    }

    /// Whether the worker holds a live lease for the tenant with an admission left: the tenant is not at a
    /// limit (the store granted the lease only with room for several requests), no need to ask the store.
    func hasRoom(tenant: String, limits: Limits, nowMs: Int64) -> Bool {
        leases.withLock { state in
            guard let lease = state.leases[tenant] else { return false }
            return !lease.retired && nowMs < lease.admitUntilMs && lease.limits == limits && lease.requests > 0
                && lease.tokens > 0
        }
    }

    /// Ends a `fetch` (whatever it got): the threads waiting for it try again.
    func endFetch(tenant: String) {
        let group = leases.withLock { $0.fetching.removeValue(forKey: tenant) }
        group?.leave()
    }

    /// Installs a lease the store just granted and admits the request that asked for it (unless it was
    /// admitted already and only renews).
    func install(
        tenant: String, limits: Limits, admission: Admission, need: Reservation, admitting: Bool = true
    ) -> (Claim, LimitStatus)? {
        guard let grant = admission.lease else { return nil }
        let lease = Lease(id: admission.id, limits: limits, grant: grant, status: admission.status)
        return leases.withLock { state in
            if state.closed {
                retire(lease)  // a renewal that landed after the drain: give it back
                return nil
            }
            if let older = state.leases[tenant] { retire(older) }
            state.leases[tenant] = lease
            guard admitting else { return nil }
            // The grant holds at least this request's worst case.
            guard let claim = take(need, from: lease) else {
                state.leases[tenant] = nil
                retire(lease)
                return nil
            }
            return (claim, status(of: lease))
        }
    }

    /// Queues the settlement of a request admitted from a lease; its unused worst case returns to the lease.
    /// Returns the settlement's sequence number in the queue.
    @discardableResult
    func settle(_ claim: Claim, record: ExecutionRecord) -> Int64 {
        let lease = claim.lease
        let consumed = record.consumesCapacity
        let used = consumed ? Int64(record.usage.promptTokens + record.usage.completionTokens) : 0
        let usedNano = consumed ? record.costNano : 0
        return leases.withLock { _ -> Int64 in
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
            let seq = settlements.enqueue(.leased(lease: lease.id, record: record))
            if lease.retired && lease.inFlight == 0 {
                settlements.enqueue(
                    .retire(
                        lease: lease.id, tokens: 0, nano: 0, requests: lease.consumedRequests,
                        windowTokens: lease.usedTokens, final: true))
            }
            return seq
        }
    }

    /// Retires every lease that stopped admitting (called about once a second), or all of them for good
    /// (drain: a renewal still on its way is given back when it lands).
    public func retireExpired(nowMs: Int64, all: Bool = false) {
        leases.withLock { state in
            if all { state.closed = true }
            for (tenant, lease) in state.leases where all || nowMs >= lease.admitUntilMs {
                state.leases[tenant] = nil
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
        lease.takenTokens += tokens
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
        if let remaining = status.requestsRemaining, lease.requests != Int.max {
            status.requestsRemaining = remaining + lease.requests
        }
        if let remaining = status.tokensRemaining { status.tokensRemaining = remaining + Int(lease.tokens) }
        return status
    }
}
