import TenantGateCore
import TenantGateSystem

/// Per-tenant figures of the cache.
public struct CacheStats: Sendable {
    public let tenant: String
    public let entries: Int64
    public let bytes: Int64
    public let hits: Int64
    /// Hits and lookups that missed, and the cost saved, over the last 24 hours (execution log).
    public let recentHits: Int64
    public let recentMisses: Int64
    public let savedNano: Int64
}

/// The response cache in SQLite. Every query names the tenant: the tenant leads the primary key and is
/// inside the hashed key as well, so no lookup can reach another tenant's entries. Quotas (entries,
/// bytes) are per tenant, and eviction removes only that tenant's least recently used entries.
public struct CacheStore {
    private let db: any SQLConnection

    /// The cache over `db`.
    public init(_ db: any SQLConnection) { self.db = db }

    /// The live entry of `tenant` under `key`, if any. A corrupt entry is a miss.
    public func lookup(tenant: String, key: [UInt8], nowMs: Int64) throws -> CachedAnswer? {
        guard
            let row = try db.statement(
                """
                SELECT answer, tokens, cost_nano, used_ms, expires_ms FROM cache_entries
                WHERE tenant = ? AND key = ? AND expires_ms > ?
                """
            ).all([.text(tenant), .blob(key), .int(nowMs)]).first
        else { return nil }
        guard let bytes = row[0].blob, let answer = try? JSONParser.parse(bytes), case .object = answer else {
            return nil
        }
        return CachedAnswer(
            answer: answer, tokens: row[1].int ?? 0, costNano: row[2].int ?? 0, usedMs: row[3].int ?? 0,
            expiresMs: row[4].int ?? 0)
    }

    /// A hit: the entry was used now (LRU order and hit count). Inside the settlement's transaction.
    func touch(tenant: String, key: [UInt8], nowMs: Int64) throws {
        try db.statement("UPDATE cache_entries SET used_ms = ?, hits = hits + 1 WHERE tenant = ? AND key = ?")
            .queue([.int(nowMs), .text(tenant), .blob(key)])
    }

    /// Stores (or replaces) an entry, then evicts the tenant's least recently used entries beyond its quota.
    /// Inside the settlement's transaction.
    func store(tenant: String, _ write: CacheWrite, nowMs: Int64) throws {
        let answer = write.answer.bytes
        // An entry's size is its answer and, for the semantic cache, its question's vector: both are stored,
        // so both count against `max_bytes` and the tenant's storage quota (and come back when it goes).
        let size = Int64(answer.count).saturatingAdd(Int64(write.semantic?.vector.count ?? 0).saturatingMultiply(4))
        if let quota = write.storageQuota, try StorageUsage(db).bytes(tenant: tenant).saturatingAdd(size) > quota {
            return  // a cache is optional: at its storage quota the tenant's answers are simply not kept
        }
        try remove(tenant: tenant, key: write.key)
        try db.statement(
            """
            INSERT INTO cache_entries(tenant, key, created_ms, expires_ms, used_ms, bytes, answer, tokens, cost_nano)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """
        ).run([
            .text(tenant), .blob(write.key), .int(nowMs), .int(nowMs.saturatingAdd(write.ttlMs)), .int(nowMs),
            .int(size), .blob(answer), .int(write.tokens), .int(write.costNano),
        ])
        try adjust(tenant: tenant, entries: 1, bytes: size)
        if let semantic = write.semantic {
            try db.statement(
                """
                INSERT INTO cache_vectors(tenant, scope, key, vector, words) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(tenant, scope, key) DO UPDATE SET vector = excluded.vector, words = excluded.words
                """
            ).run([
                .text(tenant), .blob(semantic.scope), .blob(write.key), .blob(CacheStore.bytes(semantic.vector)),
                .text(semantic.signature),
            ])
            try bumpGeneration(tenant)
        }
        while true {
            let usage = try db.statement("SELECT entries, bytes FROM cache_usage WHERE tenant = ?")
                .all([.text(tenant)]).first
            let (entries, bytes) = (usage?[0].int ?? 0, usage?[1].int ?? 0)
            guard entries > Int64(write.maxEntries) || bytes > write.maxBytes else { return }
            guard
                let oldest = try db.statement(
                    "SELECT key FROM cache_entries WHERE tenant = ? ORDER BY used_ms LIMIT 1"
                ).all([.text(tenant)]).first?[0].blob
            else { return }
            try remove(tenant: tenant, key: oldest)
        }
    }

    private func remove(tenant: String, key: [UInt8]) throws {
        guard
            let size = try db.statement("SELECT bytes FROM cache_entries WHERE tenant = ? AND key = ?")
                .all([.text(tenant), .blob(key)]).first?[0].int
        else { return }
        try db.statement("DELETE FROM cache_entries WHERE tenant = ? AND key = ?").run([.text(tenant), .blob(key)])
        try adjust(tenant: tenant, entries: -1, bytes: -size)
        try db.statement("DELETE FROM cache_vectors WHERE tenant = ? AND key = ?").run([.text(tenant), .blob(key)])
        if db.changes > 0 { try bumpGeneration(tenant) }
    }

    private func bumpGeneration(_ tenant: String) throws {
        try db.statement("UPDATE cache_usage SET generation = generation + 1 WHERE tenant = ?").run([.text(tenant)])
    }

    /// The tenant's semantic generation: it changes whenever its vectors do (a purge resets it).
    public func generation(tenant: String) throws -> Int64 {
        try db.statement("SELECT generation FROM cache_usage WHERE tenant = ?").all([.text(tenant)]).first?[0].int ?? -1
    }

    /// At most `limit` vectors of `tenant` in `scope` with `signature`: (entry key, unit vector, signature).
    public func vectors(tenant: String, scope: [UInt8], signature: String, limit: Int) throws -> [(
        key: [UInt8], vector: [Float], signature: String
    )] {
        var out: [(key: [UInt8], vector: [Float], signature: String)] = []
        try db.statement(
            "SELECT key, vector, words FROM cache_vectors WHERE tenant = ? AND scope = ? AND words = ? LIMIT ?"
        ).forEach(
            [.text(tenant), .blob(scope), .text(signature), .int(Int64(max(0, limit)))]
        ) { row in
            var key: [UInt8] = []
            var raw: [UInt8] = []
            row.appendBlob(0, to: &key)
            row.appendBlob(1, to: &raw)
            out.append((key, CacheStore.floats(raw), row.text(2)))
        }
        return out
    }

    /// Little-endian IEEE 754 floats.
    static func bytes(_ vector: [Float]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(vector.count * 4)
        for value in vector {
            let bits = value.bitPattern
            out += [UInt8(bits & 0xFF), UInt8(bits >> 8 & 0xFF), UInt8(bits >> 16 & 0xFF), UInt8(bits >> 24)]
        }
        return out
    }

    static func floats(_ bytes: [UInt8]) -> [Float] {
        var out: [Float] = []
        out.reserveCapacity(bytes.count / 4)
        var i = 0
        while i + 4 <= bytes.count {
            let bits =
                UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24
            out.append(Float(bitPattern: bits))
            i += 4
        }
        return out
    }

    private func adjust(tenant: String, entries: Int64, bytes: Int64) throws {
        try db.statement(
            """
            INSERT INTO cache_usage(tenant, entries, bytes) VALUES (?1, MAX(0, ?2), MAX(0, ?3))
            ON CONFLICT(tenant) DO UPDATE SET entries = MAX(0, cache_usage.entries + ?2), bytes = MAX(0, cache_usage.bytes + ?3)
            """
        ).run([.text(tenant), .int(entries), .int(bytes)])
    }

    /// Deletes every entry of `tenant` (nil: of every tenant) in a transaction of its own; returns how many.
    @discardableResult
    public func purge(tenant: String?) throws -> Int { try db.transaction { try purgeRows(tenant: tenant) } }

    /// `purge` inside the caller's transaction (an audit entry commits with it).
    public func purgeRows(tenant: String?) throws -> Int {
        do {
            let n: Int
            if let tenant {
                try db.statement("DELETE FROM cache_entries WHERE tenant = ?").run([.text(tenant)])
                n = db.changes
                try db.statement("DELETE FROM cache_vectors WHERE tenant = ?").run([.text(tenant)])
                try db.statement("DELETE FROM cache_usage WHERE tenant = ?").run([.text(tenant)])
            } else {
                try db.statement("DELETE FROM cache_entries").run()
                n = db.changes
                try db.statement("DELETE FROM cache_vectors").run()
                try db.statement("DELETE FROM cache_usage").run()
            }
            return n
        }
    }

    /// Deletes up to 1,000 expired entries; returns how many.
    @discardableResult
    public func sweep(nowMs: Int64) throws -> Int {
        try db.transaction {
            var n = 0
            try db.statement(
                "SELECT tenant, key, bytes FROM cache_entries WHERE expires_ms <= ? ORDER BY expires_ms LIMIT 1000"
            ).all([.int(nowMs)]).forEach { row in
                guard let tenant = row[0].text, let key = row[1].blob else { return }
                try db.statement("DELETE FROM cache_entries WHERE tenant = ? AND key = ?").run([
                    .text(tenant), .blob(key),
                ])
                try adjust(tenant: tenant, entries: -1, bytes: -(row[2].int ?? 0))
                n += 1
            }
            return n
        }
    }

    /// Per-tenant figures (one tenant, or every tenant with entries or recent lookups).
    public func stats(tenant: String?, nowMs: Int64) throws -> [CacheStats] {
        var tenants = Set<String>()
        var usage: [String: (Int64, Int64)] = [:]
        for row in try db.query("SELECT tenant, entries, bytes FROM cache_usage") {
            guard let id = row[0].text, tenant == nil || tenant == id else { continue }
            usage[id] = (row[1].int ?? 0, row[2].int ?? 0)
            tenants.insert(id)
        }
        var hits: [String: Int64] = [:]
        for row in try db.query("SELECT tenant, COALESCE(SUM(hits), 0) FROM cache_entries GROUP BY tenant") {
            if let id = row[0].text { hits[id] = row[1].int ?? 0 }
        }
        var recent: [String: (hits: Int64, misses: Int64, saved: Int64)] = [:]
        for row in try db.query(
            """
            SELECT tenant, SUM(CASE WHEN cache IN ('hit', 'semantic-hit') THEN 1 ELSE 0 END),
              SUM(CASE WHEN cache = 'miss' THEN 1 ELSE 0 END), COALESCE(SUM(saved_nano), 0)
            FROM executions WHERE at_ms > ? AND cache IS NOT NULL GROUP BY tenant
            """, [.int(nowMs - 86_400_000)])
        {
            guard let id = row[0].text, tenant == nil || tenant == id else { continue }
            recent[id] = (row[1].int ?? 0, row[2].int ?? 0, row[3].int ?? 0)
            tenants.insert(id)
        }
        if let tenant { tenants.insert(tenant) }
        return tenants.sorted().map { id in
            CacheStats(
                tenant: id, entries: usage[id]?.0 ?? 0, bytes: usage[id]?.1 ?? 0, hits: hits[id] ?? 0,
                recentHits: recent[id]?.hits ?? 0, recentMisses: recent[id]?.misses ?? 0,
                savedNano: recent[id]?.saved ?? 0)
        }
    }
}
