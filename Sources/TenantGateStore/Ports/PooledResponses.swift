import TenantGateCore
import TenantGateSystem

/// `ResponseRepository` over a worker's pooled read connections and its write connection.
public struct PooledResponses: ResponseRepository {
    let readers: ConnectionPool
    let writer: SharedWriter

    public init(readers: ConnectionPool, writer: SharedWriter) {
        self.readers = readers
        self.writer = writer
    }

    public func save(_ stored: StoredResponse, tenant: String, maxStored: Int, storageQuota: Int64?) throws {
        try writer.withTransaction {
            try ResponseStore($0).save(stored, tenant: tenant, maxStored: maxStored, storageQuota: storageQuota)
        }
    }

    public func response(tenant: String, id: String) throws -> JSONValue? {
        try readers.with { try ResponseStore($0).response(tenant: tenant, id: id) }
    }

    public func inputItems(tenant: String, id: String) throws -> [JSONValue]? {
        try readers.with { try ResponseStore($0).inputItems(tenant: tenant, id: id) }
    }

    public func conversation(tenant: String, id: String) throws -> [JSONValue]? {
        try readers.with { try ResponseStore($0).conversation(tenant: tenant, id: id) }
    }

    public func delete(tenant: String, id: String) throws -> Bool {
        try writer.withTransaction { try ResponseStore($0).delete(tenant: tenant, id: id) }
    }
}
