import TenantGateCore
import TenantGateSystem

/// `ResponseCacheReads` over a worker's pooled read connections.
public struct PooledResponseCache: ResponseCacheReads {
    let readers: ConnectionPool

    public init(readers: ConnectionPool) { self.readers = readers }

    public func lookup(tenant: String, key: [UInt8], nowMs: Int64) throws -> CachedAnswer? {
        try readers.with { try CacheStore($0).lookup(tenant: tenant, key: key, nowMs: nowMs) }
    }

    public func generation(tenant: String) throws -> Int64 {
        try readers.with { try CacheStore($0).generation(tenant: tenant) }
    }

    public func vectors(tenant: String, scope: [UInt8], signature: String, limit: Int) throws -> [(
        key: [UInt8], vector: [Float], signature: String
    )] {
        try readers.with {
            try CacheStore($0).vectors(tenant: tenant, scope: scope, signature: signature, limit: limit)
        }
    }
}
