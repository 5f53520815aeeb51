import ArgumentParser
import TenantGateCore
import TenantGateStore
import TenantGateSystem

struct DocsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "docs", abstract: "A tenant's document collections: add, list, remove, search (BM25).",
        subcommands: [Add.self, List.self, Remove.self, Search.self])

    /// The tenant's effective settings, or an error if it does not exist.
    static func tenant(_ id: String, db: SQLiteConnection) throws -> TenantConfig {
        let state = try ConfigStore(db).loadState()
        let config = try GatewayConfig(state: state, keys: [], version: 0)
        guard let tenant = config.tenants[id] else { throw CLIError("unknown tenant '\(id)'") }
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
        @Argument(help: "The file.") var file: String

        func run() throws {
            try DocsCommand.checked {
                let db = try global.open()
                let settings = DocumentSettings(try DocsCommand.tenant(tenant, db: db).effective["documents"])
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
                    let store = DocumentStore(db)
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
                        document, tenant: tenant, collection: collection, settings: settings, nowMs: now)
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
                let store = DocumentStore(db)
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

        func run() throws {
            try DocsCommand.checked {
                let db = try global.open()
                _ = try DocsCommand.tenant(tenant, db: db)
                let removed = try db.transaction {
                    let store = DocumentStore(db)
                    if let id { return try store.deleteDocument(tenant: tenant, collection: collection, id: id) }
                    return try store.deleteCollection(tenant: tenant, name: collection)
                }
                guard removed else { throw CLIError("not found") }
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
                let store = DocumentStore(db)
                guard let found = try store.collection(tenant: tenant, name: collection) else {
                    throw CLIError("no collection '\(collection)' for tenant '\(tenant)'")
                }
                let rows = try store.searchBM25(
                    tenant: tenant, collection: found, match: try FullTextQuery.match(request.query), k: request.k
                ).map(\.1)
                if json { return print(JSONValue.array(rows.map(\.json)).jsonString) }
                for row in rows {
                    let preview = String(row.text.prefix(100)).split(whereSeparator: \.isNewline).joined(separator: " ")
                    print("\(ContextBlock.score(row.score))\t\(row.chunkID)\t\(row.source ?? "-")\t\(preview)")
                }
            }
        }
    }
}
