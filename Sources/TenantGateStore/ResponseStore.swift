import TenantGateCore
import TenantGateSystem

/// Stored Responses API responses. The tenant leads the primary key and every statement names it, so an
/// id of another tenant, or one the gateway never issued, is simply not found. Ids are random
/// (`resp_` + 48 hex digits). Each tenant keeps at most `maxStored` (the oldest go first) for its
/// retention.
public struct ResponseStore {
    private let db: any SQLConnection

    public init(_ db: any SQLConnection) { self.db = db }

    /// Most turns a `previous_response_id` chain is followed back.
    public static let maxChain = 512
    /// Most bytes of conversation a chain may bring back.
    public static let maxChainBytes = 8 << 20

    /// Whether `id` has the shape of an id this gateway issues.
    public static func isID(_ id: String) -> Bool { StoredResponse.isID(id) }

    /// Keeps a response (in its own transaction, or the caller's), dropping the tenant's oldest beyond
    /// `maxStored` (portable SQL: PostgreSQL has no `LIMIT -1`, which made every save fail there).
    /// `storageQuota`: the tenant's `limits.storage_mb` in bytes (refused past it: `storage_quota_exceeded`).
    public func save(_ stored: StoredResponse, tenant: String, maxStored: Int, storageQuota: Int64? = nil) throws {
        let response = stored.response.jsonString
        let items = JSONValue.array(stored.inputItems).jsonString
        let turn = JSONValue.array(stored.turn).jsonString
        let bytes = response.utf8.count + items.utf8.count + turn.utf8.count
        if let storageQuota {
            try StorageUsage(db).check(tenant: tenant, adding: Int64(bytes), quota: storageQuota)
        }
        try db.statement(
            """
            INSERT INTO stored_responses(tenant, id, created_ms, previous, response, input_items, turn, bytes)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            """
        ).run([
            .text(tenant), .text(stored.id), .int(stored.createdMs), stored.previous.map { .text($0) } ?? .null,
            .text(response), .text(items), .text(turn), .int(Int64(bytes)),
        ])
        try db.statement(
            """
            DELETE FROM stored_responses WHERE tenant = ?1 AND (created_ms, id) <= (
              SELECT created_ms, id FROM stored_responses WHERE tenant = ?1
              ORDER BY created_ms DESC, id DESC LIMIT 1 OFFSET ?2)
            """
        ).run([.text(tenant), .int(Int64(max(1, maxStored)))])
    }

    /// The response object, if the tenant has it.
    public func response(tenant: String, id: String) throws -> JSONValue? {
        guard ResponseStore.isID(id),
            let text = try db.statement("SELECT response FROM stored_responses WHERE tenant = ? AND id = ?")
                .all([.text(tenant), .text(id)]).first?[0].text
        else { return nil }
        return try? JSONParser.parse(text)
    }

    /// The request's input items, if the tenant has the response.
    public func inputItems(tenant: String, id: String) throws -> [JSONValue]? {
        guard ResponseStore.isID(id),
            let text = try db.statement("SELECT input_items FROM stored_responses WHERE tenant = ? AND id = ?")
                .all([.text(tenant), .text(id)]).first?[0].text
        else { return nil }
        return (try? JSONParser.parse(text))?.arrayValue ?? []
    }

    /// The whole conversation up to and including response `id` (its chain walked back), as Chat
    /// Completions messages; nil if the tenant has no such response, or the chain is broken or too long.
    public func conversation(tenant: String, id: String) throws -> [JSONValue]? {
        guard ResponseStore.isID(id) else { return nil }
        var turns: [[JSONValue]] = []
        var next: String? = id
        var bytes = 0
        let lookup = try db.statement("SELECT previous, turn, bytes FROM stored_responses WHERE tenant = ? AND id = ?")
        while let current = next {
            guard turns.count < ResponseStore.maxChain,
                let row = try lookup.all([.text(tenant), .text(current)]).first,
                let turn = row[1].text.flatMap({ try? JSONParser.parse($0) })?.arrayValue
            else { return nil }
            bytes += Int(row[2].int ?? 0)
            guard bytes <= ResponseStore.maxChainBytes else { return nil }
            turns.append(turn)
            next = row[0].text
        }
        return turns.reversed().flatMap { $0 }
    }

    /// Deletes a response; false if the tenant has none by that id.
    public func delete(tenant: String, id: String) throws -> Bool {
        guard ResponseStore.isID(id) else { return false }
        try db.statement("DELETE FROM stored_responses WHERE tenant = ? AND id = ?").run([.text(tenant), .text(id)])
        return db.changes > 0
    }

    /// Deletes what is older than each tenant's retention (days; `defaultDays` for the others).
    public func prune(retentionDays: [String: Int], defaultDays: Int, nowMs: Int64) throws -> Int {
        var removed = 0
        let tenants = try db.statement("SELECT DISTINCT tenant FROM stored_responses").all().compactMap { $0[0].text }
        for tenant in tenants {
            let days = Int64(retentionDays[tenant] ?? defaultDays)
            try db.statement("DELETE FROM stored_responses WHERE tenant = ? AND created_ms < ?").run([
                .text(tenant), .int(nowMs - days * 86_400_000),
            ])
            removed += db.changes
        }
        return removed
    }

    /// Deletes every response of a deleted tenant.
    public func deleteTenant(_ tenant: String) throws {
        try db.statement("DELETE FROM stored_responses WHERE tenant = ?").run([.text(tenant)])
    }
}
