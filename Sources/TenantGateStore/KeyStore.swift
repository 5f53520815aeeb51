import TenantGateCore
import TenantGateSystem

/// A key as listed (never its secret).
public struct KeyInfo: Sendable {
    public let id: String
    public let tenant: String
    public let name: String
    public let prefix: String
    public let createdAt: Int64
    public let lastUsedAt: Int64?
    public let revokedAt: Int64?
    /// The key's own model allow-list (nil: the tenant's).
    public let models: [String]?
    /// Epoch seconds from which it is refused.
    public let expiresAt: Int64?
    /// After a rotation: until when (epoch seconds) the previous secret still works.
    public let previousUntil: Int64?
}

/// A key's own settings: everything but its secret, tenant and history.
public struct KeySettings: Sendable, Equatable {
    /// The key's model allow-list (nil: the tenant's); it can only narrow the tenant's.
    public var models: [String]?
    /// Epoch seconds from which the key is refused (nil: never).
    public var expiresAt: Int64?

    public init(models: [String]? = nil, expiresAt: Int64? = nil) {
        self.models = models
        self.expiresAt = expiresAt
    }

    var modelsColumn: SQLValue {
        models.map { .text(JSONValue.array($0.map { .string($0) }).jsonString) } ?? .null
    }

    /// The stored list; nil only when none is stored. A list that cannot be read allows nothing (fails
    /// closed), never everything.
    static func models(_ value: SQLValue) -> [String]? {
        guard let text = value.text else { return nil }
        guard let parsed = try? JSONParser.parse(Array(text.utf8)), let list = parsed.arrayValue else { return [] }
        return list.compactMap(\.stringValue)
    }
}

/// Issues, lists and revokes gateway API keys; stores only their SHA-256.
public struct KeyStore {
    private let db: any SQLConnection

    /// Wraps a connection.
    public init(_ db: any SQLConnection) { self.db = db }

    static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz".utf8)

    /// `count` uniformly random base62 characters (rejection sampling, no modulo bias).
    static func randomBase62(_ count: Int) throws -> String {
        var out: [UInt8] = []
        while out.count < count {
            for b in try Crypto.randomBytes(count * 2) where b < 248 && out.count < count {
                out.append(alphabet[Int(b % 62)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Creates a key for `tenant`; returns its id and the secret (shown once, never stored). `written(id)`
    /// runs in the same transaction (the audit entry commits with the key, or neither does).
    /// `written(id)` and `keeping(id, secret)` run in the key's transaction: what they write commits with
    /// the key, or neither does.
    public func create(
        tenant: String, name: String, settings: KeySettings = KeySettings(), written: ((String) throws -> Void)? = nil,
        keeping: ((String, String) throws -> Void)? = nil
    ) throws -> (id: String, secret: String) {
        let secret = try KeyStore.newSecret()
        let id = "key_" + Crypto.hex(try Crypto.randomBytes(8))
        let prefix = String(secret.prefix(APIKeyRecord.prefixLength))
        let now = Posix.wallMicros() / 1_000_000
        try db.transaction {
            guard !(try db.query("SELECT 1 FROM tenants WHERE id = ?", [.text(tenant)]).isEmpty) else {
                throw StoreError.notFound("tenant '\(tenant)'")
            }
            try db.statement(
                """
                INSERT INTO api_keys(id, tenant_id, prefix, hash, name, created_at, models, expires_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """
            ).run([
                .text(id), .text(tenant), .text(prefix), .blob(Crypto.sha256(Array(secret.utf8))), .text(name),
                .int(now), settings.modelsColumn, settings.expiresAt.map { .int($0) } ?? .null,
            ])
            try written?(id)
            try keeping?(id, secret)
        }
        return (id, secret)
    }

    /// A fresh secret: `tg_` and 44 base62 characters (261 bits).
    static func newSecret() throws -> String { "tg_" + (try KeyStore.randomBase62(44)) }

    /// Keys, optionally of one tenant.
    public func list(tenant: String?) throws -> [KeyInfo] {
        let rows: [[SQLValue]]
        let columns = KeyStore.columns
        if let tenant {
            rows = try db.query(
                "SELECT \(columns) FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id", [.text(tenant)])
        } else {
            rows = try db.query("SELECT \(columns) FROM api_keys ORDER BY tenant_id, created_at, id")
        }
        return rows.map(KeyStore.info)
    }

    private static let columns =
        "id, tenant_id, name, prefix, created_at, last_used_at, revoked_at, models, expires_at, prev_until"

    private static func info(_ row: [SQLValue]) -> KeyInfo {
        KeyInfo(
            id: row[0].text ?? "", tenant: row[1].text ?? "", name: row[2].text ?? "", prefix: row[3].text ?? "",
            createdAt: row[4].int ?? 0, lastUsedAt: row[5].int, revokedAt: row[6].int,
            models: KeySettings.models(row[7]), expiresAt: row[8].int, previousUntil: row[9].int)
    }

    /// What each key of `tenant` spent (nano-USD) on `day` (`YYYY-MM-DD`) and in its month, from the
    /// per-key rollups (equal to the execution rows: written in the same transactions).
    public func spend(tenant: String, day: String) throws -> [String: (day: Int64, month: Int64)] {
        let month = String(day.prefix(7))
        var out: [String: (day: Int64, month: Int64)] = [:]
        for row in try db.query(
            """
            SELECT key_id, COALESCE(SUM(CASE WHEN day = ? THEN cost_nano ELSE 0 END), 0), COALESCE(SUM(cost_nano), 0)
            FROM usage_keys WHERE tenant = ? AND day BETWEEN ? AND ? GROUP BY key_id
            """, [.text(day), .text(tenant), .text(month + "-01"), .text(month + "-31")])
        {
            if let id = row[0].text { out[id] = (row[1].int ?? 0, row[2].int ?? 0) }
        }
        return out
    }

    /// The key `id`, if it exists.
    public func key(id: String) throws -> KeyInfo? {
        try db.query("SELECT \(KeyStore.columns) FROM api_keys WHERE id = ?", [.text(id)]).first.map(KeyStore.info)
    }

    /// Changes an active key's settings (`nil` leaves one as it is); false if no such active key. The
    /// change reaches every worker with the next configuration version.
    public func set(
        id: String, name: String? = nil, models: [String]?? = nil, expiresAt: Int64?? = nil,
        written: (() throws -> Void)? = nil
    ) throws -> Bool {
        try db.transaction {
            guard !(try db.query("SELECT 1 FROM api_keys WHERE id = ? AND revoked_at IS NULL", [.text(id)]).isEmpty)
            else { return false }
            if let name {
                try db.statement("UPDATE api_keys SET name = ? WHERE id = ?").run([.text(name), .text(id)])
            }
            if let models {
                try db.statement("UPDATE api_keys SET models = ? WHERE id = ?")
                    .run([KeySettings(models: models).modelsColumn, .text(id)])
            }
            if let expiresAt {
                try db.statement("UPDATE api_keys SET expires_at = ? WHERE id = ?")
                    .run([expiresAt.map { .int($0) } ?? .null, .text(id)])
            }
            try written?()
            return true
        }
    }

    /// Issues a new secret for the active key `id` (same id, settings and history); the previous secret
    /// keeps working for `graceSeconds` (0: not at all). Returns the new secret (shown once), nil if no
    /// such active key. `written` runs in the same transaction.
    public func rotate(id: String, graceSeconds: Int64, written: (() throws -> Void)? = nil) throws -> String? {
        let secret = try KeyStore.newSecret()
        let now = Posix.wallMicros() / 1_000_000
        return try db.transaction { () throws -> String? in
            try db.statement(
                """
                UPDATE api_keys SET prev_prefix = prefix, prev_hash = hash, prev_until = ?, prefix = ?, hash = ?
                WHERE id = ? AND revoked_at IS NULL
                """
            ).run([
                .int(now.saturatingAdd(max(0, graceSeconds))),
                .text(String(secret.prefix(APIKeyRecord.prefixLength))), .blob(Crypto.sha256(Array(secret.utf8))),
                .text(id),
            ])
            guard db.changes > 0 else { return nil }
            try written?()
            return secret
        }
    }

    /// Revokes a key by id; false if no such active key.
    /// Revokes a key by id (of `tenant` only, when given: a tenant's page cannot reach another tenant's
    /// key); false if no such active key.
    public func revoke(id: String, tenant: String? = nil) throws -> Bool {
        if let tenant {
            try db.statement(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND tenant_id = ? AND revoked_at IS NULL"
            ).run([.int(Posix.wallMicros() / 1_000_000), .text(id), .text(tenant)])
        } else {
            try db.statement("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .run([.int(Posix.wallMicros() / 1_000_000), .text(id)])
        }
        return db.changes > 0
    }

    /// Records use of keys (batched by the caller), without bumping the config version.
    public func touch(ids: [String], at time: Int64) throws {
        try db.transaction {
            let stmt = try db.statement("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
            for id in ids { try stmt.run([.int(time), .text(id)]) }
        }
    }
}

/// A store-level refusal (missing row and the like), with a message for the CLI.
public enum StoreError: Error, CustomStringConvertible {
    case notFound(String)
    case invalid(String)

    public var description: String {
        switch self {
        case .notFound(let what): return "\(what) not found"
        case .invalid(let why): return why
        }
    }
}
