import Testing

@testable import TenantGateCore
@testable import TenantGateStore
@testable import TenantGateSystem

@Suite struct DocumentStoreTests {
    let settings = DocumentSettings()

    func add(_ store: DocumentStore, _ db: SQLiteConnection, _ tenant: String, _ name: String, _ text: String) throws
        -> DocumentInfo
    {
        let document = NewDocument(text: text, source: nil, format: .text, chunks: DocumentChunker.chunks(text))
        return try db.transaction {
            try store.add(document, tenant: tenant, collection: name, settings: settings, nowMs: 1).0
        }
    }

    func scores(_ store: DocumentStore, _ tenant: String, _ name: String, _ query: String) throws -> [String] {
        guard let collection = try store.collection(tenant: tenant, name: name) else { return [] }
        return try store.searchBM25(tenant: tenant, collection: collection, query: query, k: 10).map {
            "\($0.1.chunkID)=\($0.1.score)"
        }
    }

    @Test func anotherTenantsDocumentsNeverMoveScores() throws {
        let db = try tempDB()
        let store = DocumentStore(db)
        for tenant in ["a", "b"] {
            _ = try db.transaction {
                try store.createCollection(
                    tenant: tenant, name: "kb", embeddingModel: nil, settings: settings, nowMs: 1)
            }
        }
        for text in ["red apples and green pears", "apples in a pie", "pears only", "nothing relevant here"] {
            _ = try add(store, db, "a", "kb", text)
        }
        let before = try scores(store, "a", "kb", "apples pears")
        #expect(before.count == 3)
        for i in 0..<50 { _ = try add(store, db, "b", "kb", "apples apples pears \(i)") }
        #expect(try scores(store, "a", "kb", "apples pears") == before)
        #expect(try scores(store, "b", "kb", "apples pears").count == 10)
    }

    @Test func duplicatesQuotasAndDeletion() throws {
        let db = try tempDB()
        let store = DocumentStore(db)
        var small = DocumentSettings()
        small.maxDocuments = 2
        small.maxCollections = 1
        _ = try db.transaction {
            try store.createCollection(tenant: "a", name: "kb", embeddingModel: nil, settings: small, nowMs: 1)
        }
        #expect(throws: GatewayError.self) {
            try db.transaction {
                try store.createCollection(tenant: "a", name: "kb", embeddingModel: nil, settings: small, nowMs: 1)
            }
        }
        #expect(throws: GatewayError.self) {
            try db.transaction {
                try store.createCollection(tenant: "a", name: "kb2", embeddingModel: nil, settings: small, nowMs: 1)
            }
        }
        let first = try add(store, db, "a", "kb", "one text")
        let document = NewDocument(text: "one text", source: nil, format: .text, chunks: ["one text"])
        let again = try db.transaction {
            try store.add(document, tenant: "a", collection: "kb", settings: small, nowMs: 2)
        }
        #expect(again.duplicate && again.0.id == first.id)
        _ = try add(store, db, "a", "kb", "two text")
        let third = NewDocument(text: "three", source: nil, format: .text, chunks: ["three"])
        #expect(throws: GatewayError.self) {
            try db.transaction { try store.add(third, tenant: "a", collection: "kb", settings: small, nowMs: 3) }
        }
        // Another tenant cannot delete or read it; its owner can, and the index forgets it.
        #expect(try db.transaction { try store.deleteDocument(tenant: "b", collection: "kb", id: first.id) } == false)
        #expect(try store.document(tenant: "b", collection: "kb", id: first.id) == nil)
        #expect(try db.transaction { try store.deleteDocument(tenant: "a", collection: "kb", id: first.id) })
        #expect(try scores(store, "a", "kb", "one").isEmpty)
        #expect(try store.collection(tenant: "a", name: "kb")?.documents == 1)
        try db.transaction { try store.deleteTenant("a") }
        #expect(try store.collections(tenant: "a").isEmpty)
        #expect(try db.query("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'doc_fts_%'").first?[0].int == 0)
        #expect(try db.query("SELECT COUNT(*) FROM doc_chunks").first?[0].int == 0)
    }

    @Test func largeCollectionsRankOnTheirRarestWords() throws {
        let db = try tempDB()
        let store = DocumentStore(db)
        _ = try db.transaction {
            try store.createCollection(tenant: "a", name: "kb", embeddingModel: nil, settings: settings, nowMs: 1)
        }
        try db.transaction {
            for i in 0..<1600 {
                let text = "common words everywhere \(i % 3 == 0 ? "often" : "") \(i == 7 ? "needle" : "")"
                _ = try store.add(
                    NewDocument(text: text + " \(i)", source: nil, format: .text, chunks: [text + " \(i)"]),
                    tenant: "a", collection: "kb", settings: settings, nowMs: 1)
            }
        }
        let collection = try #require(try store.collection(tenant: "a", name: "kb"))
        #expect(try store.selective(["common", "needle"], in: collection) == ["needle"])
        #expect(try store.selective(["often", "needle"], in: collection) == ["often", "needle"])
        #expect(try store.selective(["common", "words"], in: collection).count == 1)
        #expect(try store.selective(["unknown", "needle"], in: collection) == ["unknown", "needle"])
        let top = try store.searchBM25(tenant: "a", collection: collection, query: "common needle", k: 1)
        #expect(top.first?.1.text.contains("needle") == true)
    }
}
