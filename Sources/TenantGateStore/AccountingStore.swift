import TenantGateCore
import TenantGateSystem

/// Shared, exact accounting in SQLite: every check-and-reserve is one `BEGIN IMMEDIATE` transaction,
/// so limits and budgets hold across all workers and processes.
/// One item of a settlement batch.
public enum Settlement: Sendable {
    /// A request: its own reservation (if any) is released and its usage charged.
    case request(reservation: Int64?, record: ExecutionRecord)
    /// A request admitted under a lease: its usage is charged and taken out of the lease's hold.
    case leased(lease: Int64, record: ExecutionRecord)
    /// A lease stops admitting: release `tokens`/`nano` of its hold (all of it when `final`), and set its
    /// window entries to `requests` admissions and `windowTokens` tokens.
    case retire(lease: Int64, tokens: Int64, nano: Int64, requests: Int64, windowTokens: Int64, final: Bool)
    /// A reservation that admitted nothing (a lease renewal that got an exact reservation): given back whole.
    case cancel(reservation: Int64)
}

/// A budget threshold (50, 80 or 100 % of a budget) that settled use reached: announced once per period.
public struct BudgetNotice: Sendable, Equatable {
    public let tenant: String
    /// `daily_usd`, `monthly_tokens`, … (`global_daily_usd` for the gateway's global budget).
    public let budget: String
    public let percent: Int
    /// The request whose settlement reached it (or was settled with it).
    public let requestID: String
}

/// One reservation request, for `AccountingStore.reserve(_:)`.
public struct ReserveJob: Sendable {
    public let tenant: String
    public let limits: Limits
    public let need: Reservation
    public let nowMs: Int64
    public let expiresMs: Int64
    /// Ask for a lease admitting for this long (0: this request only)…
    public let leaseMs: Int64
    /// …of up to this many times the request's worst case.
    public let leaseFactor: Int64

    /// Creates a job.
    public init(
        tenant: String, limits: Limits, need: Reservation, nowMs: Int64, expiresMs: Int64, leaseMs: Int64 = 0,
        leaseFactor: Int64 = AccountingStore.leaseFactor
    ) {
        self.tenant = tenant
        self.limits = limits
        self.need = need
        self.nowMs = nowMs
        self.expiresMs = expiresMs
        self.leaseMs = leaseMs
        self.leaseFactor = max(1, leaseFactor)
    }
}

/// What a reservation job got: its row, the status for the response headers, and the lease if one was
/// granted (the row then holds the lease).
public struct Admission: Sendable {
    public let id: Int64
    public let status: LimitStatus
    public let lease: AccountingStore.LeaseGrant?
}

public struct AccountingStore {
    let db: any SQLConnection
    static let window: Int64 = 60_000
    /// What the settlement being written gathers for its end (audit events, counters, rollups).
    private let audit = SettleScratch()
    /// The worker's lease rows as its committed settlements left them (nil: read them every batch).
    private let leaseRows: LeaseRowCache?

    /// Wraps a connection; `leaseRows` (the worker's writer's) spares settlements re-reading lease rows.
    public init(_ db: any SQLConnection, leaseRows: LeaseRowCache? = nil) {
        self.db = db
        self.leaseRows = leaseRows
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
    private func windowTotal(_ tenant: String, _ kind: String, since: Int64) throws -> (total: Int64, oldest: Int64?) {
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

    private func addToTotal(_ tenant: String, _ kind: String, _ delta: Int64) throws {
        try db.statement(
            """
            INSERT INTO rate_totals(tenant, kind, total) VALUES (?1, ?2, MAX(0, ?3))
            ON CONFLICT(tenant, kind) DO UPDATE SET total = MAX(0, CAST(rate_totals.total + ?3 AS INTEGER))
            """
        ).run([.text(tenant), .text(kind), .int(delta)])
    }

    /// Removes one rate-window entry (if still there) and its share of the total.
    private func dropRateEntry(_ id: Int64) throws {
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
    private func bump(
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

    private static let budgetUpsert = MultiRowInsert(
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

    /// A lease of capacity a worker takes for a tenant and spends in memory (see `Lease` in HTTP).
    public struct LeaseGrant: Sendable, Equatable {
        /// Admissions it holds in the requests-per-minute window (`Int.max` when there is no such limit).
        public let requests: Int
        public let tokens: Int64
        public let nano: Int64
        /// The lease admits until then; its window entries are dated then (they cover every admission).
        public let admitUntilMs: Int64
        /// The day its hold is counted in.
        public let day: String
    }

    /// A lease is taken only while every limited dimension has room for `leaseThreshold` × the request's
    /// worst case; it then holds the job's `leaseFactor` × that (`leaseFactor` by default; the worker
    /// raises it for tenants that use up their leases), but never more than 1/`leaseThreshold` of the room.
    /// Nearer a limit, admission is exact (one reservation per request).
    public static let leaseFactor: Int64 = 16
    public static let leaseThreshold: Int64 = 8

    private func reserveOne(
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
    private func release(id: Int64, consumed: Bool, actualTokens: Int64) throws -> (String, Int64, Int64)? {
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
    private func cancel(reservation id: Int64) throws {
        try writeLeases()
        audit.leaseUpdates[id] = .some(nil)
        let tenant = try db.statement("SELECT tenant FROM reservations WHERE id = ?").all([.int(id)]).first?.first?.text
        if let tenant, let held = try release(id: id, consumed: false, actualTokens: 0) { try unreserve(tenant, held) }
    }

    /// Returns a released reservation's amounts to the tenant's and the global day rows.
    private func unreserve(_ tenant: String, _ held: (String, Int64, Int64)) throws {
        for s in [AccountingStore.tenantScope(tenant), AccountingStore.globalScope] {
            try bump(s, "d:\(held.0)", usedTokens: 0, usedNano: 0, reservedTokens: -held.1, reservedNano: -held.2)
        }
    }

    /// Settles a request in one transaction: releases its reservation, charges the actual usage to the
    /// current day and month (tenant and global), writes the execution row and the daily rollup.
    public func settle(reservation: Int64?, record: ExecutionRecord) throws {
        try settle([(reservation, record)])
    }

    /// Settles many requests in one transaction (group commit): the same effect as settling each.
    public func settle(_ batch: [(reservation: Int64?, record: ExecutionRecord)]) throws {
        try settle(batch.map { Settlement.request(reservation: $0.reservation, record: $0.record) })
    }

    /// Settlements, lease settlements and lease retirements in one transaction, in order.
    ///
    /// `batchID` (unique per batch, the same on every retry of it) makes a retry idempotent: the batch
    /// records its id in its transaction, so a retry of a batch whose COMMIT was carried out although its
    /// connection broke finds the id and applies nothing again (the call then succeeds: the batch is in).
    /// Returns the budget thresholds the batch's settled use reached (each announced once).
    @discardableResult
    public func settle(_ items: [Settlement], batchID: String? = nil) throws -> [BudgetNotice] {
        audit.reset()
        defer { audit.reset() }
        // A batch that fails forgets the cache: a broken connection may have failed a COMMIT that the
        // server carried out, and then only the rows know what the leases hold.
        do { try settleBatch(items, batchID: batchID) } catch {
            leaseRows?.clear()
            if let batchID, (try? AccountingStore.batchSettled(db, batchID)) == true { return [] }
            throw error
        }
        // Committed: the lease rows are what this batch left.
        leaseRows?.apply(audit.leaseUpdates)
        return audit.notices
    }

    /// Whether the batch `id` was committed (its row is in `settled_batches`).
    static func batchSettled(_ db: any SQLConnection, _ id: String) throws -> Bool {
        try !db.statement("SELECT 1 FROM settled_batches WHERE id = ?").all([.text(id)]).isEmpty
    }

    /// How long a settled batch's id is kept: far longer than a batch is retried.
    static let batchIDRetentionMs: Int64 = 600_000

    private func settleBatch(_ items: [Settlement], batchID: String?) throws {
        try db.transaction {
            // First, so that a second commit of the same batch fails at once (primary key).
            if let batchID {
                try db.statement("INSERT INTO settled_batches(id, at_ms) VALUES (?, ?)").queue([
                    .text(batchID), .int(Posix.wallMicros() / 1000),
                ])
            }
            audit.batching = true
            try prefetchLeases(items)
            for item in items {
                switch item {
                case .request(let reservation, let record): try settleOne(reservation: reservation, record: record)
                case .leased(let lease, let record): try settleLeased(lease: lease, record: record)
                case .retire(let lease, let tokens, let nano, let requests, let windowTokens, let final):
                    try retire(
                        lease: lease, releaseTokens: tokens, releaseNano: nano, windowRequests: requests,
                        windowTokens: windowTokens, final: final)
                case .cancel(let reservation): try cancel(reservation: reservation)
                }
            }
            // One read and one write of each chain's head for the whole batch; each counter and rollup row
            // written once, in multi-row upserts.
            AuditChain.appendBestEffort(db, audit.events)
            try writeLeases()
            try ExecutionLog(db).append(audit.executions)
            try AccountingStore.budgetUpsert.write(
                db,
                audit.budget.sorted { $0.key < $1.key }.map { row, v in
                    [.text(row.scope), .text(row.period)] + v.map { .int($0) }
                })
            try ExecutionLog(db).write(audit.rollups)
            try MetricCounters(db).write(audit.metrics)
            // Budget thresholds that this batch's settled use reached, once per tenant of the batch (after
            // the counters are written: they read them), each into the tenant's audit chain.
            var last: [String: ExecutionRecord] = [:]
            var exhausted: [String: Set<String>] = [:]
            for record in audit.executions where record.budgetLimits != nil {
                last[record.tenant] = record
                // A budget that refused a request it could not fit: less than the smallest request is left.
                if let budget = record.refusedLimit, record.budgetLimits?.fitsShortRequests == true {
                    exhausted[record.tenant, default: []].insert(budget)
                }
            }
            var events: [AuditChain.Pending] = []
            for (tenant, record) in last.sorted(by: { $0.key < $1.key }) {
                guard let limits = record.budgetLimits else { continue }
                for (budget, percent) in try announceThresholds(
                    tenant: tenant, limits: limits, nowMs: record.atMs, exhausted: exhausted[tenant] ?? [])
                {
                    audit.notices.append(
                        BudgetNotice(tenant: tenant, budget: budget, percent: percent, requestID: record.requestID))
                    events.append(
                        AuditChain.Pending(
                            tenant: tenant, kind: "budget_threshold", actor: "accounting",
                            body: .object([("budget", .string(budget)), ("percent", .int(percent))]),
                            atMs: record.atMs))
                }
            }
            if !events.isEmpty { AuditChain.appendBestEffort(db, events) }
        }
    }

    /// A request answered, or that used tokens, counts against the per-minute limits and is charged.
    public static func consumed(_ record: ExecutionRecord) -> Bool {
        record.usage.promptTokens + record.usage.completionTokens > 0 || (200..<300).contains(record.status)
    }

    private func settleOne(reservation: Int64?, record: ExecutionRecord) throws {
        let consumed = AccountingStore.consumed(record)
        let tokens = Int64(record.usage.promptTokens + record.usage.completionTokens)
        let held = try reservation.flatMap { try release(id: $0, consumed: consumed, actualTokens: tokens) }
        try charge(record, usedTokens: consumed ? tokens : 0, usedNano: consumed ? record.costNano : 0, held: held)
    }

    /// A lease's row (day, tokens, nano held) as this batch has left it: read once per batch (most
    /// batches' leases all at once, with the batch's first statement: `prefetchLeases`), then kept up to
    /// date in memory and written once (`writeLeases`).
    private func leaseRow(_ id: Int64) throws -> LeaseRowCache.Row? {
        if let row = audit.leases[id] { return row }
        guard
            let row = try db.statement("SELECT day, tokens, nano, expires_ms FROM reservations WHERE id = ?")
                .all([.int(id)]).first, let day = row[0].text
        else { return nil }
        audit.leases[id] = LeaseRowCache.Row(
            day: day, tokens: row[1].int ?? 0, nano: row[2].int ?? 0, expiresMs: row[3].int ?? 0)
        return audit.leases[id]
    }

    /// Writes what this batch took out of its leases' holds (once per lease, not once per request), and
    /// forgets them: called before anything reads or changes a lease row (`retire`, `cancel`) and at the
    /// batch's end. What it wrote is what the worker's cache of lease rows holds once the batch commits.
    private func writeLeases() throws {
        for id in audit.changedLeases.sorted() {
            guard let row = audit.leases[id] else { continue }
            try db.statement("UPDATE reservations SET tokens = ?, nano = ? WHERE id = ?")
                .queue([.int(row.tokens), .int(row.nano), .int(id)])
        }
        for (id, row) in audit.leases { audit.leaseUpdates[id] = row }
        audit.changedLeases.removeAll()
        audit.leases.removeAll()
    }

    /// Reads the rows of the leases that `items` settle under, up to 16 in one statement, except those the
    /// worker's cache holds (then a batch of leased settlements reads nothing: on PostgreSQL its statements
    /// all go in one round trip).
    private func prefetchLeases(_ items: [Settlement]) throws {
        let nowMs = leaseRows?.clock() ?? 0
        var ids: [Int64] = []
        for case .leased(let lease, _) in items where audit.leases[lease] == nil && !ids.contains(lease) {
            if let row = leaseRows?.row(lease, nowMs: nowMs) {
                audit.leases[lease] = row
            } else if ids.count < 16 {
                ids.append(lease)
            }
        }
        guard !ids.isEmpty else { return }
        let marks = Array(repeating: "?", count: ids.count).joined(separator: ", ")
        for row in try db.statement(
            "SELECT id, day, tokens, nano, expires_ms FROM reservations WHERE id IN (\(marks))"
        ).all(ids.map { .int($0) }) {
            guard let id = row[0].int, let day = row[1].text else { continue }
            audit.leases[id] = LeaseRowCache.Row(
                day: day, tokens: row[2].int ?? 0, nano: row[3].int ?? 0, expiresMs: row[4].int ?? 0)
        }
    }

    /// A request admitted under a lease: what it used comes out of the lease's hold (the rest of its worst
    /// case goes back to the lease in the worker's memory); the window entries are the lease's.
    private func settleLeased(lease: Int64, record: ExecutionRecord) throws {
        let consumed = AccountingStore.consumed(record)
        let usedTokens = consumed ? Int64(record.usage.promptTokens + record.usage.completionTokens) : 0
        let usedNano = consumed ? record.costNano : 0
        var held: (String, Int64, Int64)?
        if usedTokens > 0 || usedNano > 0, let row = try leaseRow(lease) {
            let tokens = min(usedTokens, row.tokens)
            let nano = min(usedNano, row.nano)
            audit.leases[lease] = LeaseRowCache.Row(
                day: row.day, tokens: row.tokens - tokens, nano: row.nano - nano, expiresMs: row.expiresMs)
            audit.changedLeases.insert(lease)
            held = (row.day, tokens, nano)
        }
        try charge(record, usedTokens: usedTokens, usedNano: usedNano, held: held)
    }

    /// A lease stops admitting (`final`: and nothing it admitted is in flight any more): what it holds
    /// unused goes back, and its window entries become what it admitted (`requests`) and used (`tokens`,
    /// plus the worst case of what is still in flight).
    private func retire(
        lease id: Int64, releaseTokens: Int64, releaseNano: Int64, windowRequests: Int64, windowTokens: Int64,
        final: Bool
    ) throws {
        try writeLeases()
        audit.leaseUpdates[id] = .some(nil)  // read again when next needed
        guard
            let row = try db.statement(
                "SELECT tenant, day, tokens, nano, rpm_row, tpm_row FROM reservations WHERE id = ?"
            ).all([.int(id)]).first, let tenant = row[0].text, let day = row[1].text
        else { return }
        let heldTokens = row[2].int ?? 0
        let heldNano = row[3].int ?? 0
        let tokens = final ? heldTokens : min(max(0, releaseTokens), heldTokens)
        let nano = final ? heldNano : min(max(0, releaseNano), heldNano)
        if tokens > 0 || nano > 0 { try unreserve(tenant, (day, tokens, nano)) }
        if final {
            try db.statement("DELETE FROM reservations WHERE id = ?").queue([.int(id)])
        } else {
            try db.statement("UPDATE reservations SET tokens = tokens - ?, nano = nano - ? WHERE id = ?")
                .queue([.int(tokens), .int(nano), .int(id)])
        }
        for (entry, kind, amount) in [(row[4].int, "r", windowRequests), (row[5].int, "t", windowTokens)] {
            guard let entry,
                let old = try db.statement("SELECT amount FROM rate_log WHERE id = ?").all([.int(entry)]).first?.first?
                    .int
            else { continue }
            if amount <= 0 {
                try dropRateEntry(entry)
            } else if amount != old {
                try db.statement("UPDATE rate_log SET amount = ? WHERE id = ?").run([.int(amount), .int(entry)])
                try addToTotal(tenant, kind, amount - old)
            }
        }
    }

    /// Charges a settled request's usage to the current day (tenant and global), takes `held` (its own or
    /// its lease's hold: day, tokens, nano) out of the reserved amounts, and writes the execution row,
    /// rollups and metric counters.
    private func charge(_ record: ExecutionRecord, usedTokens: Int64, usedNano: Int64, held: (String, Int64, Int64)?)
        throws
    {
        do {
            let periods = Periods(epochMs: record.atMs)
            if let held, held.0 != periods.day { try unreserve(record.tenant, held) }
            let (heldTokens, heldNano) = held.map { $0.0 == periods.day ? ($0.1, $0.2) : (0, 0) } ?? (0, 0)
            if usedTokens != 0 || usedNano != 0 || heldTokens != 0 || heldNano != 0 {
                for s in [AccountingStore.tenantScope(record.tenant), AccountingStore.globalScope] {
                    try bump(
                        s, "d:\(periods.day)", usedTokens: usedTokens, usedNano: usedNano, reservedTokens: -heldTokens,
                        reservedNano: -heldNano)
                }
            }
            if record.chargesRequest {
                try db.statement("INSERT INTO rate_log(tenant, kind, at_ms, amount) VALUES (?, 'r', ?, 1)").run([
                    .text(record.tenant), .int(record.atMs),
                ])
                try addToTotal(record.tenant, "r", 1)
            }
            audit.executions.append(record)
            audit.rollups.add(record, day: periods.day)
            if let key = record.cacheHitKey {
                try CacheStore(db).touch(tenant: record.tenant, key: key, nowMs: record.atMs)
            }
            try auditRequestEvents(record)
            if let write = record.cacheWrite {
                try CacheStore(db).store(tenant: record.tenant, write, nowMs: record.atMs)
            }
            MetricCounters.count(record, into: &audit.metrics)
        }
    }

    /// Policy triggers and limit refusals go into the tenant's audit chain with the settlement. An audit
    /// key that cannot be opened (a master key gone) must not stop accounting: the event is then missing,
    /// which `audit verify` cannot see, but the chain stays whole.
    private func auditRequestEvents(_ record: ExecutionRecord) throws {
        guard !record.policyTriggers.isEmpty || record.refusedLimit != nil || record.auditCapture else { return }
        let actor = record.keyID.map { "key:\($0)" } ?? "request"
        func add(_ kind: String, _ body: [(String, JSONValue)]) {
            audit.events.append(
                AuditChain.Pending(
                    tenant: record.tenant, kind: kind, actor: actor, body: .object(body), atMs: record.atMs))
        }
        if !record.policyTriggers.isEmpty {
            add(
                "policy_trigger", [("request_id", .string(record.requestID)), ("triggers", record.policyTriggers.json)])
        }
        if record.auditCapture {
            // `audit.capture_requests`: the execution row's fields, never prompt or answer text.
            var body: [(String, JSONValue)] = [
                ("request_id", .string(record.requestID)), ("status", .int(record.status)),
                ("model", record.model.map { .string($0) } ?? .null),
                ("tokens_in", .int(record.usage.promptTokens)), ("tokens_out", .int(record.usage.completionTokens)),
                ("cost_nano", .int(Int(record.costNano))), ("latency_ms", .int(record.latencyMs)),
            ]
            if let code = record.errorCode { body.append(("error", .string(code))) }
            if let cache = record.cache { body.append(("cache", .string(cache))) }
            add("request", body)
        }
        if let limit = record.refusedLimit {
            add(
                "limit_refused",
                [("request_id", .string(record.requestID)), ("limit", .string(limit)), ("status", .int(record.status))])
        }
    }

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
    private func perTenant(_ amount: String, nowMs: Int64) throws -> [String: (day: Int64, month: Int64)] {
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

/// A worker's lease rows (what each still holds, the day it holds it on, its expiry) as the worker's own
/// committed settlements left them, so that a batch of leased settlements needs to read nothing.
///
/// Exact because only the worker that holds a lease changes its row (its settlements, its retirement),
/// all through its one write connection, and the cache changes only after a commit (a rolled-back batch
/// leaves both the row and the cache as they were). The one other writer of a lease row is the sweep of
/// expired reservations, run by every worker of every host: so an entry is used only until `marginMs`
/// before its lease expires (then the row is read again; hosts' clocks must agree within that margin),
/// and expired entries are dropped.
public final class LeaseRowCache: @unchecked Sendable {  // used only under the writer connection's lock
    public struct Row: Sendable, Equatable {
        let day: String
        let tokens: Int64
        let nano: Int64
        let expiresMs: Int64
    }
    private var rows: [Int64: Row] = [:]
    /// How long before its lease expires an entry stops being used.
    static let marginMs: Int64 = 30_000
    /// Entries kept before expired ones are dropped (then twice as many as are left, at least 256).
    private var sweepAt = 256
    /// Wall-clock milliseconds (the sweep's clock).
    let clock: @Sendable () -> Int64

    public init(clock: @escaping @Sendable () -> Int64 = { Posix.wallMicros() / 1000 }) { self.clock = clock }

    /// The cached row of `lease`, unless it is near its expiry (or unknown).
    func row(_ lease: Int64, nowMs: Int64) -> Row? {
        guard let row = rows[lease], nowMs < row.expiresMs - LeaseRowCache.marginMs else { return nil }
        return row
    }

    /// A committed batch's changes (nil: the row is gone or must be read again).
    func apply(_ updates: [Int64: Row?]) {
        for (id, row) in updates { rows[id] = row }
        if rows.count > sweepAt {
            let nowMs = clock()
            rows = rows.filter { nowMs < $0.value.expiresMs }
            sweepAt = max(256, 2 * rows.count)
        }
    }

    /// Forgets every row (they are read again when next needed).
    func clear() { rows.removeAll() }

    /// Leases cached now.
    public var count: Int { rows.count }
}
