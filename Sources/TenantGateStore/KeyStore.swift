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
        tenant: String, name: String, written: ((String) throws -> Void)? = nil,
        keeping: ((String, String) throws -> Void)? = nil
    ) throws -> (id: String, secret: String) {
        // 44 base62 characters carry 261 bits.
        let secret = "tg_" + (try KeyStore.randomBase62(44))
        let id = "key_" + Crypto.hex(try Crypto.randomBytes(8))
        let prefix = String(secret.prefix(APIKeyRecord.prefixLength))
        let now = Posix.wallMicros() / 1_000_000
        try db.transaction {
            guard !(try db.query("SELECT 1 FROM tenants WHERE id = ?", [.text(tenant)]).isEmpty) else {
                throw StoreError.notFound("tenant '\(tenant)'")
            }
            try db.statement(
                "INSERT INTO api_keys(id, tenant_id, prefix, hash, name, created_at) VALUES (?, ?, ?, ?, ?, ?)"
            ).run([
                .text(id), .text(tenant), .text(prefix), .blob(Crypto.sha256(Array(secret.utf8))), .text(name),
                .int(now),
            ])
            try written?(id)
            try keeping?(id, secret)
        }
        return (id, secret)
    }

    /// Keys, optionally of one tenant.
    public func list(tenant: String?) throws -> [KeyInfo] {
        let rows: [[SQLValue]]
        let columns = "id, tenant_id, name, prefix, created_at, last_used_at, revoked_at"
        if let tenant {
            rows = try db.query(
                "SELECT \(columns) FROM api_keys WHERE tenant_id = ? ORDER BY created_at, id", [.text(tenant)])
        } else {
            rows = try db.query("SELECT \(columns) FROM api_keys ORDER BY tenant_id, created_at, id")
        }
        return rows.map {
            KeyInfo(
                id: $0[0].text ?? "", tenant: $0[1].text ?? "", name: $0[2].text ?? "", prefix: $0[3].text ?? "",
                createdAt: $0[4].int ?? 0, lastUsedAt: $0[5].int, revokedAt: $0[6].int)
        }
    }

    /// Revokes a key by id; false if no such active key.
    public func revoke(id: String) throws -> Bool {
        try db.statement("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .run([.int(Posix.wallMicros() / 1_000_000), .text(id)])
        return db.changes > 0
    }

    /// Records use of keys (batched by the caller), without bumping the config version.
    public func touch(ids: [String], at time: Int64) throws {
        let stmt = try db.statement("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
        for id in ids { try stmt.run([.int(time), .text(id)]) }
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
