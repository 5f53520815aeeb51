import Testing

@testable import TenantGateCore
@testable import TenantGateStore
@testable import TenantGateSystem

/// The storage quota's figure: what each kind of stored data adds, and takes back when it goes.
@Suite struct StorageUsageTests {
    let settings = DocumentSettings()

    func document(_ text: String, dims: Int? = nil) -> NewDocument {
        var doc = NewDocument(text: text, source: nil, format: .text, chunks: DocumentChunker.chunks(text))
        if let dims { doc.vectors = doc.chunks.map { _ in [Float](repeating: 0.5, count: dims) } }
        return doc
    }

    @Test func documentsCountTheirTextThriceAndTheirVectors() throws {
        let db = try tempDB()
        let store = DocumentStore(db)
        let usage = StorageUsage(db)
        _ = try db.transaction {
            try store.createCollection(tenant: "a", name: "kb", embeddingModel: "e", settings: settings, nowMs: 1)
        }
        let text = String(repeating: "word ", count: 200)
        let doc = document(text, dims: 8)
        let info = try db.transaction {
            try store.add(doc, tenant: "a", collection: "kb", settings: settings, nowMs: 1).0
        }
        let expected = Int64(text.utf8.count) * 3 + Int64(doc.chunks.count * 8 * 4)
        #expect(try usage.bytes(tenant: "a") == expected)
        #expect(try usage.bytes(tenant: "b") == 0)
        // Past the quota nothing is written; the figure stays.
        #expect(throws: GatewayError.self) {
            try db.transaction {
                try store.add(
                    document("another text entirely"), tenant: "a", collection: "kb", settings: settings, nowMs: 2,
                    storageQuota: expected + 10)
            }
        }
        #expect(try usage.bytes(tenant: "a") == expected)
        // Deleting the document takes all of it back.
        _ = try db.transaction { try store.deleteDocument(tenant: "a", collection: "kb", id: info.id) }
        #expect(try usage.bytes(tenant: "a") == 0)
    }

    @Test(arguments: TestEngine.available) func responsesCacheAndAuditCount(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        let usage = StorageUsage(db)
        let responses = ResponseStore(db)
        let stored = StoredResponse(
            id: "resp_" + String(repeating: "a", count: 32), createdMs: 1, previous: nil,
            response: .object([("x", .string(String(repeating: "y", count: 1000)))]), inputItems: [], turn: [])
        try db.transaction { try responses.save(stored, tenant: "a", maxStored: 10) }
        let afterResponse = try usage.bytes(tenant: "a")
        #expect(afterResponse > 1000)
        // A response that would pass the quota is refused.
        let second = StoredResponse(
            id: "resp_" + String(repeating: "b", count: 32), createdMs: 2, previous: nil,
            response: .object([("x", .string(String(repeating: "z", count: 1000)))]), inputItems: [], turn: [])
        #expect(throws: GatewayError.self) {
            try db.transaction {
                try responses.save(second, tenant: "a", maxStored: 10, storageQuota: afterResponse + 100)
            }
        }
        // A cache answer past the quota is not kept; under it, it is.
        let cache = CacheStore(db)
        var write = CacheWrite(
            key: [1, 2, 3], answer: .object([("a", .string(String(repeating: "c", count: 500)))]), tokens: 1,
            costNano: 1, ttlMs: 60_000, maxEntries: 10, maxBytes: 1 << 20)
        write.storageQuota = afterResponse + 100
        try db.transaction { try cache.store(tenant: "a", write, nowMs: 1) }
        #expect(try usage.bytes(tenant: "a") == afterResponse)
        write.storageQuota = nil
        try db.transaction { try cache.store(tenant: "a", write, nowMs: 1) }
        let afterCache = try usage.bytes(tenant: "a")
        #expect(afterCache > afterResponse + 500)
        // A semantic entry counts its question's vector too, and gives it back when it goes.
        var semantic = CacheWrite(
            key: [9], answer: .object([("a", .string("b"))]), tokens: 1, costNano: 1, ttlMs: 60_000, maxEntries: 10,
            maxBytes: 1 << 20)
        semantic.semantic = (scope: [1], vector: [Float](repeating: 0.1, count: 256), signature: "s")
        try db.transaction { try cache.store(tenant: "a", semantic, nowMs: 1) }
        let withVector = try usage.bytes(tenant: "a")
        #expect(withVector - afterCache == Int64(semantic.answer.bytes.count + 256 * 4))
        #expect(try cache.purge(tenant: "a") == 2)
        #expect(try usage.bytes(tenant: "a") == afterResponse)
        try db.transaction { try cache.store(tenant: "a", write, nowMs: 1) }
        // Audit events count their bodies; retention takes them back.
        let chain = try AuditChain(db, masterKey: [UInt8](repeating: 3, count: 32))
        try db.transaction {
            for i in 0..<3 {
                _ = try chain.append(
                    tenant: "a", kind: "request", actor: "t",
                    body: .object([("n", .string(String(repeating: "q", count: 100)))]),
                    atMs: Int64(i))
            }
        }
        let afterAudit = try usage.bytes(tenant: "a")
        #expect(afterAudit >= afterCache + 300)
        // What `append` adds is what the database counts (characters of the body, non-ASCII included).
        try db.transaction {
            _ = try chain.append(
                tenant: "a", kind: "request", actor: "t", body: .object([("n", .string("é日本"))]), atMs: 3)
        }
        let counted = try usage.bytes(tenant: "a")
        try db.execute(
            "UPDATE audit_heads SET bytes = (SELECT COALESCE(SUM(length(body)), 0) FROM audit_events e WHERE e.tenant = audit_heads.tenant)"
        )
        #expect(try usage.bytes(tenant: "a") == counted)
        _ = try chain.prune(tenant: "a", beforeMs: 10, nowMs: 20)
        #expect(try usage.bytes(tenant: "a") < afterAudit)
        #expect(try chain.verify(tenant: "a").isEmpty)
    }
}

@Suite struct ResponseTrimTests {
    @Test(arguments: TestEngine.available) func theNewestMaxStoredAreKept(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        let store = ResponseStore(db)
        for i in 0..<6 {
            let id = "resp_" + String(repeating: String(i), count: 32)
            // Two saves share each millisecond: the id orders them.
            try db.transaction {
                try store.save(
                    StoredResponse(
                        id: id, createdMs: Int64(i / 2), previous: nil, response: .object([]), inputItems: [], turn: []
                    ), tenant: "a", maxStored: 3)
            }
        }
        let kept = try db.query("SELECT id FROM stored_responses WHERE tenant = 'a' ORDER BY id").compactMap {
            $0[0].text?.dropFirst(5).first
        }
        #expect(kept == ["3", "4", "5"])
    }
}
