import TenantGateCore
import TenantGateSystem

/// The deployment-wide counters behind `/metrics`: written in the settlement transaction (so they cover
/// every worker, survive restarts and never disagree with the execution log) and read back by the scrape.
/// The only place that knows how they are named and stored.
public struct MetricCounters {
    private let db: any SQLConnection

    /// Counters over `db`.
    public init(_ db: any SQLConnection) { self.db = db }

    /// Counter increments gathered over a settlement batch and written once per counter at its end (a
    /// request touches about ten counters; a batch of many requests mostly the same ones). The counters
    /// every request touches are summed per (tenant, model, status) as numbers, and their names and label
    /// texts made once per batch in `write`; the rarer ones (cache, policies, refusals) go by name.
    public struct Tally {
        struct Key: Hashable, Comparable {
            let name: String
            let labels: String
            let le: Int
            static func < (a: Key, b: Key) -> Bool { (a.name, a.labels, a.le) < (b.name, b.labels, b.le) }
        }
        /// The series of one tenant × model × status.
        struct Series: Hashable {
            let tenant: String
            let model: String
            let status: Int
        }
        struct Histogram {
            var buckets: [Int: Int64] = [:]
            var sumMs: Int64 = 0
            var count: Int64 = 0
            mutating func observe(ms: Int) {
                buckets[MetricsFormat.bucketIndex(seconds: Double(ms) / 1000), default: 0] &+= 1
                sumMs &+= Int64(ms)
                count &+= 1
            }
        }
        struct Totals {
            var requests: Int64 = 0
            var tokensIn: Int64 = 0
            var tokensOut: Int64 = 0
            var tokensCached: Int64 = 0
            var costNano: Int64 = 0
            var duration = Histogram()
            var upstream = Histogram()
        }
        var deltas: [Key: Int64] = [:]
        var series: [Series: Totals] = [:]
        public init() {}
        public var isEmpty: Bool { deltas.isEmpty && series.isEmpty }

        mutating func add(_ name: String, _ labels: String, _ delta: Int64, le: Int = -1) {
            guard delta != 0 else { return }
            deltas[Key(name: name, labels: labels, le: le), default: 0] &+= delta
        }

        /// Every counter by name: the named ones and each series' counters.
        func all() -> [Key: Int64] {
            var out = deltas
            func add(_ name: String, _ labels: String, _ delta: Int64, le: Int = -1) {
                guard delta != 0 else { return }
                out[Key(name: name, labels: labels, le: le), default: 0] &+= delta
            }
            func histogram(_ name: String, _ labels: String, _ h: Histogram) {
                for (le, n) in h.buckets { add("\(name)_bucket", labels, n, le: le) }
                add("\(name)_sum_ms", labels, h.sumMs)
                add("\(name)_count", labels, h.count)
            }
            for (key, t) in series {
                let base = "tenant=\"\(MetricsFormat.escape(key.tenant))\",model=\"\(MetricsFormat.escape(key.model))\""
                add("tenantgate_requests_total", "\(base),status=\"\(key.status)\"", t.requests)
                add("tenantgate_tokens_total", "\(base),type=\"input\"", t.tokensIn)
                add("tenantgate_tokens_total", "\(base),type=\"output\"", t.tokensOut)
                add("tenantgate_tokens_total", "\(base),type=\"cached\"", t.tokensCached)
                add("tenantgate_cost_nano_total", base, t.costNano)
                histogram("tenantgate_request_duration_seconds", base, t.duration)
                histogram("tenantgate_upstream_duration_seconds", base, t.upstream)
            }
            return out
        }
    }

    /// Writes what `tally` gathered: one row per counter, in key order, in a few multi-row upserts.
    public func write(_ tally: Tally) throws {
        let rows: [[SQLValue]] = tally.all().sorted(by: { $0.key < $1.key }).compactMap { key, delta in
            delta == 0 ? nil : [.text(key.name), .text(key.labels), .int(Int64(key.le)), .int(delta)]
        }
        try MetricCounters.upsert.write(db, rows)
    }

    private static let upsert = MultiRowInsert(
        table: "metric_counters", columns: ["name", "labels", "le", "value"],
        upsert: ("name, labels, le", "value = CAST(metric_counters.value + excluded.value AS INTEGER)"))

    /// Adds one settled request's increments to `tally`: requests, tokens, cost, durations and limit
    /// refusals.
    public static func count(_ record: ExecutionRecord, into tally: inout Tally) {
        func add(_ name: String, _ labels: String, _ delta: Int64, le: Int = -1) {
            tally.add(name, labels, delta, le: le)
        }
        let key = Tally.Series(tenant: record.tenant, model: record.model ?? "", status: record.status)
        tally.series[key, default: Tally.Totals()].add(record)
        let tenant = MetricsFormat.escape(record.tenant)
        if let kind = record.cache {
            if kind != "miss" {
                add("tenantgate_cache_hits_total", "tenant=\"\(tenant)\",kind=\"\(kind)\"", 1)
                add("tenantgate_cache_saved_nano_total", "tenant=\"\(tenant)\"", record.savedNano)
            }
        }
        for trigger in record.policyTriggers {
            add(
                "tenantgate_policy_triggers_total",
                "tenant=\"\(tenant)\",policy=\"\(MetricsFormat.escape(trigger.policy))\",action=\"\(trigger.action.rawValue)\",mode=\"\(trigger.mode.rawValue)\"",
                Int64(trigger.count))
        }
        if record.status == 429, let limit = record.refusedLimit {
            add("tenantgate_rate_limited_total", "tenant=\"\(tenant)\",limit=\"\(MetricsFormat.escape(limit))\"", 1)
        }
    }

    /// Every counter row, in name and label order, into `renderer`.
    public func render(into renderer: inout MetricsFormat.Renderer) throws {
        var name = ""
        var nameBytes: [UInt8] = []
        var labels: [UInt8] = []
        try db.statement("SELECT name, labels, le, value FROM metric_counters ORDER BY name, labels, le").forEach {
            row in
            // Consecutive rows mostly share name and labels: reuse them instead of copying again.
            if !row.textEquals(0, nameBytes) {
                name = row.text(0)
                nameBytes = Array(name.utf8)
            }
            if !row.textEquals(1, labels) {
                labels.removeAll(keepingCapacity: true)
                row.appendText(1, to: &labels)
            }
            renderer.add(name: name, labels: labels, le: Int(row.int(2)), value: row.int(3))
        }
    }
}

extension MetricCounters.Tally.Totals {
    fileprivate mutating func add(_ record: ExecutionRecord) {
        requests &+= 1
        tokensIn &+= Int64(record.usage.promptTokens)
        tokensOut &+= Int64(record.usage.completionTokens)
        tokensCached &+= Int64(record.usage.cachedTokens)
        costNano &+= record.costNano
        duration.observe(ms: record.latencyMs)
        if let upstream = record.upstreamMs { self.upstream.observe(ms: upstream) }
    }
}
