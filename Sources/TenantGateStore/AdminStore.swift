import TenantGateCore
import TenantGateSystem

/// A logged-in admin session.
public struct AdminSession: Sendable {
    public let user: String
    /// The session's CSRF token (sent in every state-changing form).
    public let csrf: String
    public let createdMs: Int64
}

/// Admin users, sessions and login throttling; the audit log (`AdminStore+Audit.swift`) and the admin
/// page's read models (`AdminStore+ReadModels.swift`) are its other parts.
public struct AdminStore {
    let db: any SQLConnection

    /// PBKDF2-HMAC-SHA256 rounds for new passwords.
    public static let iterations = 600_000

    /// Wraps a connection.
    public init(_ db: any SQLConnection) { self.db = db }

    // MARK: users

    /// Creates the user or replaces its password (and ends its sessions); the audit entry (by `by`, from
    /// `address`) commits in the same transaction.
    public func setPassword(user: String, password: String, nowMs: Int64, by: String, address: String) throws {
        let salt = try Crypto.randomBytes(16)
        let hash = try Crypto.pbkdf2SHA256(
            password: Array(password.utf8), salt: salt, iterations: AdminStore.iterations)
        try db.transaction {
            try db.statement(
                """
                INSERT INTO admin_users(name, salt, hash, iterations, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                ON CONFLICT(name) DO UPDATE SET salt = excluded.salt, hash = excluded.hash,
                  iterations = excluded.iterations, updated_at = excluded.updated_at
                """
            ).run([.text(user), .blob(salt), .blob(hash), .int(Int64(AdminStore.iterations)), .int(nowMs / 1000)])
            let existed = !(try db.query("SELECT 1 FROM admin_sessions WHERE \"user\" = ?", [.text(user)]).isEmpty)
            try db.statement("DELETE FROM admin_sessions WHERE \"user\" = ?").run([.text(user)])
            try audit(
                user: by, address: address, action: "admin_password", target: user, before: nil,
                after: existed ? "{\"sessions_ended\":true}" : nil, atMs: nowMs)
        }
    }

    /// Whether `password` is `user`'s. An unknown user costs the same PBKDF2 work as a known one.
    public func verify(user: String, password: String) throws -> Bool {
        let row = try db.statement("SELECT salt, hash, iterations FROM admin_users WHERE name = ?").all([.text(user)])
            .first
        let salt = row?[0].blob ?? [UInt8](repeating: 0, count: 16)
        let iterations = Int(row?[2].int ?? Int64(AdminStore.iterations))
        let computed = try Crypto.pbkdf2SHA256(password: Array(password.utf8), salt: salt, iterations: iterations)
        guard let stored = row?[1].blob else { return false }
        return Crypto.constantTimeEqual(computed, stored)
    }

    /// The number of admin users.
    public func userCount() throws -> Int {
        Int(try db.statement("SELECT COUNT(*) FROM admin_users").all().first?.first?.int ?? 0)
    }

    // MARK: login throttling

    /// Whether `address` has logged in as `user` before (a known-good address keeps its way in while
    /// strangers are slowed down on the account).
    public func isKnownAddress(user: String, address: String) throws -> Bool {
        !(try db.statement("SELECT 1 FROM admin_known_addresses WHERE \"user\" = ? AND address = ?")
            .all([.text(user), .text(address)]).isEmpty)
    }

    /// Whether the user has logged in successfully from any address.
    public func hasKnownAddresses(user: String) throws -> Bool {
        !(try db.statement("SELECT 1 FROM admin_known_addresses WHERE \"user\" = ? LIMIT 1").all([.text(user)]).isEmpty)
    }

    /// Remembers a successful login's address for the user.
    public func rememberAddress(user: String, address: String, nowMs: Int64) throws {
        try db.statement(
            """
            INSERT INTO admin_known_addresses(\"user\", address, last_ms) VALUES (?1, ?2, ?3)
            ON CONFLICT(\"user\", address) DO UPDATE SET last_ms = excluded.last_ms
            """
        ).run([.text(user), .text(address), .int(nowMs)])
    }

    /// Failed logins of each subject (`user:…`, `addr:…`) since `sinceMs`.
    public func failures(_ subjects: [String], sinceMs: Int64) throws -> Int {
        var worst = 0
        for subject in subjects {
            let n =
                try db.statement("SELECT COUNT(*) FROM admin_login_failures WHERE subject = ? AND at_ms >= ?")
                .all([.text(subject), .int(sinceMs)]).first?.first?.int ?? 0
            worst = max(worst, Int(n))
        }
        return worst
    }

    /// Records a failed login for each subject (and forgets failures older than a day); `written` runs in
    /// the same transaction (the audit entry).
    public func recordFailure(_ subjects: [String], atMs: Int64, written: (() throws -> Void)? = nil) throws {
        try db.transaction {
            try written?()
            for subject in subjects {
                try db.statement("INSERT INTO admin_login_failures(subject, at_ms) VALUES (?, ?)")
                    .run([.text(subject), .int(atMs)])
            }
            try db.statement("DELETE FROM admin_login_failures WHERE at_ms < ?").run([.int(atMs - 86_400_000)])
        }
    }

    /// Forgets a subject's failures (after a successful login).
    public func clearFailures(_ subject: String) throws {
        try db.transaction {
            try db.statement("DELETE FROM admin_login_failures WHERE subject = ?").run([.text(subject)])
        }
    }

    // MARK: sessions

    /// Starts a session: returns the cookie value (256 random bits; only its SHA-256 is stored) and CSRF token.
    public func createSession(user: String, address: String, nowMs: Int64) throws -> (id: String, csrf: String) {
        let id = Crypto.hex(try Crypto.randomBytes(32))
        let csrf = Crypto.hex(try Crypto.randomBytes(32))
        try db.transaction {
            try db.statement(
                "INSERT INTO admin_sessions(id_hash, \"user\", csrf, address, created_ms, seen_ms) VALUES (?, ?, ?, ?, ?, ?)"
            ).run([
                .blob(Crypto.sha256(Array(id.utf8))), .text(user), .text(csrf), .text(address), .int(nowMs),
                .int(nowMs),
            ])
            try db.statement("DELETE FROM admin_sessions WHERE seen_ms < ?").run([.int(nowMs - 86_400_000)])
        }
        return (id, csrf)
    }

    /// The live session for a cookie value, or nil when unknown, idle too long or too old (then it is deleted).
    public func session(id: String, nowMs: Int64, idleMs: Int64, absoluteMs: Int64) throws -> AdminSession? {
        let key = SQLValue.blob(Crypto.sha256(Array(id.utf8)))
        guard
            let row = try db.statement(
                "SELECT \"user\", csrf, created_ms, seen_ms FROM admin_sessions WHERE id_hash = ?"
            )
            .all([key]).first,
            let user = row[0].text, let csrf = row[1].text, let created = row[2].int, let seen = row[3].int
        else { return nil }
        if nowMs - seen > idleMs || nowMs - created > absoluteMs {
            try db.transaction { try db.statement("DELETE FROM admin_sessions WHERE id_hash = ?").run([key]) }
            return nil
        }
        if nowMs - seen > 15_000 {
            try db.transaction {
                try db.statement("UPDATE admin_sessions SET seen_ms = ? WHERE id_hash = ?").run([.int(nowMs), key])
            }
        }
        return AdminSession(user: user, csrf: csrf, createdMs: created)
    }

    /// Ends a session server-side.
    public func endSession(id: String) throws {
        try db.transaction {
            try db.statement("DELETE FROM admin_sessions WHERE id_hash = ?").run([.blob(Crypto.sha256(Array(id.utf8)))])
        }
    }
}
