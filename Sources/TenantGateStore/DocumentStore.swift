import TenantGateCore
import TenantGateSystem

extension NewDocument {
    /// The content hash documents are de-duplicated by (per collection).
    public var hash: [UInt8] { Crypto.sha256(Array(text.utf8)) }
}

/// Per-tenant document collections in SQLite. Every statement names the tenant, and every row carries it
/// under a composite foreign key to its collection; each collection's full-text index is its own FTS5
/// table, named from the collection's integer id only, so BM25 statistics (document counts, term
/// frequencies) never mix tenants or collections. Writes run inside the caller's transaction: one
/// document is added or removed whole.
public struct DocumentStore {
    private let db: SQLiteConnection

    public init(_ db: SQLiteConnection) { self.db = db }

    /// The document store over `db`, nil on PostgreSQL: collections are searched with SQLite's FTS5 and
    /// kept on SQLite only.
    public static func of(_ db: any SQLConnection) -> DocumentStore? {
        (db as? SQLiteConnection).map(DocumentStore.init)
    }

    static func index(_ id: Int64) -> String { "doc_fts_\(id)" }

    // MARK: collections

    public func createCollection(
        tenant: String, name: String, embeddingModel: String?, settings: DocumentSettings, nowMs: Int64
    ) throws -> CollectionInfo {
        if try collection(tenant: tenant, name: name) != nil {
            throw GatewayError.conflict("Collection '\(name)' already exists.")
        }
        let count =
            try db.statement("SELECT COUNT(*) FROM doc_collections WHERE tenant = ?").all([.text(tenant)])
            .first?[0].int ?? 0
        guard count < Int64(settings.maxCollections) else {
            throw GatewayError.quotaExceeded("The tenant already has \(count) collections (documents.max_collections).")
        }
        let id =
            try db.statement(
                "INSERT INTO doc_collections(tenant, name, created_ms, embedding_model) VALUES (?, ?, ?, ?) RETURNING id"
            ).all([.text(tenant), .text(name), .int(nowMs), embeddingModel.map { .text($0) } ?? .null]).first?[0].int
            ?? 0
        let index = DocumentStore.index(id)
        try db.execute(
            """
            CREATE VIRTUAL TABLE \(index) USING fts5(
                text, content='doc_chunks', content_rowid='id', tokenize='unicode61 remove_diacritics 2')
            """)
        return CollectionInfo(
            id: id, name: name, createdMs: nowMs, embeddingModel: embeddingModel, documents: 0, chunks: 0, bytes: 0)
    }

    private static let collectionColumns = "id, name, created_ms, embedding_model, documents, chunks, bytes"

    private static func collectionInfo(_ row: [SQLValue]) -> CollectionInfo {
        CollectionInfo(
            id: row[0].int ?? 0, name: row[1].text ?? "", createdMs: row[2].int ?? 0, embeddingModel: row[3].text,
            documents: row[4].int ?? 0, chunks: row[5].int ?? 0, bytes: row[6].int ?? 0)
    }

    public func collections(tenant: String) throws -> [CollectionInfo] {
        try db.statement(
            "SELECT \(DocumentStore.collectionColumns) FROM doc_collections WHERE tenant = ? ORDER BY name"
        ).all([.text(tenant)]).map(DocumentStore.collectionInfo)
    }

    public func collection(tenant: String, name: String) throws -> CollectionInfo? {
        try db.statement(
            "SELECT \(DocumentStore.collectionColumns) FROM doc_collections WHERE tenant = ? AND name = ?"
        ).all([.text(tenant), .text(name)]).first.map(DocumentStore.collectionInfo)
    }

    /// Removes a collection with its documents, chunks and index; false if the tenant has none by `name`.
    public func deleteCollection(tenant: String, name: String) throws -> Bool {
        guard let found = try collection(tenant: tenant, name: name) else { return false }
        try db.execute("DROP TABLE IF EXISTS \(DocumentStore.index(found.id))")
        try db.statement("DELETE FROM doc_collections WHERE tenant = ? AND id = ?").run([
            .text(tenant), .int(found.id),
        ])
        return true
    }

    /// Removes every collection of a deleted tenant.
    public func deleteTenant(_ tenant: String) throws {
        for found in try collections(tenant: tenant) {
            _ = try deleteCollection(tenant: tenant, name: found.name)
        }
    }

    // MARK: documents

    private static let documentColumns = "d.uid, c.name, d.source, d.format, d.bytes, d.chunks, d.created_ms"

    private static func documentInfo(_ row: [SQLValue]) -> DocumentInfo {
        DocumentInfo(
            id: row[0].text ?? "", collection: row[1].text ?? "", source: row[2].text, format: row[3].text ?? "text",
            bytes: row[4].int ?? 0, chunks: row[5].int ?? 0, createdMs: row[6].int ?? 0)
    }

    /// The document of the collection with the same text, if there is one.
    public func duplicate(tenant: String, collection: CollectionInfo, hash: [UInt8]) throws -> DocumentInfo? {
        try db.statement(
            """
            SELECT \(DocumentStore.documentColumns) FROM doc_documents d JOIN doc_collections c ON c.id = d.collection
            WHERE d.tenant = ? AND d.collection = ? AND d.hash = ?
            """
        ).all([.text(tenant), .int(collection.id), .blob(hash)]).first.map(DocumentStore.documentInfo)
    }

    /// Adds a document (in the caller's transaction), or returns the collection's copy of the same text.
    /// `storageQuota`: the tenant's `limits.storage_mb` in bytes (its text counts three times: document,
    /// chunks and full-text index; its vectors once).
    public func add(
        _ document: NewDocument, tenant: String, collection name: String, settings: DocumentSettings, nowMs: Int64,
        storageQuota: Int64? = nil
    ) throws -> (DocumentInfo, duplicate: Bool) {
        guard let collection = try collection(tenant: tenant, name: name) else {
            throw GatewayError.missing("Collection '\(name)'")
        }
        let hash = document.hash
        if let existing = try duplicate(tenant: tenant, collection: collection, hash: hash) { return (existing, true) }
        let bytes = Int64(document.text.utf8.count)
        let totals =
            try db.statement(
                "SELECT COALESCE(SUM(bytes), 0), COALESCE(SUM(documents), 0) FROM doc_collections WHERE tenant = ?"
            ).all([.text(tenant)]).first ?? []
        let usedBytes = totals.first?.int ?? 0
        let usedDocuments = totals.dropFirst().first?.int ?? 0
        guard usedDocuments < Int64(settings.maxDocuments) else {
            throw GatewayError.quotaExceeded(
                "The tenant already has \(usedDocuments) documents (documents.max_documents is \(settings.maxDocuments))."
            )
        }
        guard usedBytes.saturatingAdd(bytes) <= settings.maxBytes else {
            throw GatewayError.quotaExceeded(
                "The document (\(bytes) bytes) would take the tenant's documents past documents.max_bytes (\(settings.maxBytes))."
            )
        }
        // Only the vectors of stored chunks (one per chunk) are kept.
        let vectorBytes = Int64(
            (document.vectors ?? []).prefix(document.chunks.count).reduce(0) {
                $0.saturatingAdd($1.count.saturatingMultiply(4))
            })
        if let storageQuota {
            try StorageUsage(db).check(
                tenant: tenant, adding: bytes.saturatingMultiply(3).saturatingAdd(vectorBytes), quota: storageQuota)
        }
        let uid = "doc_" + Crypto.hex(try Crypto.randomBytes(12))
        let documentID =
            try db.statement(
                """
                INSERT INTO doc_documents(tenant, collection, uid, source, format, hash, bytes, chunks, created_ms, text)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id
                """
            ).all([
                .text(tenant), .int(collection.id), .text(uid), document.source.map { .text($0) } ?? .null,
                .text(document.format.rawValue), .blob(hash), .int(bytes), .int(Int64(document.chunks.count)),
                .int(nowMs), .text(document.text),
            ]).first?[0].int ?? 0
        let insertChunk = try db.statement(
            """
            INSERT INTO doc_chunks(tenant, collection, document, seq, text, tokens, vector)
            VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id
            """)
        let index = try db.statement(
            "INSERT INTO \(DocumentStore.index(collection.id))(rowid, text) VALUES (?, ?)")
        for (seq, text) in document.chunks.enumerated() {
            let vector = document.vectors.flatMap { seq < $0.count ? $0[seq] : nil }
            let rowID =
                try insertChunk.all([
                    .text(tenant), .int(collection.id), .int(documentID), .int(Int64(seq)), .text(text),
                    .int(Int64(TokenEstimate.text(text))), vector.map { .blob(CacheStore.bytes($0)) } ?? .null,
                ]).first?[0].int ?? 0
            try index.run([.int(rowID), .text(text)])
        }
        try db.statement(
            """
            UPDATE doc_collections SET documents = documents + 1, chunks = chunks + ?, bytes = bytes + ?,
                vector_bytes = vector_bytes + ? WHERE id = ?
            """
        ).run([.int(Int64(document.chunks.count)), .int(bytes), .int(vectorBytes), .int(collection.id)])
        let info = DocumentInfo(
            id: uid, collection: name, source: document.source, format: document.format.rawValue, bytes: bytes,
            chunks: Int64(document.chunks.count), createdMs: nowMs)
        return (info, false)
    }

    /// A document with its text.
    public func document(tenant: String, collection name: String, id: String) throws -> (DocumentInfo, String)? {
        try db.statement(
            """
            SELECT \(DocumentStore.documentColumns), d.text FROM doc_documents d
            JOIN doc_collections c ON c.id = d.collection AND c.tenant = d.tenant
            WHERE d.tenant = ? AND c.name = ? AND d.uid = ?
            """
        ).all([.text(tenant), .text(name), .text(id)]).first.map { (DocumentStore.documentInfo($0), $0[7].text ?? "") }
    }

    /// The newest documents of a collection (at most `limit`).
    public func documents(tenant: String, collection name: String, limit: Int = 100) throws -> [DocumentInfo] {
        try db.statement(
            """
            SELECT \(DocumentStore.documentColumns) FROM doc_documents d
            JOIN doc_collections c ON c.id = d.collection AND c.tenant = d.tenant
            WHERE d.tenant = ? AND c.name = ? ORDER BY d.id DESC LIMIT ?
            """
        ).all([.text(tenant), .text(name), .int(Int64(limit))]).map(DocumentStore.documentInfo)
    }

    /// Removes a document, its chunks and their index entries; false if the collection has no such one.
    public func deleteDocument(tenant: String, collection name: String, id: String) throws -> Bool {
        guard let collection = try collection(tenant: tenant, name: name),
            let row = try db.statement(
                "SELECT id, bytes, chunks FROM doc_documents WHERE tenant = ? AND collection = ? AND uid = ?"
            ).all([.text(tenant), .int(collection.id), .text(id)]).first,
            let documentID = row[0].int
        else { return false }
        let index = DocumentStore.index(collection.id)
        // External-content FTS5: an entry is removed by giving the text it was indexed with.
        try db.statement(
            "INSERT INTO \(index)(\(index), rowid, text) SELECT 'delete', id, text FROM doc_chunks WHERE document = ?"
        ).run([.int(documentID)])
        let vectorBytes =
            try db.statement("SELECT COALESCE(SUM(length(vector)), 0) FROM doc_chunks WHERE document = ?")
            .all([.int(documentID)]).first?.first?.int ?? 0
        try db.statement("DELETE FROM doc_documents WHERE id = ?").run([.int(documentID)])
        try db.statement(
            """
            UPDATE doc_collections SET documents = documents - 1, chunks = chunks - ?, bytes = bytes - ?,
                vector_bytes = vector_bytes - ? WHERE id = ?
            """
        ).run([row[2], row[1], .int(vectorBytes), .int(collection.id)])
        return true
    }

    // MARK: search

    /// Rows a search may score: FTS5 computes BM25 for every chunk that holds any word of the query
    /// (about 3 µs each here, and a count of each word's chunks first), so a query is ranked on its rarest
    /// words, rarest first, while together they occur in at most this many chunks (always at least its
    /// rarest word).
    public static let scoredRowBudget = 1000

    /// The words of `terms` a search ranks by: all of them when they occur in `scoredRowBudget` chunks or
    /// fewer together (every query of a small collection); else the rarest ones within the budget. The
    /// words left out are the collection's common ones, which BM25 weighs least (a word in 2 % of 100,000
    /// chunks has idf ln 49 ≈ 3.9, one in 20 chunks about 8.5). Counting stops at the budget, so a common
    /// word costs a bounded probe, not a pass over its chunks.
    public func selective(_ terms: [String], in collection: CollectionInfo) throws -> [String] {
        let budget = DocumentStore.scoredRowBudget
        guard terms.count > 1, collection.chunks > Int64(budget) else { return terms }
        let index = DocumentStore.index(collection.id)
        let probe = try db.statement(
            "SELECT COUNT(*) FROM (SELECT 1 FROM \(index) WHERE \(index) MATCH ? LIMIT ?)")
        func count(_ term: String, cap: Int) throws -> Int {
            Int(try probe.all([.text(FullTextQuery.expression([term])), .int(Int64(cap))]).first?[0].int ?? 0)
        }
        var counted = try terms.map { ($0, try count($0, cap: budget + 1)) }
        if counted.reduce(0, { $0 + $1.1 }) <= budget { return terms }
        if counted.allSatisfy({ $0.1 > budget }) {
            // Only common words: the rarest one, found with a wider probe.
            counted = try terms.map { ($0, try count($0, cap: 20 * budget)) }
        }
        var kept: [String] = []
        var rows = 0
        for (term, rowsOfTerm) in counted.sorted(by: { $0.1 < $1.1 }) {
            if !kept.isEmpty && rows + rowsOfTerm > budget { break }
            kept.append(term)
            rows += rowsOfTerm
        }
        return kept
    }

    /// The `k` chunks of the collection best ranked by BM25 for the words of `query` (each a quoted FTS5
    /// string token: never query syntax), with their row ids; score = −bm25, higher is better. A query
    /// without words is a 400.
    public func searchBM25(tenant: String, collection: CollectionInfo, query: String, k: Int) throws -> [(
        Int64, FoundChunk
    )] {
        let words = FullTextQuery.terms(query)
        guard !words.isEmpty else { _ = try FullTextQuery.match(query); return [] }
        let match = FullTextQuery.expression(try selective(words, in: collection))
        let index = DocumentStore.index(collection.id)
        return try db.statement(
            """
            SELECT ch.id, d.uid, d.source, ch.seq, ch.text, f.score FROM
              (SELECT rowid, -rank AS score FROM \(index) WHERE \(index) MATCH ? ORDER BY rank LIMIT ?) f
            JOIN doc_chunks ch ON ch.id = f.rowid
            JOIN doc_documents d ON d.id = ch.document
            WHERE ch.tenant = ? AND ch.collection = ?
            ORDER BY f.score DESC
            """
        ).all([.text(match), .int(Int64(k)), .text(tenant), .int(collection.id)]).map {
            (
                $0[0].int ?? 0,
                FoundChunk(
                    documentID: $0[1].text ?? "", source: $0[2].text, seq: Int($0[3].int ?? 0), text: $0[4].text ?? "",
                    score: $0[5].double ?? 0)
            )
        }
    }

    /// Each chunk vector of the collection in turn: (chunk row id, unit vector). One vector is in memory at
    /// a time, however large the collection.
    public func forEachVector(tenant: String, collection: CollectionInfo, _ body: (Int64, [Float]) -> Void) throws {
        var raw: [UInt8] = []
        try db.statement(
            "SELECT id, vector FROM doc_chunks WHERE tenant = ? AND collection = ? AND vector IS NOT NULL"
        ).forEach([.text(tenant), .int(collection.id)]) { row in
            raw.removeAll(keepingCapacity: true)
            row.appendBlob(1, to: &raw)
            body(row.int(0), CacheStore.floats(raw))
        }
    }

    /// The chunks of the collection with these row ids, each with `scores[id]`, in the order given.
    public func chunks(tenant: String, collection: CollectionInfo, ids: [(Int64, Double)]) throws -> [FoundChunk] {
        let statement = try db.statement(
            """
            SELECT d.uid, d.source, ch.seq, ch.text FROM doc_chunks ch JOIN doc_documents d ON d.id = ch.document
            WHERE ch.id = ? AND ch.tenant = ? AND ch.collection = ?
            """)
        return try ids.compactMap { id, score in
            try statement.all([.int(id), .text(tenant), .int(collection.id)]).first.map {
                FoundChunk(
                    documentID: $0[0].text ?? "", source: $0[1].text, seq: Int($0[2].int ?? 0), text: $0[3].text ?? "",
                    score: score)
            }
        }
    }

    /// Totals of a tenant's documents (admin page).
    public func totals(tenant: String) throws -> (collections: Int64, documents: Int64, chunks: Int64, bytes: Int64) {
        let row =
            try db.statement(
                """
                SELECT COUNT(*), COALESCE(SUM(documents), 0), COALESCE(SUM(chunks), 0), COALESCE(SUM(bytes), 0)
                FROM doc_collections WHERE tenant = ?
                """
            ).all([.text(tenant)]).first ?? []
        return (row[safe: 0]?.int ?? 0, row[safe: 1]?.int ?? 0, row[safe: 2]?.int ?? 0, row[safe: 3]?.int ?? 0)
    }
}

extension Array {
    fileprivate subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}
