import TenantGateCore
import TenantGateSystem

/// `DocumentRepository` over a worker's connections: short reads on the pooled readers, the long ones (a
/// collection's vectors, its full-text index) on the scan connections, writes in transactions on the
/// write connection. Collections are searched with SQLite's FTS5 and kept on SQLite only: on a PostgreSQL
/// deployment every call answers 503, saying so.
public struct PooledDocuments: DocumentRepository {
    let readers: ConnectionPool
    let scans: ConnectionPool
    let writer: SharedWriter

    public init(readers: ConnectionPool, scans: ConnectionPool, writer: SharedWriter) {
        self.readers = readers
        self.scans = scans
        self.writer = writer
    }

    private static func store(_ db: any SQLConnection) throws -> DocumentStore {
        guard let store = DocumentStore.of(db) else {
            throw GatewayError.serviceUnavailable(
                "Document collections are kept on SQLite only; this deployment runs on PostgreSQL.")
        }
        return store
    }

    private func read<T>(_ body: (DocumentStore) throws -> T) throws -> T {
        try readers.with { try body(PooledDocuments.store($0)) }
    }

    private func scan<T>(_ body: (DocumentStore) throws -> T) throws -> T {
        try scans.with { try body(PooledDocuments.store($0)) }
    }

    private func write<T>(_ body: (DocumentStore) throws -> T) throws -> T {
        try writer.withTransaction { try body(PooledDocuments.store($0)) }
    }

    public func collection(tenant: String, name: String) throws -> CollectionInfo? {
        try read { try $0.collection(tenant: tenant, name: name) }
    }

    public func collections(tenant: String) throws -> [CollectionInfo] {
        try read { try $0.collections(tenant: tenant) }
    }

    public func createCollection(
        tenant: String, name: String, embeddingModel: String?, settings: DocumentSettings, nowMs: Int64
    ) throws -> CollectionInfo {
        try write {
            try $0.createCollection(
                tenant: tenant, name: name, embeddingModel: embeddingModel, settings: settings, nowMs: nowMs)
        }
    }

    public func deleteCollection(tenant: String, name: String) throws -> Bool {
        try write { try $0.deleteCollection(tenant: tenant, name: name) }
    }

    public func documents(tenant: String, collection: String) throws -> [DocumentInfo] {
        try read { try $0.documents(tenant: tenant, collection: collection) }
    }

    public func document(tenant: String, collection: String, id: String) throws -> (DocumentInfo, String)? {
        try read { try $0.document(tenant: tenant, collection: collection, id: id) }
    }

    public func deleteDocument(tenant: String, collection: String, id: String) throws -> Bool {
        try write { try $0.deleteDocument(tenant: tenant, collection: collection, id: id) }
    }

    public func duplicate(tenant: String, collection: CollectionInfo, of document: NewDocument) throws
        -> DocumentInfo?
    {
        try read { try $0.duplicate(tenant: tenant, collection: collection, hash: document.hash) }
    }

    public func add(
        _ document: NewDocument, tenant: String, collection: String, settings: DocumentSettings, nowMs: Int64,
        storageQuota: Int64?
    ) throws -> (DocumentInfo, duplicate: Bool) {
        try write {
            try $0.add(
                document, tenant: tenant, collection: collection, settings: settings, nowMs: nowMs,
                storageQuota: storageQuota)
        }
    }

    public func forEachVector(tenant: String, collection: CollectionInfo, _ body: (Int64, [Float]) -> Void) throws {
        try scan { try $0.forEachVector(tenant: tenant, collection: collection, body) }
    }

    public func chunks(tenant: String, collection: CollectionInfo, ids: [(Int64, Double)]) throws -> [FoundChunk] {
        try read { try $0.chunks(tenant: tenant, collection: collection, ids: ids) }
    }

    public func searchBM25(tenant: String, collection: CollectionInfo, query: String, k: Int) throws -> [(
        Int64, FoundChunk
    )] {
        try scan { try $0.searchBM25(tenant: tenant, collection: collection, query: query, k: k) }
    }
}
