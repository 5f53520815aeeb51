import TenantGateCore
import TenantGateSystem

/// One event of the audit trail.
public struct AuditEvent: Sendable, Equatable {
    public let tenant: String
    public let seq: Int64
    public let tsMs: Int64
    public let kind: String
    public let actor: String
    public let body: String
    public let prevMAC: [UInt8]
    public let mac: [UInt8]
}

/// Why a chain does not verify, at which `seq`.
public struct AuditFault: Sendable, Equatable, CustomStringConvertible {
    public let tenant: String
    public let seq: Int64
    public let reason: String
    public var description: String { "\(tenant): seq \(seq): \(reason)" }
}

/// The tamper-evident audit trail: one chain per tenant (`_system` for the deployment), each event's MAC
/// (HMAC-SHA256 under the audit key) covering every field, length-prefixed, and the previous event's
/// MAC. Appended in the transaction of the change it records, so the chain continues across restarts and
/// workers (SQLite serialises the writers: `seq` is contiguous). The head of each chain is kept apart
/// (its own MAC) so that cutting the tail shows. The audit key is random, made once, and stored sealed
/// under the master key (AES-GCM): whoever can write the database cannot recompute a MAC without it.
public struct AuditChain {
    private let db: any SQLConnection
    private let key: [UInt8]
    /// The chain of deployment-wide events.
    public static let system = "_system"
    static let genesis = [UInt8](repeating: 0, count: 32)

    /// The chain over `db`, with the audit key opened under `masterKey` (made on first use).
    public init(_ db: any SQLConnection, masterKey: [UInt8]?, keys: AuditKeys = AuditKeys()) throws {
        self.db = db
        key = try AuditChain.key(db, masterKey: masterKey, keys: keys)
    }

    /// The chain over `db`, with the master key found next to it (or in `TENANTGATE_MASTER_KEY`); a master
    /// key rotated since `keys` read it is read again. `keys`: what a writer opened before (its
    /// `SharedWriter`'s), or nothing.
    public init(_ db: any SQLConnection, keys: AuditKeys = AuditKeys()) throws {
        do {
            try self.init(db, masterKey: try keys.masterKey(for: db.path), keys: keys)
        } catch {
            keys.forgetMasterKey(for: db.path)
            try self.init(db, masterKey: try keys.masterKey(for: db.path), keys: keys)
        }
    }

    static func key(_ db: any SQLConnection, masterKey: [UInt8]?, keys: AuditKeys) throws -> [UInt8] {
        let aad = Array("tenantgate audit key".utf8)
        if let row = try db.statement("SELECT sealed, key FROM audit_key WHERE id = 1").all().first,
            let stored = row[1].blob
        {
            guard row[0].int == 1 else { return stored }
            guard let masterKey else {
                throw StoreError.invalid("the audit key is sealed under a master key that is not configured")
            }
            return try keys.opened(stored, under: masterKey) { try Crypto.open(stored, key: masterKey, aad: aad) }
        }
        let fresh = try Crypto.randomBytes(32)
        let sealed = try masterKey.map { try Crypto.seal(fresh, key: $0, aad: aad) }
        try db.statement("INSERT INTO audit_key(id, sealed, key) VALUES (1, ?, ?) ON CONFLICT(id) DO NOTHING")
            .run([.int(sealed == nil ? 0 : 1), .blob(sealed ?? fresh)])
        // Another process may have made it first: use what is stored.
        return try key(db, masterKey: masterKey, keys: keys)
    }

    /// Seals the audit key under `new` instead of `old` (master key rotation; inside its transaction).
    public static func reseal(_ db: any SQLConnection, from old: [UInt8]?, to new: [UInt8]) throws {
        let key = try key(db, masterKey: old, keys: AuditKeys())
        let sealed = try Crypto.seal(key, key: new, aad: Array("tenantgate audit key".utf8))
        try db.statement("UPDATE audit_key SET sealed = 1, key = ? WHERE id = 1").run([.blob(sealed)])
    }

    /// A check value of the key (the first 8 bytes of HMAC(key, "check"), hex) for offline verifiers.
    public var keyCheck: String {
        Crypto.hex(Array(Crypto.hmacSHA256(key: key, message: Array("check".utf8)).prefix(8)))
    }

    /// An event to chain.
    public struct Pending: Sendable {
        public let tenant: String
        public let kind: String
        public let actor: String
        public let body: JSONValue
        public let atMs: Int64
    }

    /// Appends `events` in order (inside the caller's transaction), reading and writing each chain's head
    /// once.
    /// A tenant's first event also records, in the system chain, that the tenant's chain exists: a chain
    /// deleted whole (events and head) is then missed by `verify`.
    public func append(_ events: [Pending]) throws {
        var heads: [String: (seq: Int64, mac: [UInt8])] = [:]
        var added: [String: Int64] = [:]
        var queue = events[...]
        while let event = queue.popFirst() {
            var head = heads[event.tenant]
            if head == nil {
                let row = try db.statement("SELECT seq, mac FROM audit_heads WHERE tenant = ?").all([
                    .text(event.tenant)
                ])
                .first
                head = (row?[0].int ?? 0, row?[1].blob ?? AuditChain.genesis)
                if row == nil && event.tenant != AuditChain.system {
                    queue.append(
                        Pending(
                            tenant: AuditChain.system, kind: "chain_started", actor: "audit",
                            body: .object([("tenant", .string(event.tenant))]), atMs: event.atMs))
                }
            }
            guard let (last, prev) = head else { continue }
            let seq = last + 1
            let text = event.body.jsonString
            let mac = self.mac(
                tenant: event.tenant, seq: seq, tsMs: event.atMs, kind: event.kind, actor: event.actor, body: text,
                prev: prev)
            try db.statement(
                "INSERT INTO audit_events(tenant, seq, ts_ms, kind, actor, body, prev_mac, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ).run([
                .text(event.tenant), .int(seq), .int(event.atMs), .text(event.kind), .text(event.actor), .text(text),
                .blob(prev), .blob(mac),
            ])
            heads[event.tenant] = (seq, mac)
            // In characters (code points), as `length(body)` counts them in SQLite and PostgreSQL alike.
            added[event.tenant, default: 0] += Int64(text.unicodeScalars.count)
        }
        for (tenant, head) in heads {
            // `bytes`: the chain's stored event bodies, for the tenant's storage quota.
            try db.statement(
                """
                INSERT INTO audit_heads(tenant, seq, mac, head_mac, bytes) VALUES (?1, ?2, ?3, ?4, ?5)
                ON CONFLICT(tenant) DO UPDATE SET seq = ?2, mac = ?3, head_mac = ?4, bytes = audit_heads.bytes + ?5
                """
            ).run([
                .text(tenant), .int(head.seq), .blob(head.mac),
                .blob(headMAC(tenant: tenant, seq: head.seq, mac: head.mac)), .int(added[tenant] ?? 0),
            ])
        }
    }

    /// For events of the request path, which must never fail the write they ride on: appends `events` inside
    /// a savepoint of the caller's transaction, so a failure (an audit key that cannot be opened, a full
    /// disk) leaves nothing half-written and the chains whole; returns whether they were chained.
    @discardableResult
    public static func appendBestEffort(_ db: any SQLConnection, keys: AuditKeys, _ events: [Pending]) -> Bool {
        guard !events.isEmpty, (try? db.execute("SAVEPOINT audit")) != nil else { return false }
        do {
            try AuditChain(db, keys: keys).append(events)
            try db.execute("RELEASE audit")
            return true
        } catch {
            _ = try? db.execute("ROLLBACK TO audit")
            _ = try? db.execute("RELEASE audit")
            return false
        }
    }

    /// Appends an event to `tenant`'s chain; call inside the transaction that makes the change.
    @discardableResult
    public func append(tenant: String, kind: String, actor: String, body: JSONValue, atMs: Int64) throws -> Int64 {
        try append([Pending(tenant: tenant, kind: kind, actor: actor, body: body, atMs: atMs)])
        return try db.statement("SELECT seq FROM audit_heads WHERE tenant = ?").all([.text(tenant)]).first?[0].int ?? 0
    }

    /// HMAC over every field, each length-prefixed (8 bytes, little-endian), the previous MAC last.
    func mac(tenant: String, seq: Int64, tsMs: Int64, kind: String, actor: String, body: String, prev: [UInt8])
        -> [UInt8]
    {
        var message = LengthPrefixed()
        func field(_ bytes: [UInt8]) { message.field(bytes) }
        field(Array("tenantgate-audit-1".utf8))
        field(Array(tenant.utf8))
        field(Array(String(seq).utf8))
        field(Array(String(tsMs).utf8))
        field(Array(kind.utf8))
        field(Array(actor.utf8))
        field(Array(body.utf8))
        field(prev)
        return Crypto.hmacSHA256(key: key, message: message.bytes)
    }

    private func headMAC(tenant: String, seq: Int64, mac: [UInt8]) -> [UInt8] {
        Crypto.hmacSHA256(key: key, message: Array("head\u{0}\(tenant)\u{0}\(seq)\u{0}".utf8) + mac)
    }

    /// The events of `tenant` from `seq` on (oldest first), at most `limit`.
    public func events(tenant: String, fromSeq: Int64 = 0, sinceMs: Int64 = 0, limit: Int = .max) throws -> [AuditEvent]
    {
        try db.statement(
            """
            SELECT tenant, seq, ts_ms, kind, actor, body, prev_mac, mac FROM audit_events
            WHERE tenant = ? AND seq >= ? AND ts_ms >= ? ORDER BY seq LIMIT ?
            """
        ).all([.text(tenant), .int(fromSeq), .int(sinceMs), .int(Int64(min(limit, Int(Int64.max))))]).map { r in
            AuditEvent(
                tenant: r[0].text ?? "", seq: r[1].int ?? 0, tsMs: r[2].int ?? 0, kind: r[3].text ?? "",
                actor: r[4].text ?? "", body: r[5].text ?? "", prevMAC: r[6].blob ?? [], mac: r[7].blob ?? [])
        }
    }

    /// Every chain (tenant) with events or a head.
    public func tenants() throws -> [String] {
        try db.query("SELECT tenant FROM audit_heads UNION SELECT DISTINCT tenant FROM audit_events ORDER BY 1")
            .compactMap { $0[0].text }
    }

    /// Verifies `tenant`'s chain (nil: every chain); the first fault of each, if any.
    /// A chain the system chain says was started, but of which neither events nor head remain, is a fault
    /// ("chain deleted"). (Deleting the system chain too goes unseen without a copy of the heads kept
    /// elsewhere: `audit export`.)
    public func verify(tenant: String?) throws -> [AuditFault] {
        var faults: [AuditFault] = []
        let present = Set(try tenants())
        let starts = try startedChains()
        for id in tenant.map({ [$0] }) ?? present.union(starts.keys).sorted() {
            if starts[id] != nil && !present.contains(id) {
                faults.append(AuditFault(tenant: id, seq: 1, reason: "chain deleted (events and head gone)"))
            } else if (starts[id] ?? 0) > 1 {
                // Deleted whole, then begun again by its next event.
                faults.append(AuditFault(tenant: id, seq: 1, reason: "chain deleted and started again"))
            } else if let fault = try verifyOne(id) {
                faults.append(fault)
            }
        }
        return faults
    }

    /// How many times the system chain records each tenant's chain starting.
    private func startedChains() throws -> [String: Int] {
        var out: [String: Int] = [:]
        try db.statement("SELECT body FROM audit_events WHERE tenant = ? AND kind = 'chain_started'").forEach([
            .text(AuditChain.system)
        ]) { row in
            if let body = try? JSONParser.parse(Array(row.text(0).utf8)), let id = body["tenant"]?.stringValue {
                out[id, default: 0] += 1
            }
        }
        return out
    }

    private func verifyOne(_ tenant: String) throws -> AuditFault? {
        let events = try self.events(tenant: tenant)
        let head = try db.statement("SELECT seq, mac, head_mac FROM audit_heads WHERE tenant = ?").all([.text(tenant)])
            .first
        guard let first = events.first else {
            if let seq = head?[0].int, seq > 0 { return AuditFault(tenant: tenant, seq: 1, reason: "events deleted") }
            return nil
        }
        // Where the chain starts: at 1 from genesis, or after a retention anchor.
        var expectedSeq = first.seq
        var expectedPrev = AuditChain.genesis
        if first.seq != 1 {
            let anchor = events.last {
                $0.kind == "anchor"
                    && (try? JSONParser.parse($0.body))?["pruned_through"]?.intValue.map(Int64.init) == first.seq - 1
            }
            guard let anchor, let body = try? JSONParser.parse(anchor.body),
                let mac = body["last_mac"]?.stringValue.flatMap(Crypto.unhex)
            else {
                return AuditFault(
                    tenant: tenant, seq: 1, reason: "events deleted (no retention anchor for seq \(first.seq - 1))")
            }
            expectedPrev = mac
        }
        for event in events {
            if event.seq != expectedSeq {
                return AuditFault(
                    tenant: tenant, seq: expectedSeq,
                    reason: event.seq > expectedSeq ? "event missing (deleted)" : "sequence out of order")
            }
            if event.prevMAC != expectedPrev {
                return AuditFault(
                    tenant: tenant, seq: event.seq, reason: "previous MAC differs (reordered or inserted)")
            }
            let recomputed = mac(
                tenant: event.tenant, seq: event.seq, tsMs: event.tsMs, kind: event.kind, actor: event.actor,
                body: event.body, prev: event.prevMAC)
            guard Crypto.constantTimeEqual(recomputed, event.mac) else {
                return AuditFault(tenant: tenant, seq: event.seq, reason: "MAC differs (edited, forged or wrong key)")
            }
            expectedPrev = event.mac
            expectedSeq += 1
        }
        guard let head, let headSeq = head[0].int, let headMac = head[1].blob, let sealed = head[2].blob,
            Crypto.constantTimeEqual(sealed, headMAC(tenant: tenant, seq: headSeq, mac: headMac))
        else { return AuditFault(tenant: tenant, seq: expectedSeq - 1, reason: "chain head missing or forged") }
        if headSeq != expectedSeq - 1 || !Crypto.constantTimeEqual(headMac, expectedPrev) {
            return AuditFault(
                tenant: tenant, seq: expectedSeq,
                reason: "events after seq \(expectedSeq - 1) cut off (head is \(headSeq))")
        }
        return nil
    }

    /// Retention: deletes `tenant`'s events older than `beforeMs`, first appending an anchor event that
    /// carries the last deleted `seq` and MAC, so what remains verifies from it. Returns how many went.
    @discardableResult
    public func prune(tenant: String, beforeMs: Int64, nowMs: Int64) throws -> Int {
        try db.transaction {
            guard
                let last = try db.statement(
                    "SELECT seq, mac FROM audit_events WHERE tenant = ? AND ts_ms < ? AND kind != 'anchor' ORDER BY seq DESC LIMIT 1"
                ).all([.text(tenant), .int(beforeMs)]).first, let seq = last[0].int, let mac = last[1].blob
            else { return 0 }
            try append(
                tenant: tenant, kind: "anchor", actor: "retention",
                body: .object([("pruned_through", .int(Int(seq))), ("last_mac", .string(Crypto.hex(mac)))]),
                atMs: nowMs)
            try db.statement("DELETE FROM audit_events WHERE tenant = ? AND seq <= ?").run([.text(tenant), .int(seq)])
            let deleted = db.changes
            try db.statement(
                """
                UPDATE audit_heads SET bytes = (SELECT COALESCE(SUM(length(body)), 0) FROM audit_events
                WHERE tenant = ?1) WHERE tenant = ?1
                """
            ).run([.text(tenant)])
            return deleted
        }
    }
}
