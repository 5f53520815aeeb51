import Testing

@testable import TenantGateCore
@testable import TenantGateStore
@testable import TenantGateSystem

func limits(_ tenant: String, global: String? = nil) throws -> Limits {
    Limits(tenant: try JSONParser.parse(tenant), global: try global.map { try JSONParser.parse($0) })
}

let one = Reservation(promptTokens: 5, completionTokens: 5, costNano: 1000)
let day0: Int64 = 1_795_305_600_000  // 2026-11-22T00:00:00Z

func record(_ tenant: String, at: Int64, tokens: Int = 10, cost: Int64 = 1000, status: Int = 200) -> ExecutionRecord {
    var r = ExecutionRecord(requestID: "r", atMs: at, tenant: tenant, status: status)
    r.usage = Usage(promptTokens: tokens / 2, completionTokens: tokens - tokens / 2)
    r.costNano = cost
    r.model = "m"
    return r
}

@Suite struct AccountingTests {
    @Test(arguments: TestEngine.available) func slidingWindowAdmitsExactlyTheLimitInAnySixtySeconds(
        _ engine: TestEngine
    ) throws {
        let store = AccountingStore(try testDB(engine))
        let l = try limits(#"{"rate_limit":{"requests_per_minute":3}}"#)
        for t in [0, 10_000, 20_000] as [Int64] {
            _ = try store.reserve(tenant: "a", limits: l, need: one, nowMs: day0 + t, expiresMs: day0 + t + 1000)
        }
        #expect(throws: LimitRefusal.rate(limit: "requests", retryAfter: 30)) {
            try store.reserve(tenant: "a", limits: l, need: one, nowMs: day0 + 30_000, expiresMs: day0 + 31_000)
        }
        // A fixed per-minute bucket would reset at 60 s and admit a burst; the window frees one slot at a time.
        _ = try store.reserve(tenant: "a", limits: l, need: one, nowMs: day0 + 60_001, expiresMs: day0 + 61_000)
        #expect(throws: LimitRefusal.self) {
            try store.reserve(tenant: "a", limits: l, need: one, nowMs: day0 + 60_002, expiresMs: day0 + 61_000)
        }
        // Another tenant has its own window.
        _ = try store.reserve(tenant: "b", limits: l, need: one, nowMs: day0 + 30_000, expiresMs: day0 + 31_000)
    }

    @Test(arguments: TestEngine.available) func clockJumpingBackDoesNotResetTheWindow(_ engine: TestEngine) throws {
        let store = AccountingStore(try testDB(engine))
        let l = try limits(#"{"rate_limit":{"requests_per_minute":1}}"#)
        _ = try store.reserve(tenant: "a", limits: l, need: one, nowMs: day0 + 100_000, expiresMs: day0 + 200_000)
        #expect(throws: LimitRefusal.self) {
            try store.reserve(tenant: "a", limits: l, need: one, nowMs: day0 + 50_000, expiresMs: day0 + 200_000)
        }
    }

    @Test(arguments: TestEngine.available) func tokenWindowCountsReservedThenActualTokens(_ engine: TestEngine) throws {
        let store = AccountingStore(try testDB(engine))
        let l = try limits(#"{"rate_limit":{"tokens_per_minute":25}}"#)
        let (id, status) = try store.reserve(
            tenant: "a", limits: l, need: Reservation(promptTokens: 10, completionTokens: 10, costNano: 0), nowMs: day0,
            expiresMs: day0 + 1000)
        #expect(status.tokensRemaining == 5)
        #expect(throws: LimitRefusal.self) {
            try store.reserve(tenant: "a", limits: l, need: one, nowMs: day0 + 1, expiresMs: day0 + 1000)
        }
        try store.settle(reservation: id, record: record("a", at: day0 + 2, tokens: 4))
        _ = try store.reserve(tenant: "a", limits: l, need: one, nowMs: day0 + 3, expiresMs: day0 + 1000)
    }

    @Test(arguments: TestEngine.available) func dailyBudgetResetsAtUTCMidnight(_ engine: TestEngine) throws {
        let store = AccountingStore(try testDB(engine))
        let l = try limits(#"{"budget":{"daily_tokens":100}}"#)
        try store.settle(reservation: nil, record: record("a", at: day0 + 86_399_000, tokens: 90))
        let big = Reservation(promptTokens: 10, completionTokens: 10, costNano: 0)
        #expect(throws: LimitRefusal.budget(scope: "tenant", budget: "daily_tokens", resetsAt: day0 / 1000 + 86_400)) {
            try store.reserve(tenant: "a", limits: l, need: big, nowMs: day0 + 86_399_500, expiresMs: day0 + 86_400_500)
        }
        _ = try store.reserve(tenant: "a", limits: l, need: big, nowMs: day0 + 86_400_001, expiresMs: day0 + 86_401_000)
    }

    @Test(arguments: TestEngine.available) func softBudgetWarnsAndGlobalBudgetRefusesAsGlobal(_ engine: TestEngine)
        throws
    {
        let store = AccountingStore(try testDB(engine))
        try store.settle(reservation: nil, record: record("other", at: day0, cost: 900))
        let soft = try limits(#"{"budget":{"daily_usd":0.0000005,"enforcement":"soft"}}"#)
        let (_, status) = try store.reserve(tenant: "a", limits: soft, need: one, nowMs: day0, expiresMs: day0 + 1)
        #expect(status.warnings == ["daily_usd"])
        let global = try limits("{}", global: #"{"daily_usd":0.0000015}"#)
        #expect(throws: LimitRefusal.budget(scope: "global", budget: "daily_usd", resetsAt: day0 / 1000 + 86_400)) {
            try store.reserve(tenant: "b", limits: global, need: one, nowMs: day0, expiresMs: day0 + 1)
        }
    }

    @Test(arguments: TestEngine.available) func failureReleasesEverythingAndSweepFreesDeadReservations(
        _ engine: TestEngine
    ) throws {
        let db = try testDB(engine)
        let store = AccountingStore(db)
        let l = try limits(#"{"rate_limit":{"requests_per_minute":1},"budget":{"daily_tokens":10}}"#)
        let (id, _) = try store.reserve(tenant: "a", limits: l, need: one, nowMs: day0, expiresMs: day0 + 1000)
        try store.settle(reservation: id, record: record("a", at: day0 + 1, tokens: 0, cost: 0, status: 502))
        // Nothing consumed: the request slot and the tokens are free again.
        let (dead, _) = try store.reserve(tenant: "a", limits: l, need: one, nowMs: day0 + 2, expiresMs: day0 + 1000)
        _ = dead
        #expect(throws: LimitRefusal.self) {
            try store.reserve(tenant: "a", limits: l, need: one, nowMs: day0 + 3, expiresMs: day0 + 1000)
        }
        #expect(try store.sweep(nowMs: day0 + 2000) == 1)
        let held = try db.query("SELECT SUM(reserved_tokens) FROM budget_counters")
        #expect(held.first?.first?.int == 0)
        _ = try store.reserve(tenant: "a", limits: l, need: one, nowMs: day0 + 2001, expiresMs: day0 + 3000)
    }

    /// Workers are told apart by host and pid: two hosts sharing a store may run the same pid.
    @Test(arguments: TestEngine.available) func workersOfTwoHostsWithTheSamePidAreTwo(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        let a = WorkerRegistry(db, host: "gw-a")
        let b = WorkerRegistry(db, host: "gw-b")
        try a.beat(pid: 42, startedMs: day0, nowMs: day0 + 1000, inFlight: 3)
        try b.beat(pid: 42, startedMs: day0, nowMs: day0 + 1000, inFlight: 4)
        try a.beat(pid: 42, startedMs: day0, nowMs: day0 + 2000, inFlight: 5)
        #expect(try a.alive(sinceMs: day0) == (2, 9))
        try b.remove(pid: 42)
        #expect(try a.alive(sinceMs: day0) == (1, 5))
        // A host's rows unseen for a minute go when any host beats.
        try b.beat(pid: 7, startedMs: day0, nowMs: day0 + 70_000, inFlight: 0)
        #expect(try b.alive(sinceMs: 0) == (1, 0))
    }

    @Test(arguments: TestEngine.available) func rollupsAndPrune(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        let store = AccountingStore(db)
        try store.settle(reservation: nil, record: record("a", at: day0 - 100 * 86_400_000, cost: 5))
        try store.settle(reservation: nil, record: record("a", at: day0, cost: 7))
        try store.settle(reservation: nil, record: record("b", at: day0, cost: 11, status: 502))
        let log = ExecutionLog(db)
        let rows = try log.usage(tenant: nil, sinceDay: "2000-01-01", by: "tenant", top: nil)
        #expect(rows.map(\.key) == ["a", "b"])
        #expect(rows[0].requests == 2 && rows[0].costNano == 12 && rows[1].errors == 1)
        #expect(try log.usage(tenant: nil, sinceDay: "2000-01-01", by: "tenant", top: 1).map(\.key) == ["a"])
        #expect(try log.prune(retentionDays: ["b": 1], defaultDays: 90, nowMs: day0 + 2 * 86_400_000) == 2)
        #expect(try log.usage(tenant: "a", sinceDay: "2000-01-01", by: "day", top: nil).count == 2)
    }

    /// A batch writes each metric counter, rollup row and budget counter once with the batch's sum: the
    /// same rows as settling one by one (tenants, models, an hour and a day boundary, errors, held
    /// reservations released).
    @Test(arguments: TestEngine.available) func aBatchCountsMetricsOncePerCounter(_ engine: TestEngine) throws {
        let batched = try testDB(engine)
        let single = try testDB(engine)
        var other = record("a", at: day0 + 3_600_000, tokens: 7, cost: 70)
        other.model = "n"
        let records = [
            record("a", at: day0, tokens: 10), record("a", at: day0 + 1, tokens: 20), record("b", at: day0),
            record("a", at: day0 + 2, tokens: 0, cost: 0, status: 502), other,
            record("a", at: day0 + 86_400_000 + 5, tokens: 3, cost: 30),
            record("b", at: day0 + 3, tokens: 4, status: 429),
        ]
        let l = try limits(#"{"budget":{"daily_tokens":100000}}"#)
        var items: [[(reservation: Int64?, record: ExecutionRecord)]] = []
        for db in [batched, single] {
            items.append(
                try records.map { r in
                    let id = try AccountingStore(db).reserve(
                        tenant: r.tenant, limits: l, need: one, nowMs: r.atMs, expiresMs: r.atMs + 60_000
                    ).id
                    return (reservation: id, record: r)
                })
        }
        try AccountingStore(batched).settle(items[0])
        for item in items[1] { try AccountingStore(single).settle(reservation: item.reservation, record: item.record) }
        for table in [
            "SELECT name, labels, le, value FROM metric_counters ORDER BY name, labels, le",
            "SELECT * FROM usage_daily ORDER BY day, tenant, model", "SELECT * FROM usage_hourly ORDER BY hour, tenant",
            "SELECT * FROM budget_counters ORDER BY scope, period", "SELECT COUNT(*) FROM executions",
        ] {
            #expect(try batched.query(table) == single.query(table), "\(table)")
        }
        #expect(try batched.query("SELECT COUNT(*) FROM executions") == [[.int(Int64(records.count))]])
        #expect(
            try batched.query(
                "SELECT SUM(reserved_tokens), SUM(used_tokens) FROM budget_counters WHERE scope = 'tenant:a'")
                == [[.int(0), .int(40)]])
        let requests = try batched.query(
            "SELECT value FROM metric_counters WHERE name = 'tenantgate_requests_total' AND labels LIKE ?",
            [.text("tenant=\"a\",model=\"m\",status=\"200\"")])
        #expect(requests == [[.int(3)]])
    }
}

/// Makes every settlement batch that writes an execution row of tenant "boom" fail (at that row).
func failSettlingTenantBoom(_ db: any SQLConnection, _ engine: TestEngine) throws {
    switch engine {
    case .sqlite:
        try db.execute(
            """
            CREATE TRIGGER boom BEFORE INSERT ON executions WHEN NEW.tenant = 'boom'
            BEGIN SELECT RAISE(ABORT, 'boom'); END
            """)
    case .postgres:
        try db.execute(
            """
            CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF NEW.tenant = 'boom' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$;
            CREATE TRIGGER boom BEFORE INSERT ON executions FOR EACH ROW EXECUTE FUNCTION boom()
            """)
    }
}

@Suite struct IdempotentBatchTests {
    /// A batch retried with its id after its commit went through (the COMMIT's answer lost with the
    /// connection) applies nothing again and succeeds; another id applies; old ids are swept.
    @Test(arguments: TestEngine.available) func aBatchIsAppliedOnceUnderItsId(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        let store = AccountingStore(db)
        let batch: [Settlement] = [
            .request(reservation: nil, record: record("a", at: day0, tokens: 10, cost: 100)),
            .request(reservation: nil, record: record("a", at: day0 + 1, tokens: 4, cost: 40)),
        ]
        let tables = [
            "SELECT COUNT(*), SUM(tokens_in + tokens_out), SUM(cost_nano) FROM executions",
            "SELECT used_tokens, used_nano FROM budget_counters WHERE scope = 'tenant:a'",
            "SELECT requests, cost_nano FROM usage_daily",
            "SELECT value FROM metric_counters WHERE name = 'tenantgate_requests_total'",
        ]
        try store.settle(batch, batchID: "batch-1")
        let once = try tables.map { try db.query($0) }
        #expect(once[0] == [[.int(2), .int(14), .int(140)]])
        try store.settle(batch, batchID: "batch-1")
        #expect(try tables.map { try db.query($0) } == once)
        try store.settle(batch, batchID: "batch-2")
        #expect(try db.query(tables[0]) == [[.int(4), .int(28), .int(280)]])
        // A batch that fails under an id never committed still fails, and leaves no id behind (its retry
        // applies it).
        try failSettlingTenantBoom(db, engine)
        let failing = batch + [.request(reservation: nil, record: record("boom", at: day0, tokens: 1))]
        #expect(throws: (any Error).self) { try store.settle(failing, batchID: "batch-3") }
        #expect(try db.query("SELECT COUNT(*) FROM settled_batches WHERE id = 'batch-3'") == [[.int(0)]])
        #expect(try db.query(tables[0]) == [[.int(4), .int(28), .int(280)]])
        let now = day0 + 1000
        try db.query("UPDATE settled_batches SET at_ms = ? WHERE id = 'batch-1'", [.int(now - 700_000)])
        try db.query("UPDATE settled_batches SET at_ms = ? WHERE id = 'batch-2'", [.int(now - 1_000)])
        _ = try store.sweep(nowMs: now)
        #expect(try db.query("SELECT id FROM settled_batches") == [[.text("batch-2")]])
    }
}

@Suite struct MetricCounterRowsTests {
    /// The counters of settled requests, summed per series within a batch: exactly these rows.
    @Test(arguments: TestEngine.available) func settledRequestsWriteTheseCounters(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        var a = record("a", at: day0, tokens: 10, cost: 70)
        a.latencyMs = 40
        a.upstreamMs = 30
        a.usage.cachedTokens = 2
        var b = record("a", at: day0 + 1, tokens: 4, cost: 30)
        b.latencyMs = 3000
        var c = record("b\"x", at: day0 + 2, tokens: 0, cost: 0, status: 502)
        c.model = nil
        c.latencyMs = 1
        try AccountingStore(db).settle([a, b, c].map { (reservation: nil, record: $0) })
        let rows = try db.query("SELECT name, labels, le, value FROM metric_counters").map { row in
            row.map { value -> String in
                switch value {
                case .text(let t): return t
                case .int(let i): return String(i)
                default: return "\(value)"
                }
            }.joined(separator: " | ")
        }.sorted()
        let base = #"tenant="a",model="m""#
        let other = #"tenant="b\"x",model="""#
        func bucket(_ seconds: Double) -> Int { MetricsFormat.bucketIndex(seconds: seconds) }
        let expected = [
            "tenantgate_cost_nano_total | \(base) | -1 | 100",
            "tenantgate_request_duration_seconds_bucket | \(base) | \(bucket(0.04)) | 1",
            "tenantgate_request_duration_seconds_bucket | \(base) | \(bucket(3)) | 1",
            "tenantgate_request_duration_seconds_bucket | \(other) | \(bucket(0.001)) | 1",
            "tenantgate_request_duration_seconds_count | \(base) | -1 | 2",
            "tenantgate_request_duration_seconds_count | \(other) | -1 | 1",
            "tenantgate_request_duration_seconds_sum_ms | \(base) | -1 | 3040",
            "tenantgate_request_duration_seconds_sum_ms | \(other) | -1 | 1",
            "tenantgate_requests_total | \(base),status=\"200\" | -1 | 2",
            "tenantgate_requests_total | \(other),status=\"502\" | -1 | 1",
            "tenantgate_tokens_total | \(base),type=\"cached\" | -1 | 2",
            "tenantgate_tokens_total | \(base),type=\"input\" | -1 | 7",
            "tenantgate_tokens_total | \(base),type=\"output\" | -1 | 7",
            "tenantgate_upstream_duration_seconds_bucket | \(base) | \(bucket(0.03)) | 1",
            "tenantgate_upstream_duration_seconds_count | \(base) | -1 | 1",
            "tenantgate_upstream_duration_seconds_sum_ms | \(base) | -1 | 30",
        ].sorted()
        #expect(rows == expected)
    }
}

@Suite struct MoneyAndPeriodTests {
    @Test func costIsExactInNanoUSD() {
        let model = ModelConfig(
            name: "m", backend: "b", upstreamModel: "m", inputPerMTok: 0.15, outputPerMTok: 0.6,
            cachedInputPerMTok: 0.075, cacheWritePerMTok: 0.1875, maxTokens: nil)
        let cost = Money.cost(Usage(promptTokens: 1000, completionTokens: 500, cachedTokens: 200), model)
        #expect(cost == 800 * 150 + 200 * 75 + 500 * 600)
        #expect(Money.usdString(nano: cost) == "0.000435000")
        let written = Money.cost(
            Usage(promptTokens: 1000, completionTokens: 0, cachedTokens: 200, cacheWriteTokens: 300), model)
        #expect(written == 500 * 150 + 200 * 75 + 300 * 188)
    }

    @Test func reservationBoundsThePrompt() throws {
        let model = ModelConfig(
            name: "m", backend: "b", upstreamModel: "m", inputPerMTok: 1, outputPerMTok: 2, cachedInputPerMTok: 1,
            cacheWritePerMTok: 1, maxTokens: 100)
        let chat = try ChatRequest.parse(
            Array(#"{"messages":[{"role":"system","content":"abc"},{"role":"user","content":"héllo"}]}"#.utf8))
        let r = Reservation(chat: chat, model: model)
        #expect(r.promptTokens == 3 + 6 + 16)
        #expect(r.completionTokens == 100)
        #expect(r.costNano == Int64(r.promptTokens) * 1000 + 100 * 2000)
    }

    @Test func periodsAndResets() {
        let p = Periods(epochMs: 1_798_761_599_000)  // 2026-12-31T23:59:59Z
        #expect(p.day == "2026-12-31" && p.month == "2026-12")
        #expect(p.dayResetsAt == 1_798_761_600 && p.monthResetsAt == 1_798_761_600)
        let leap = Periods(epochMs: 1_709_164_800_000)  // 2024-02-29
        #expect(leap.day == "2024-02-29" && leap.monthResetsAt == 1_709_251_200)
    }
}

@Suite struct LeaseTests {
    func lease(
        _ store: AccountingStore, _ l: Limits, at: Int64, need: Reservation = one, tenant: String = "a",
        expiresIn: Int64 = 1000
    ) throws -> Admission {
        guard
            let result = try store.reserve([
                ReserveJob(
                    tenant: tenant, limits: l, need: need, nowMs: at, expiresMs: at + expiresIn, leaseMs: 1000)
            ]).first
        else { throw LimitRefusal.rate(limit: "requests", retryAfter: 1) }
        return try result.get()
    }

    func windowRequests(_ db: any SQLConnection) throws -> Int64 {
        try db.query("SELECT COALESCE(SUM(amount), 0) FROM rate_log WHERE kind = 'r'").first?.first?.int ?? -1
    }

    @Test(arguments: TestEngine.available) func aLeaseIsGrantedWithRoomAndSizedByIt(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        let store = AccountingStore(db)
        let l = try limits(#"{"rate_limit":{"requests_per_minute":100},"budget":{"daily_tokens":100000}}"#)
        let first = try lease(store, l, at: day0)
        // 16 × the request, but at most an eighth of the room: 100 / 8 = 12 requests.
        #expect(first.lease?.requests == 12)
        #expect(first.lease?.tokens == 16 * Int64(one.tokens))
        #expect(first.lease?.admitUntilMs == day0 + 1000)
        #expect(try windowRequests(db) == 12)
        #expect(first.status.requestsRemaining == 88)
    }

    @Test(arguments: TestEngine.available) func nearALimitAdmissionIsExact(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        let store = AccountingStore(db)
        let l = try limits(#"{"rate_limit":{"requests_per_minute":7}}"#)
        let admission = try lease(store, l, at: day0)
        #expect(admission.lease == nil)  // 7 < 8 × 1: one request, exactly
        #expect(try windowRequests(db) == 1)
        // A hard budget with little room left: exact as well.
        let budget = try limits(#"{"budget":{"daily_tokens":50,"enforcement":"hard"}}"#)
        #expect(try lease(AccountingStore(try testDB(engine)), budget, at: day0).lease == nil)
        // A soft budget never limits the lease.
        let soft = try limits(#"{"budget":{"daily_tokens":50,"enforcement":"soft"}}"#)
        #expect(try lease(AccountingStore(try testDB(engine)), soft, at: day0).lease != nil)
    }

    /// One batch that settles many requests under the same lease (it runs dry on the way), retires part of
    /// it and settles more leaves the same rows as settling item by item: the batch reads the lease once
    /// and keeps its hold in memory.
    @Test(arguments: TestEngine.available) func aLeaseSettledManyTimesInOneBatchMatchesOneByOne(_ engine: TestEngine)
        throws
    {
        let l = try limits(#"{"rate_limit":{"requests_per_minute":1000},"budget":{"daily_tokens":100000}}"#)
        var states: [[[[SQLValue]]]] = []
        for batched in [true, false] {
            let db = try testDB(engine)
            let store = AccountingStore(db)
            let admission = try lease(store, l, at: day0)
            let grant = try #require(admission.lease)
            let big = Int(grant.tokens / 3) + 1
            let dry: [Settlement] = (0..<4).map { i in
                .leased(lease: admission.id, record: record("a", at: day0 + 10 + Int64(i), tokens: big))
            }
            let more: [Settlement] = [
                .retire(
                    lease: admission.id, tokens: 1, nano: 0, requests: 4, windowTokens: Int64(4 * big), final: false),
                .leased(lease: admission.id, record: record("a", at: day0 + 30, tokens: 2)),
            ]
            let last: [Settlement] = [
                .retire(
                    lease: admission.id, tokens: 0, nano: 0, requests: 5, windowTokens: Int64(4 * big + 2), final: true)
            ]
            let queries = [
                "SELECT scope, period, used_tokens, used_nano, reserved_tokens, reserved_nano FROM budget_counters ORDER BY scope, period",
                "SELECT tokens, nano FROM reservations", "SELECT tenant, kind, amount FROM rate_log ORDER BY kind",
                "SELECT tenant, kind, total FROM rate_totals ORDER BY kind",
            ]
            var state: [[[SQLValue]]] = []
            for items in [dry, more, last] {
                if batched { try store.settle(items) } else { for item in items { try store.settle([item]) } }
                state += try queries.map { try db.query($0) }
            }
            states.append(state)
        }
        #expect(states[0] == states[1])
        // The lease ran dry: it holds no tokens (never less); once retired nothing stays reserved.
        #expect(states[0][1].first?[0].int == 0, "\(states[0][1])")
        #expect(states[0][9] == [])
        let used = states[0][8].first { $0[0] == .text("tenant:a") }
        #expect(used?[4] == .int(0), "nothing stays reserved: \(String(describing: used))")
    }

    /// The worker's cache of lease rows (its writer's) changes nothing: batches and single settlements,
    /// with and without it, leave the same rows, also after a batch that fails (and empties the cache).
    @Test(arguments: TestEngine.available) func theLeaseRowCacheLeavesTheSameRows(_ engine: TestEngine) throws {
        let l = try limits(#"{"rate_limit":{"requests_per_minute":1000},"budget":{"daily_tokens":100000}}"#)
        var states: [[[[SQLValue]]]] = []
        for (batched, cached) in [(true, false), (false, false), (true, true), (false, true)] {
            let db = try testDB(engine)
            // Fails any batch that settles a request of tenant "boom", after the lease rows were written.
            try failSettlingTenantBoom(db, engine)
            let cache = cached ? LeaseRowCache(clock: { day0 }) : nil
            let store = AccountingStore(db, leaseRows: cache)
            let a = try lease(store, l, at: day0, expiresIn: 120_000)
            let b = try lease(store, l, at: day0, tenant: "b", expiresIn: 120_000)
            let grant = try #require(a.lease)
            let big = Int(grant.tokens / 3) + 1
            func leased(_ id: Int64, _ tenant: String, _ i: Int64, _ tokens: Int) -> Settlement {
                .leased(lease: id, record: record(tenant, at: day0 + 10 + i, tokens: tokens))
            }
            let rounds: [[Settlement]] = [
                [leased(a.id, "a", 0, 3), leased(b.id, "b", 1, 5), leased(a.id, "a", 2, big)],
                [leased(a.id, "a", 3, big), leased(b.id, "b", 4, 7)],
                [leased(a.id, "a", 5, big), leased(a.id, "a", 6, 2)],  // runs dry
                [  // the retirement last: the next batch must not take b's row from before it
                    leased(b.id, "b", 7, 1),
                    .retire(lease: b.id, tokens: 1, nano: 0, requests: 3, windowTokens: 13, final: false),
                ],
                [leased(b.id, "b", 8, 4)],
                [.retire(lease: a.id, tokens: 0, nano: 0, requests: 5, windowTokens: 20, final: true)],
            ]
            let queries = [
                "SELECT scope, period, used_tokens, used_nano, reserved_tokens, reserved_nano FROM budget_counters ORDER BY scope, period",
                "SELECT id, tokens, nano FROM reservations ORDER BY id",
                "SELECT tenant, kind, amount FROM rate_log ORDER BY tenant, kind",
            ]
            var state: [[[SQLValue]]] = []
            for (n, items) in rounds.enumerated() {
                if batched { try store.settle(items) } else { for item in items { try store.settle([item]) } }
                if cached && n == 0 { #expect(cache?.count == 2) }
                if n == 0 || n == rounds.count - 1 {
                    // A batch that fails after taking from both leases: nothing of it stays in the rows, and
                    // it forgets the cache (a COMMIT may fail after the server carried it out).
                    #expect(throws: (any Error).self) {
                        try store.settle([
                            leased(a.id, "a", 20, 1), leased(b.id, "b", 21, 1), leased(b.id, "boom", 22, 1),
                        ])
                    }
                    if let cache { #expect(cache.count == 0) }
                }
                state += try queries.map { try db.query($0) }
            }
            // Read again after a failure, and a retired lease is not cached again.
            if let cache {
                try store.settle([leased(b.id, "b", 30, 1)])
                #expect(cache.count == 1)
            }
            states.append(state)
        }
        #expect(states[0] == states[1])
        #expect(states[0] == states[2])
        #expect(states[0] == states[3])
    }

    /// A cached lease row is not used near its lease's expiry: another worker's sweep may have released the
    /// lease meanwhile, and its hold must not be released twice.
    @Test(arguments: TestEngine.available) func aSweptLeaseIsNotReleasedTwiceFromTheCache(_ engine: TestEngine)
        throws
    {
        let db = try testDB(engine)
        let now = Locked(day0)
        let store = AccountingStore(db, leaseRows: LeaseRowCache(clock: { now.withLock { $0 } }))
        let l = try limits(#"{"budget":{"daily_tokens":100000}}"#)
        let admission = try lease(store, l, at: day0, expiresIn: 60_000)
        let grant = try #require(admission.lease)
        // Another request of the tenant holds an exact reservation all along.
        let other = try store.reserve(
            tenant: "a", limits: l, need: one, nowMs: day0, expiresMs: day0 + 3_600_000)
        try store.settle([.leased(lease: admission.id, record: record("a", at: day0 + 10, tokens: 4))])
        func reserved() throws -> Int64? {
            try db.query("SELECT reserved_tokens FROM budget_counters WHERE scope = 'tenant:a'").first?.first?.int
        }
        #expect(try reserved() == grant.tokens - 4 + Int64(one.tokens))
        // The lease expires; some worker's sweep (its own connection, no cache) releases it.
        now.withLock { $0 = day0 + 62_000 }
        #expect(try AccountingStore(db).sweep(nowMs: day0 + 62_000) == 1)
        #expect(try reserved() == Int64(one.tokens))
        // A late settlement under the lease: charged, but the hold is gone already.
        try store.settle([.leased(lease: admission.id, record: record("a", at: day0 + 62_000, tokens: 4))])
        #expect(try reserved() == Int64(one.tokens), "the other request's hold stays whole")
        _ = other
    }

    @Test(arguments: TestEngine.available) func settlingAndRetiringALeaseLeavesExactlyWhatWasUsed(_ engine: TestEngine)
        throws
    {
        let db = try testDB(engine)
        let store = AccountingStore(db)
        let l = try limits(#"{"rate_limit":{"requests_per_minute":1000},"budget":{"daily_tokens":100000}}"#)
        let admission = try lease(store, l, at: day0)
        let grant = try #require(admission.lease)
        // Two requests admitted from it: one used 4 tokens, one failed (nothing used).
        try store.settle([
            .leased(lease: admission.id, record: record("a", at: day0 + 10, tokens: 4)),
            .leased(lease: admission.id, record: record("a", at: day0 + 20, tokens: 0, cost: 0, status: 502)),
        ])
        let held = try db.query("SELECT reserved_tokens, used_tokens FROM budget_counters WHERE scope = 'tenant:a'")
        #expect(held.first?[0].int == grant.tokens - 4 && held.first?[1].int == 4)
        // Retired: the unused part goes back; the window keeps the one admission that counted.
        try store.settle([
            .retire(
                lease: admission.id, tokens: grant.tokens - 4, nano: grant.nano, requests: 1, windowTokens: 4,
                final: true)
        ])
        let after = try db.query("SELECT reserved_tokens, used_tokens FROM budget_counters WHERE scope = 'tenant:a'")
        #expect(after.first?[0].int == 0 && after.first?[1].int == 4)
        #expect(try windowRequests(db) == 1)
        #expect(try db.query("SELECT COUNT(*) FROM reservations").first?.first?.int == 0)
    }

    @Test(arguments: TestEngine.available) func aDeadWorkersLeaseExpiresAndItsCapacityComesBack(_ engine: TestEngine)
        throws
    {
        let db = try testDB(engine)
        let store = AccountingStore(db)
        let l = try limits(#"{"rate_limit":{"requests_per_minute":100}}"#)
        _ = try lease(store, l, at: day0)
        #expect(try windowRequests(db) == 12)
        // Past admission window + expiry: the sweep releases it as unused.
        #expect(try store.sweep(nowMs: day0 + 10_000) == 1)
        #expect(try windowRequests(db) == 0)
    }
}
