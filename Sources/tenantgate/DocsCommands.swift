import ArgumentParser
import TenantGateCore
import TenantGateStore
import TenantGateSystem

struct DocsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "docs", abstract: "A tenant's document collections: add, list, remove, search (BM25).",
        subcommands: [Add.self, List.self, Remove.self, Search.self, Bench.self])

    /// The tenant's effective settings, or an error if it does not exist.
    /// The document store: collections are kept on SQLite only (FTS5).
    static func documents(_ db: any SQLConnection) throws -> DocumentStore {
        guard let store = DocumentStore.of(db) else {
            throw CLIError("document collections are kept on SQLite only; this deployment runs on PostgreSQL")
        }
        return store
    }

    static func tenant(_ id: String, db: any SQLConnection) throws -> TenantConfig {
        let state = try ConfigStore(db).loadState()
        let config = try GatewayConfig(state: state, keys: [], version: 0)
        guard let tenant = config.tenants[id] else { throw CLIError.unknownTenant(id) }
        return tenant
    }

    /// Runs `body`, reporting a gateway error (bad input, quota, unknown collection) as a CLI error.
    static func checked(_ body: () throws -> Void) throws {
        try reporting {
            do {
                try body()
            } catch let error as GatewayError {
                throw CLIError(error.message)
            }
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a document (a text, Markdown or HTML file) to a collection; prints its id.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "The tenant.") var tenant: String
        @Option(help: "The collection.") var collection: String
        @Option(help: "Where the document came from (default: the file name).") var source: String?
        @Option(help: "text, markdown or html (default: from the file name).") var format: String?
        @Flag(help: "Create the collection if it does not exist (BM25 only).") var create = false
        @Flag var json = false
        @Argument(help: "The file.") var file: String

        func run() throws {
            try DocsCommand.checked {
                let db = try global.open()
                let tenantConfig = try DocsCommand.tenant(tenant, db: db)
                let settings = DocumentSettings(tenantConfig.effective["documents"])
                guard DocumentSettings.isCollectionName(collection) else { throw CLIError("invalid collection name") }
                guard let bytes = Posix.readFileBytes(file, limit: DocumentText.maxBytes) else {
                    throw CLIError("cannot read \(file) (or it exceeds \(DocumentText.maxBytes) bytes)")
                }
                let name = source ?? String(file.split(separator: "/").last ?? "")
                let kind = try DocumentFormat.detect(named: format, filename: file, contentType: nil)
                let text = try DocumentText.prepare(bytes, format: kind)
                let document = NewDocument(
                    text: text, source: name.isEmpty ? nil : name, format: kind,
                    chunks: DocumentChunker.chunks(text, rule: settings.chunking))
                let now = Posix.wallMicros() / 1000
                let (info, duplicate) = try db.transaction {
                    let store = try DocsCommand.documents(db)
                    let found = try store.collection(tenant: tenant, name: collection)
                    if found == nil && create {
                        _ = try store.createCollection(
                            tenant: tenant, name: collection, embeddingModel: nil, settings: settings, nowMs: now)
                    } else if found?.embeddingModel != nil {
                        throw CLIError(
                            "collection '\(collection)' embeds its chunks: add documents through the API (POST /v1/collections/\(collection)/documents)"
                        )
                    }
                    return try store.add(
                        document, tenant: tenant, collection: collection, settings: settings, nowMs: now,
                        storageQuota: tenantConfig.storageQuotaBytes)
                }
                if json {
                    return print(
                        JSONValue.object([
                            ("id", .string(info.id)), ("chunks", .int(Int(info.chunks))),
                            ("duplicate", .bool(duplicate)),
                        ]).jsonString)
                }
                print("\(info.id)\t\(info.chunks) chunk(s)\(duplicate ? "\t(duplicate: already stored)" : "")")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The tenant's collections, or the documents of one (newest first).")
        @OptionGroup var global: GlobalOptions
        @Option(help: "The tenant.") var tenant: String
        @Option(help: "List this collection's documents.") var collection: String?
        @Flag var json = false

        func run() throws {
            try DocsCommand.checked {
                let db = try global.open()
                _ = try DocsCommand.tenant(tenant, db: db)
                let store = try DocsCommand.documents(db)
                if let collection {
                    guard try store.collection(tenant: tenant, name: collection) != nil else {
                        throw CLIError("no collection '\(collection)' for tenant '\(tenant)'")
                    }
                    let rows = try store.documents(tenant: tenant, collection: collection, limit: 10_000)
                    if json { return print(JSONValue.array(rows.map { $0.json() }).jsonString) }
                    print("id\tsource\tformat\tbytes\tchunks")
                    for row in rows {
                        print("\(row.id)\t\(row.source ?? "-")\t\(row.format)\t\(row.bytes)\t\(row.chunks)")
                    }
                } else {
                    let rows = try store.collections(tenant: tenant)
                    if json { return print(JSONValue.array(rows.map(\.json)).jsonString) }
                    print("collection\tdocuments\tchunks\tbytes\tembedding_model")
                    for row in rows {
                        print(
                            "\(row.name)\t\(row.documents)\t\(row.chunks)\t\(row.bytes)\t\(row.embeddingModel ?? "-")")
                    }
                }
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm", abstract: "Remove a document, or (without an id) a whole collection.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "The tenant.") var tenant: String
        @Option(help: "The collection.") var collection: String
        @Argument(help: "The document id (doc_…).") var id: String?
        @Flag var json = false

        func run() throws {
            try DocsCommand.checked {
                let db = try global.open()
                _ = try DocsCommand.tenant(tenant, db: db)
                let removed = try db.transaction {
                    let store = try DocsCommand.documents(db)
                    if let id { return try store.deleteDocument(tenant: tenant, collection: collection, id: id) }
                    return try store.deleteCollection(tenant: tenant, name: collection)
                }
                guard removed else { throw CLIError("not found", notFound: true) }
                if json {
                    return print(
                        JSONValue.object([
                            ("removed", .string(id ?? collection)),
                            ("kind", .string(id == nil ? "collection" : "document")),
                        ]).jsonString)
                }
                print("removed \(id ?? "collection \(collection)")")
            }
        }
    }

    struct Search: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "BM25 search of one collection.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "The tenant.") var tenant: String
        @Option(help: "The collection.") var collection: String
        @Option(help: "Results.") var k = 5
        @Flag var json = false
        @Argument(help: "The query (plain words; no query syntax).") var query: String

        func run() throws {
            try DocsCommand.checked {
                let db = try global.open()
                _ = try DocsCommand.tenant(tenant, db: db)
                let request = try SearchRequest.parse(
                    .object([("query", .string(query)), ("k", .int(k)), ("mode", .string("bm25"))]))
                let store = try DocsCommand.documents(db)
                guard let found = try store.collection(tenant: tenant, name: collection) else {
                    throw CLIError("no collection '\(collection)' for tenant '\(tenant)'")
                }
                let rows = try store.searchBM25(
                    tenant: tenant, collection: found, query: request.query, k: request.k
                ).map(\.1)
                if json { return print(JSONValue.array(rows.map(\.json)).jsonString) }
                for row in rows {
                    let preview = String(row.text.prefix(100)).split(whereSeparator: \.isNewline).joined(separator: " ")
                    print("\(ContextBlock.score(row.score))\t\(row.chunkID)\t\(row.source ?? "-")\t\(preview)")
                }
            }
        }
    }

    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Ingestion rate and BM25 search latency: one tenant with --chunks chunks beside --tenants other tenants' collections, in the database given (use an empty one)."
        )
        @OptionGroup var global: GlobalOptions
        @Option(help: "Chunks in the measured tenant's collection.") var chunks = 100_000
        @Option(help: "Other tenants, each with a collection sharing the vocabulary.") var tenants = 1_000
        @Option(help: "Searches timed.") var queries = 300
        @Flag(help: "Only search, in a database an earlier run filled.") var searchOnly = false

        func run() throws {
            try DocsCommand.checked {
                let db = try global.open()
                var random = BenchText(seed: 42)
                let settings = DocumentSettings()
                let store = try DocsCommand.documents(db)
                let now = Posix.wallMicros() / 1000
                if searchOnly { return try search(store, &random) }
                // The neighbours: 1,000 tenants with a collection of the same name and 20 chunks each.
                try db.transaction {
                    for t in 0..<tenants {
                        let tenant = String(format6(t))
                        _ = try store.createCollection(
                            tenant: tenant, name: "kb", embeddingModel: nil, settings: settings, nowMs: now)
                        for d in 0..<2 {
                            let text = random.document(chunks: 10, seed: t * 2 + d)
                            let document = NewDocument(
                                text: text, source: nil, format: .text, chunks: DocumentChunker.chunks(text))
                            _ = try store.add(
                                document, tenant: tenant, collection: "kb", settings: settings, nowMs: now)
                        }
                    }
                }
                // The measured tenant: documents of ten chunks, one transaction each (as the API writes them).
                try db.transaction {
                    _ = try store.createCollection(
                        tenant: "measured", name: "kb", embeddingModel: nil, settings: settings, nowMs: now)
                }
                var written = 0
                var bytes = 0
                var micros: Int64 = 0
                var n = 0
                while written < chunks {
                    // Only chunking and the write are timed, not making up the text.
                    let text = random.document(chunks: 10, seed: 1_000_000 + n)
                    n += 1
                    let t0 = Posix.monotonicMicros()
                    let document = NewDocument(
                        text: text, source: "doc\(n)", format: .text, chunks: DocumentChunker.chunks(text))
                    _ = try db.transaction {
                        try store.add(document, tenant: "measured", collection: "kb", settings: settings, nowMs: now)
                    }
                    micros += Posix.monotonicMicros() - t0
                    written += document.chunks.count
                    bytes += text.utf8.count
                }
                let seconds = max(Double(micros) / 1_000_000, 0.001)
                print(
                    "ingestion\t\(written) chunks (\(bytes >> 20) MiB) in \(rounded(seconds)) s: \(Int(Double(written) / seconds)) chunks/s"
                )
                try search(store, &random)
            }
        }

        private func search(_ store: DocumentStore, _ random: inout BenchText) throws {
            guard let collection = try store.collection(tenant: "measured", name: "kb") else {
                throw CLIError("no measured collection in this database")
            }
            let written = collection.chunks
            var times: [Double] = []
            for q in 0..<queries {
                let query = random.query(seed: q)
                let t0 = Posix.monotonicMicros()
                _ = try store.searchBM25(tenant: "measured", collection: collection, query: query, k: 5)
                times.append(Double(Posix.monotonicMicros() - t0) / 1000)
            }
            times.sort()
            let p50 = times[times.count / 2]
            let p99 = times[min(times.count - 1, times.count * 99 / 100)]
            print(
                "bm25 search\t\(queries) questions of 3 words (2 like the text, 1 content word), k 5, \(written) chunks beside \(tenants) tenants: p50 \(rounded(p50)) ms, p99 \(rounded(p99)) ms"
            )
        }

        private func format6(_ t: Int) -> String {
            let digits = String(t)
            return "t" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
        }

        private func rounded(_ value: Double) -> Double { (value * 100).rounded() / 100 }
    }
}

/// Deterministic text over a 1,000,000-word vocabulary with Zipf-like word frequencies (a word's rank is
/// log-uniform: a few words are in most chunks, most words in a handful, as in real text), in paragraphs:
/// what a search index meets in real documents, without shipping a corpus.
struct BenchText {
    private var state: UInt64
    static let vocabulary = 1_000_000

    init(seed: UInt64) { state = seed | 1 }

    private mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }

    /// The word of rank `rank`: 3 to 10 letters from a scrambled rank (distinct ranks, distinct words).
    static func word(_ rank: Int) -> String {
        var x = UInt64(rank) &* 0x9E37_79B9_7F4A_7C15
        x ^= x >> 29
        var word = ""
        var n = UInt64(rank) + 1
        // The rank in base 26 makes the word unique; a scrambled prefix makes words look unrelated.
        word.append(Character(Unicode.Scalar(UInt8(97 + x % 26))))
        while n > 0 {
            word.append(Character(Unicode.Scalar(UInt8(97 + n % 26))))
            n /= 26
        }
        while word.count < 3 { word.append("q") }
        return word
    }

    private mutating func word() -> String {
        // Log-uniform by octaves: an octave [2^k, 2^(k+1)) of ranks is as likely as any other.
        let octave = Int(next() % 20)
        let rank = (1 << octave) - 1 + Int(next() % UInt64(1 << octave))
        return BenchText.word(min(BenchText.vocabulary - 1, rank))
    }

    /// About `chunks` default-sized chunks of text in paragraphs of 60–120 words.
    mutating func document(chunks: Int, seed: Int) -> String {
        state ^= UInt64(seed) &* 0x2545_F491_4F6C_DD1D | 1
        var paragraphs: [String] = []
        var bytes = 0
        while bytes < chunks * 3000 {
            let count = 60 + Int(next() % 60)
            let paragraph = (0..<count).map { _ in word() }.joined(separator: " ") + "."
            bytes += paragraph.utf8.count + 2
            paragraphs.append(paragraph)
        }
        return paragraphs.joined(separator: "\n\n")
    }

    /// Three words: two drawn like the text's own (often very common ones, as in "how is the …") and one
    /// content word (a rank past the 1,000 most common), as a question to a knowledge base has.
    mutating func query(seed: Int) -> String {
        state ^= UInt64(seed) &* 0x9E37_79B9 | 1
        var rank = 0
        while rank < 1000 {
            let octave = 10 + Int(next() % 10)
            rank = (1 << octave) - 1 + Int(next() % UInt64(1 << octave))
        }
        return [word(), BenchText.word(min(BenchText.vocabulary - 1, rank)), word()].joined(separator: " ")
    }
}
