import TenantGateSystem

/// Key creation on the admin page, POST/redirect/GET: the form's single-use token, and the new key kept
/// for the one page view after the redirect, sealed under a key only the browser's cookie holds, and
/// readable only by the admin session that created it.
extension AdminStore {
    /// A form token already used refuses the form (a refreshed POST creates nothing twice).
    public struct FormAlreadyUsed: Error {}

    /// Takes the form's single-use `token` (inside the caller's transaction); throws `FormAlreadyUsed` when
    /// it was taken before. Tokens older than a day go (a form is not kept open that long).
    public func takeOnce(_ token: String, nowMs: Int64) throws {
        try db.statement("DELETE FROM admin_once WHERE at_ms < ?").run([.int(nowMs - 86_400_000)])
        let fresh = try db.statement(
            "INSERT INTO admin_once(token_hash, at_ms) VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING at_ms"
        ).all([.blob(Crypto.sha256(Array(token.utf8))), .int(nowMs)])
        if fresh.isEmpty { throw FormAlreadyUsed() }
    }

    /// Keeps a new key's secret for its one showing to the admin session `session` (its cookie value);
    /// returns the cookie value that opens it (hex). Kept at most 5 minutes.
    public func keepNewKey(tenant: String, keyID: String, secret: String, session: String, nowMs: Int64) throws
        -> String
    {
        let opener = try Crypto.randomBytes(32)
        try db.statement("DELETE FROM admin_new_keys WHERE at_ms < ?").run([.int(nowMs - 300_000)])
        try db.statement(
            """
            INSERT INTO admin_new_keys(id_hash, session_hash, tenant, key_id, sealed, at_ms)
            VALUES (?, ?, ?, ?, ?, ?)
            """
        ).run([
            .blob(Crypto.sha256(opener)), .blob(Crypto.sha256(Array(session.utf8))), .text(tenant), .text(keyID),
            .blob(try Crypto.seal(Array(secret.utf8), key: opener)), .int(nowMs),
        ])
        return Crypto.hex(opener)
    }

    /// The new key `opener` (the cookie's hex) opens, for `tenant` and the admin session that created it,
    /// shown once: the row goes as it is read (and rows past their 5 minutes go too).
    public func takeNewKey(tenant: String, opener hex: String, session: String, nowMs: Int64) throws -> (
        id: String, secret: String
    )? {
        try db.statement("DELETE FROM admin_new_keys WHERE at_ms < ?").run([.int(nowMs - 300_000)])
        guard hex.utf8.count == 64, let opener = Crypto.unhex(hex) else { return nil }
        guard
            let row = try db.statement(
                """
                DELETE FROM admin_new_keys WHERE id_hash = ? AND session_hash = ? AND tenant = ?
                RETURNING key_id, sealed
                """
            ).all([.blob(Crypto.sha256(opener)), .blob(Crypto.sha256(Array(session.utf8))), .text(tenant)]).first,
            let keyID = row[0].text, let sealed = row[1].blob,
            let secret = try? Crypto.open(sealed, key: opener)
        else { return nil }
        return (keyID, String(decoding: secret, as: UTF8.self))
    }
}
