import TenantGateCore
@testable import TenantGateHTTP
import TenantGateServing
import TenantGateSystem

/// Every storage port the request path uses, in memory, for the in-process pipeline tests: exact
/// per-minute windows and hard budgets (used + held, as the SQL store counts them), settlements that
/// release their reservation and charge what was used, the response cache fed by settled cache writes,
/// stored responses, circuits. No leases are granted: every admission is an exact reservation, which the
/// lease book handles like the store's answer near a limit.
final class MemoryStore: AccountingReads, Reserving, SettlementQueueing, ResponseCacheReads, ResponseRepository,
    CircuitBreakers, OperationsReads, @unchecked Sendable
{  // every field is read and written under `lock`
    struct Hold {
        let tenant: String
        let tokens: Int64
        let nano: Int64
    }

    private let lock = Locked(false)
    /// (tenant, at ms, amount) per window kind ("r", "t").
    private var windows: [String: [(tenant: String, atMs: Int64, amount: Int64)]] = ["r": [], "t": []]
    private var holds: [Int64: Hold] = [:]
    private var nextID: Int64 = 1
    /// Tokens and nano-USD charged per tenant (one period: the tests run inside one day).
    private(set) var charged: [String: (tokens: Int64, nano: Int64)] = [:]
    /// Every settled execution, in order.
    private(set) var records: [ExecutionRecord] = []
    /// Answers by tenant and key (the real store's key leads with the tenant as well).
    private var cache: [String: CachedAnswer] = [:]
    private var responses: [String: StoredResponse] = [:]
    private var circuitFailures: [String: Int] = [:]
    private var openUntil: [String: Int64] = [:]

    private func locked<T>(_ body: () throws -> T) rethrows -> T { try lock.withLock { _ in try body() } }

    // MARK: accounting

    private func windowUsed(_ tenant: String, _ kind: String, nowMs: Int64) -> Int64 {
        windows[kind, default: []].filter { $0.tenant == tenant && $0.atMs > nowMs - 60_000 }.reduce(0) {
            $0 + $1.amount
        }
    }

    private func heldNow(_ tenant: String) -> (tokens: Int64, nano: Int64) {
        holds.values.filter { $0.tenant == tenant }.reduce((0, 0)) { ($0.0 + $1.tokens, $0.1 + $1.nano) }
    }

    private func budgets(_ tenant: String, _ limits: Limits) -> [BudgetLeft] {
        guard limits.enforcement == .hard else { return [] }
        let held = heldNow(tenant)
        let used = charged[tenant] ?? (0, 0)
        var out: [BudgetLeft] = []
        func add(_ name: String, _ cap: Int64?, _ used: Int64) {
            guard let cap else { return }
            out.append(BudgetLeft(scope: "tenant", budget: name, cap: cap, used: used, resetsAt: 86_400))
        }
        add("daily_tokens", limits.dailyTokens.map(Int64.init), used.tokens + held.tokens)
        add("monthly_tokens", limits.monthlyTokens.map(Int64.init), used.tokens + held.tokens)
        add("daily_usd", limits.dailyNano, used.nano + held.nano)
        add("monthly_usd", limits.monthlyNano, used.nano + held.nano)
        return out
    }

    func refusalNow(tenant: String, limits: Limits, nowMs: Int64, tokens: Bool, money: Bool) throws -> LimitRefusal? {
        locked {
            if let rpm = limits.requestsPerMinute, windowUsed(tenant, "r", nowMs: nowMs) >= Int64(rpm) {
                return .rate(limit: "requests", retryAfter: 60)
            }
            guard tokens else { return nil }
            if let tpm = limits.tokensPerMinute, windowUsed(tenant, "t", nowMs: nowMs) >= Int64(tpm) {
                return .rate(limit: "tokens", retryAfter: 60)
            }
            for budget in budgets(tenant, limits) where budget.used >= budget.cap && (money || budget.countsTokens) {
                return .budget(scope: budget.scope, budget: budget.budget, resetsAt: budget.resetsAt)
            }
            return nil
        }
    }

    func budgetsLeft(tenant: String, limits: Limits, nowMs: Int64) throws -> [BudgetLeft] {
        locked { budgets(tenant, limits) }
    }

    func usageNow(tenant: String, nowMs: Int64) throws -> UsageNow {
        locked {
            let used = charged[tenant] ?? (0, 0)
            return UsageNow(
                requests: windowUsed(tenant, "r", nowMs: nowMs), tokens: windowUsed(tenant, "t", nowMs: nowMs),
                dayTokens: used.tokens, dayNano: used.nano, monthTokens: used.tokens, monthNano: used.nano)
        }
    }

    func spendByTenant(nowMs: Int64) throws -> [String: (day: Int64, month: Int64)] {
        locked { charged.mapValues { ($0.nano, $0.nano) } }
    }

    func reserve(_ job: ReserveJob) throws -> Admission {
        try locked { () throws(LimitRefusal) -> Admission in
            let tenant = job.tenant
            let limits = job.limits
            let need = job.need
            if let rpm = limits.requestsPerMinute, windowUsed(tenant, "r", nowMs: job.nowMs) + 1 > Int64(rpm) {
                throw LimitRefusal.rate(limit: "requests", retryAfter: 60)
            }
            if let tpm = limits.tokensPerMinute,
                windowUsed(tenant, "t", nowMs: job.nowMs) + Int64(need.tokens) > Int64(tpm)
            {
                throw LimitRefusal.rate(limit: "tokens", retryAfter: 60)
            }
            for budget in budgets(tenant, limits) {
                let adding = budget.countsTokens ? Int64(need.tokens) : need.costNano
                if budget.used + adding > budget.cap {
                    throw LimitRefusal.budget(scope: budget.scope, budget: budget.budget, resetsAt: budget.resetsAt)
                }
            }
            windows["r", default: []].append((tenant, job.nowMs, 1))
            windows["t", default: []].append((tenant, job.nowMs, Int64(need.tokens)))
            let id = nextID
            nextID += 1
            holds[id] = Hold(tenant: tenant, tokens: Int64(need.tokens), nano: need.costNano)
            var status = LimitStatus()
            status.requestLimit = limits.requestsPerMinute
            return Admission(id: id, status: status, lease: nil)
        }
    }

    func reserveLater(_ job: ReserveJob, completion: @escaping @Sendable (Admission?) -> Void) {
        completion(try? reserve(job))
    }

    /// Tokens and nano-USD held by reservations not settled yet.
    func held(_ tenant: String) -> (tokens: Int64, nano: Int64) { locked { heldNow(tenant) } }

    /// Requests in the tenant's per-minute window now.
    func requestsInWindow(_ tenant: String) -> Int64 {
        locked { windowUsed(tenant, "r", nowMs: Posix.wallMicros() / 1000) }
    }

    @discardableResult
    func enqueue(_ item: Settlement) -> Int64 {
        locked {
            switch item {
            case .request(let reservation, let record):
                if let reservation { holds[reservation] = nil }
                records.append(record)
                if record.chargesRequest {
                    windows["r", default: []].append((record.tenant, record.atMs, 1))
                }
                if record.consumesCapacity {
                    let used = Int64(record.usage.promptTokens + record.usage.completionTokens)
                    let before = charged[record.tenant] ?? (0, 0)
                    charged[record.tenant] = (before.tokens + used, before.nano + record.costNano)
                }
                if let write = record.cacheWrite {
                    cache[MemoryStore.cacheID(record.tenant, write.key)] = CachedAnswer(
                        answer: write.answer, tokens: write.tokens, costNano: write.costNano, usedMs: record.atMs,
                        expiresMs: record.atMs + write.ttlMs)
                }
            case .cancel(let reservation):
                holds[reservation] = nil
            case .leased, .retire:
                break  // no leases are granted
            }
            return Int64(records.count)
        }
    }

    /// Settlements "fail to commit" while set: `waitWritten` says so (the durable-settlement path).
    private var failing = false
    func failWrites(_ on: Bool) { locked { failing = on } }

    func waitWritten(_ seq: Int64) -> Bool { locked { !failing } }

    // MARK: cache

    func lookup(tenant: String, key: [UInt8], nowMs: Int64) throws -> CachedAnswer? {
        locked { cache[MemoryStore.cacheID(tenant, key)].flatMap { $0.expiresMs > nowMs ? $0 : nil } }
    }

    func generation(tenant: String) throws -> Int64 { 0 }

    func vectors(tenant: String, scope: [UInt8], signature: String, limit: Int) throws -> [(
        key: [UInt8], vector: [Float], signature: String
    )] { [] }

    var cachedAnswers: Int { locked { cache.count } }

    static func cacheID(_ tenant: String, _ key: [UInt8]) -> String {
        tenant + "\u{0}" + key.map { String($0) }.joined(separator: ",")
    }

    // MARK: stored responses

    func save(_ stored: StoredResponse, tenant: String, maxStored: Int, storageQuota: Int64?) throws {
        locked { responses[tenant + "/" + stored.id] = stored }
    }

    func response(tenant: String, id: String) throws -> JSONValue? {
        locked { responses[tenant + "/" + id]?.response }
    }

    func inputItems(tenant: String, id: String) throws -> [JSONValue]? {
        locked { responses[tenant + "/" + id]?.inputItems }
    }

    func conversation(tenant: String, id: String) throws -> [JSONValue]? {
        locked {
            var turns: [[JSONValue]] = []
            var next: String? = id
            while let current = next {
                guard let stored = responses[tenant + "/" + current] else { return nil }
                turns.append(stored.turn)
                next = stored.previous
            }
            return turns.reversed().flatMap { $0 }
        }
    }

    func delete(tenant: String, id: String) throws -> Bool {
        locked { responses.removeValue(forKey: tenant + "/" + id) != nil }
    }

    // MARK: circuits

    func admit(tenant: String, backend: String, nowMs: Int64) throws -> CircuitDecision {
        locked {
            guard let until = openUntil[tenant + "/" + backend] else { return .closed }
            return nowMs < until ? .open(retryAfter: Int((until - nowMs + 999) / 1000)) : .probe
        }
    }

    func recordProbeSuccess(tenant: String, backend: String) throws {
        locked {
            openUntil[tenant + "/" + backend] = nil
            circuitFailures[tenant + "/" + backend] = 0
        }
    }

    func recordFailure(tenant: String, backend: String, settings: CircuitSettings, wasProbe: Bool, nowMs: Int64)
        throws -> Bool
    {
        locked {
            let pair = tenant + "/" + backend
            circuitFailures[pair, default: 0] += 1
            guard wasProbe || circuitFailures[pair, default: 0] >= settings.errors else { return false }
            openUntil[pair] = nowMs + settings.cooldownMs
            return true
        }
    }

    func states(nowMs: Int64) throws -> [(String, String, Bool)] {
        locked {
            openUntil.map { pair, until in
                let parts = pair.split(separator: "/", maxSplits: 1).map(String.init)
                return (parts[0], parts.count > 1 ? parts[1] : "", nowMs < until)
            }
        }
    }

    // MARK: operations

    func schemaVersion() throws -> Int { 1 }
    var currentSchemaVersion: Int { 1 }
    func storageBytes(tenant: String) throws -> Int64 { 0 }
    func renderCounters(into renderer: inout MetricsFormat.Renderer) throws {}
    func workersAlive(sinceMs: Int64) throws -> (workers: Int64, inFlight: Int64) { (1, 0) }
}

/// Document collections are not kept in memory: their endpoints answer 503 here, as on PostgreSQL.
struct NoDocuments: DocumentRepository {
    private var unavailable: GatewayError { .serviceUnavailable("no document store in this test") }
    func collection(tenant: String, name: String) throws -> CollectionInfo? { nil }
    func collections(tenant: String) throws -> [CollectionInfo] { [] }
    func createCollection(
        tenant: String, name: String, embeddingModel: String?, settings: DocumentSettings, nowMs: Int64
    ) throws -> CollectionInfo { throw unavailable }
    func deleteCollection(tenant: String, name: String) throws -> Bool { false }
    func documents(tenant: String, collection: String) throws -> [DocumentInfo] { [] }
    func document(tenant: String, collection: String, id: String) throws -> (DocumentInfo, String)? { nil }
    func deleteDocument(tenant: String, collection: String, id: String) throws -> Bool { false }
    func duplicate(tenant: String, collection: CollectionInfo, of document: NewDocument) throws -> DocumentInfo? {
        nil
    }
    func add(
        _ document: NewDocument, tenant: String, collection: String, settings: DocumentSettings, nowMs: Int64,
        storageQuota: Int64?
    ) throws -> (DocumentInfo, duplicate: Bool) { throw unavailable }
    func forEachVector(tenant: String, collection: CollectionInfo, _ body: (Int64, [Float]) -> Void) throws {}
    func chunks(tenant: String, collection: CollectionInfo, ids: [(Int64, Double)]) throws -> [FoundChunk] { [] }
    func searchBM25(tenant: String, collection: CollectionInfo, query: String, k: Int) throws -> [(
        Int64, FoundChunk
    )] { [] }
}

/// A fixed configuration snapshot.
final class FixedConfig: ConfigSource, @unchecked Sendable {  // immutable after init; `used` under its lock
    let snapshot: (config: GatewayConfig, jwt: JWTCheck?)
    let used = Locked<[String]>([])

    init(_ config: GatewayConfig) { snapshot = (config, nil) }

    func markUsed(_ keyID: String) { used.withLock { $0.append(keyID) } }
}
