import TenantGateCore
import TenantGateSystem

/// One admin audit entry.
public struct AuditEntry: Sendable {
    public let id: Int64
    public let atMs: Int64
    public let user: String
    public let address: String
    public let action: String
    public let target: String
    public let before: String?
    public let after: String?
}

/// The admin audit log: who changed what, from where; config changes commit with their entry.
extension AdminStore {
    /// Appends an audit entry; call inside the transaction that makes the change.
    public func audit(
        user: String, address: String, action: String, target: String, before: String?, after: String?, atMs: Int64
    ) throws {
        try db.statement(
            "INSERT INTO admin_audit(at_ms, \"user\", address, action, target, before, after) VALUES (?, ?, ?, ?, ?, ?, ?)"
        ).run([
            .int(atMs), .text(user), .text(address), .text(action), .text(target), before.map { .text($0) } ?? .null,
            after.map { .text($0) } ?? .null,
        ])
        // The tamper-evident trail: the tenant's chain when the target is a tenant, else the system's.
        let isTenant =
            try db.statement("SELECT 1 FROM tenants WHERE id = ?").all([.text(target)]).first != nil
            || action.hasPrefix("tenant_")
        var body: [(String, JSONValue)] = [("target", .string(target)), ("address", .string(address))]
        if let before { body.append(("before", (try? JSONParser.parse(before)) ?? .string(before))) }
        if let after { body.append(("after", (try? JSONParser.parse(after)) ?? .string(after))) }
        try AuditChain(db).append(
            tenant: isTenant && TenantID(target) != nil ? target : AuditChain.system, kind: action, actor: user,
            body: .object(body), atMs: atMs)
    }

    /// Audit entries for a configuration change made outside the admin page (the CLI): one per tenant that
    /// changed, and one for the top-level settings, backends and models if they changed. Call inside the
    /// change's transaction (`ConfigStore.apply(…, written:)`).
    public func auditConfigChange(
        user: String, address: String, action: String, before: ConfigState, after: ConfigState, atMs: Int64
    ) throws {
        for id in Set(before.tenants.keys).union(after.tenants.keys).sorted()
        where before.tenants[id] != after.tenants[id] {
            try audit(
                user: user, address: address, action: action, target: id, before: before.tenants[id]?.jsonString,
                after: after.tenants[id]?.jsonString, atMs: atMs)
        }
        func shared(_ state: ConfigState) -> JSONValue {
            var document = state
            document.tenants = [:]
            return document.document().removing("tenants")
        }
        if shared(before) != shared(after) {
            try audit(
                user: user, address: address, action: action, target: "", before: shared(before).jsonString,
                after: shared(after).jsonString, atMs: atMs)
        }
    }

    /// Audit entries, newest first, before the id `beforeID` (keyset pagination).
    public func auditEntries(target: String?, beforeID: Int64?, limit: Int) throws -> [AuditEntry] {
        var sql = "SELECT id, at_ms, \"user\", address, action, target, before, after FROM admin_audit WHERE id < ?"
        var values: [SQLValue] = [.int(beforeID ?? Int64.max)]
        if let target {
            sql += " AND target = ?"
            values.append(.text(target))
        }
        sql += " ORDER BY id DESC LIMIT ?"
        values.append(.int(Int64(limit)))
        return try db.statement(sql).all(values).map { r in
            AuditEntry(
                id: r[0].int ?? 0, atMs: r[1].int ?? 0, user: r[2].text ?? "", address: r[3].text ?? "",
                action: r[4].text ?? "", target: r[5].text ?? "", before: r[6].text, after: r[7].text)
        }
    }

    /// Runs `body` in one write transaction (a config change and its audit entry together).
    public func transaction<T>(_ body: () throws -> T) throws -> T { try db.transaction(body) }
}
