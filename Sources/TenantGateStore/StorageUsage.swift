import TenantGateCore
import TenantGateSystem

/// What a tenant stores, in bytes, against its `limits.storage_mb`: its response cache, its stored
/// Responses API responses, its documents (text three times: the document, its chunks and their full-text
/// index; plus the chunks' vectors) and its audit trail. Each part is a figure kept where it changes, so the
/// sum is a few index reads, not a scan.
public struct StorageUsage {
    let db: any SQLConnection

    /// Usage over the database `db`.
    public init(_ db: any SQLConnection) { self.db = db }

    /// The tenant's bytes stored now.
    public func bytes(tenant: String) throws -> Int64 {
        try db.statement(
            """
            SELECT CAST(COALESCE((SELECT bytes FROM cache_usage WHERE tenant = ?1), 0)
                + COALESCE((SELECT SUM(bytes) FROM stored_responses WHERE tenant = ?1), 0)
                + COALESCE((SELECT SUM(bytes * 3 + vector_bytes) FROM doc_collections WHERE tenant = ?1), 0)
                + COALESCE((SELECT bytes FROM audit_heads WHERE tenant = ?1), 0) AS BIGINT)
            """
        ).all([.text(tenant)]).first?.first?.int ?? 0
    }

    /// Refuses `adding` more bytes for `tenant` past `quota` (`429 storage_quota_exceeded`, nothing written).
    public func check(tenant: String, adding: Int64, quota: Int64) throws {
        let used = try bytes(tenant: tenant)
        guard used.saturatingAdd(adding) <= quota else {
            throw GatewayError.storageQuotaExceeded(
                "The tenant stores \(used) bytes; \(adding) more would pass its storage quota of \(quota) bytes (limits.storage_mb)."
            )
        }
    }
}
