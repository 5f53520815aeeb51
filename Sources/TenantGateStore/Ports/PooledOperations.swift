import TenantGateCore
import TenantGateSystem

/// `OperationsReads` over a worker's pooled read connections.
public struct PooledOperations: OperationsReads {
    let readers: ConnectionPool

    public init(readers: ConnectionPool) { self.readers = readers }

    public func schemaVersion() throws -> Int { try readers.with { try Migrations.version($0) } }

    public var currentSchemaVersion: Int { Migrations.current }

    public func storageBytes(tenant: String) throws -> Int64 {
        try readers.with { try StorageUsage($0).bytes(tenant: tenant) }
    }

    public func renderCounters(into renderer: inout MetricsFormat.Renderer) throws {
        try readers.with { try MetricCounters($0).render(into: &renderer) }
    }

    public func workersAlive(sinceMs: Int64) throws -> (workers: Int64, inFlight: Int64) {
        try readers.with { try WorkerRegistry($0).alive(sinceMs: sinceMs) }
    }
}

extension StorePorts {
    /// The ports over a worker's connections: `readers` for short reads, `scans` for long ones, `writer`
    /// for writes.
    public static func pooled(readers: ConnectionPool, scans: ConnectionPool, writer: SharedWriter) -> StorePorts {
        StorePorts(
            accounting: PooledAccountingReads(readers: readers, writer: writer),
            circuits: PooledCircuits(readers: readers, writer: writer), cache: PooledResponseCache(readers: readers),
            responses: PooledResponses(readers: readers, writer: writer),
            documents: PooledDocuments(readers: readers, scans: scans, writer: writer),
            operations: PooledOperations(readers: readers))
    }
}
