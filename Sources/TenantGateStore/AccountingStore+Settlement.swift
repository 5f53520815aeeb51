import TenantGateCore
import TenantGateSystem

extension AccountingStore {
    func settleBatch(_ items: [Settlement], batchID: String?) throws {
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
            AuditChain.appendBestEffort(db, keys: auditKeys ?? AuditKeys(), audit.events)
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
                if let budget = record.refusedLimit, record.budgetExhausted {
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
            if !events.isEmpty { AuditChain.appendBestEffort(db, keys: auditKeys ?? AuditKeys(), events) }
        }
    }

    func settleOne(reservation: Int64?, record: ExecutionRecord) throws {
        let consumed = AccountingStore.consumed(record)
        let tokens = Int64(record.usage.promptTokens + record.usage.completionTokens)
        let held = try reservation.flatMap { try release(id: $0, consumed: consumed, actualTokens: tokens) }
        try charge(record, usedTokens: consumed ? tokens : 0, usedNano: consumed ? record.costNano : 0, held: held)
    }

    /// A lease's row (day, tokens, nano held) as this batch has left it: read once per batch (most
    /// batches' leases all at once, with the batch's first statement: `prefetchLeases`), then kept up to
    /// date in memory and written once (`writeLeases`).
    func leaseRow(_ id: Int64) throws -> LeaseRowCache.Row? {
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
    func writeLeases() throws {
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
    func prefetchLeases(_ items: [Settlement]) throws {
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
    func settleLeased(lease: Int64, record: ExecutionRecord) throws {
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
    func retire(
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
    func charge(_ record: ExecutionRecord, usedTokens: Int64, usedNano: Int64, held: (String, Int64, Int64)?)
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
    func auditRequestEvents(_ record: ExecutionRecord) throws {
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

    /// Whether the batch `id` was committed (its row is in `settled_batches`).
    static func batchSettled(_ db: any SQLConnection, _ id: String) throws -> Bool {
        try !db.statement("SELECT 1 FROM settled_batches WHERE id = ?").all([.text(id)]).isEmpty
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

    /// A request answered, or that used tokens, counts against the per-minute limits and is charged.
    public static func consumed(_ record: ExecutionRecord) -> Bool { record.consumesCapacity }
}
