import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// `/v1/collections…`: a tenant's document collections, their documents and search (flag `documents`).
/// Every lookup is by (tenant, name) or (tenant, id): another tenant's collection answers exactly like
/// one that does not exist.
struct DocumentsEndpoint {
    let context: RequestContext
    let sink: ResponseSink
    var principal: Principal { context.principal }
    var config: GatewayConfig { context.config }
    var request: Request { context.request }
    var trace: TraceContext { context.trace }
    var resources: ThreadResources { context.resources }
    var documents: any DocumentRepository { resources.store.documents }
    var log: AppLog { context.log }

    var tenant: String { principal.tenant.id.rawValue }
    var settings: DocumentSettings { DocumentSettings(principal.tenant.effective["documents"]) }
    var headers: [(String, String)] { [("X-Tenant-ID", tenant)] }

    /// Answers the request; returns the status sent.
    func respond() throws -> Int {
        let subject = request.queryValue("user") ?? principal.key.id
        guard principal.tenant.feature("documents", subject: subject) else {
            throw GatewayError.featureDisabled("documents")
        }
        let parts = request.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst(3).map(String.init)
        switch (request.method, parts.count) {
        case ("GET", 0): return list()
        case ("POST", 0): return try create()
        case (_, 0): throw GatewayError.methodNotAllowed
        default: break
        }
        let name = parts[0]
        guard DocumentSettings.isCollectionName(name) else {
            throw GatewayError.invalidRequest(
                "A collection name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
                param: "name")
        }
        switch (request.method, parts.count > 1 ? parts[1] : nil, parts.count) {
        case ("GET", nil, 1): return try show(name)
        case ("DELETE", nil, 1): return try deleteCollection(name)
        case ("GET", "documents", 2): return try listDocuments(name)
        case ("POST", "documents", 2): return try addDocument(name)
        case ("GET", "documents", 3): return try showDocument(name, parts[2])
        case ("DELETE", "documents", 3): return try deleteDocument(name, parts[2])
        case ("POST", "search", 2): return try search(name)
        case (_, nil, 1), (_, "documents", 2), (_, "documents", 3), (_, "search", 2):
            throw GatewayError.methodNotAllowed
        default: throw GatewayError.notFound
        }
    }

    private func send(_ status: Int, _ body: JSONValue) -> Int {
        sink.json(status, body, headers: headers)
        return status
    }

    private func collection(_ name: String) throws -> CollectionInfo {
        guard
            let found = try documents.collection(tenant: tenant, name: name)
        else { throw GatewayError.missing("Collection '\(name)'") }
        return found
    }

    private func jsonBody() throws -> JSONValue {
        let body = try JSONParser.parseRequestBody(request.body)
        guard case .object = body else { throw GatewayError.invalidRequest("The body must be a JSON object.") }
        return body
    }

    // MARK: collections

    private func list() -> Int {
        let rows = (try? documents.collections(tenant: tenant)) ?? []
        return send(200, .object([("object", .string("list")), ("data", .array(rows.map(\.json)))]))
    }

    private func create() throws -> Int {
        let body = try jsonBody()
        guard let name = body["name"]?.stringValue, DocumentSettings.isCollectionName(name) else {
            throw GatewayError.invalidRequest(
                "'name' must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
                param: "name")
        }
        var model = settings.embeddingModel
        if let value = body["embedding_model"], value != .null {
            guard let asked = value.stringValue else {
                throw GatewayError.invalidRequest("'embedding_model' must be a string.", param: "embedding_model")
            }
            model = asked
        }
        if let model {
            // The tenant must be allowed the model, and its backend must embed.
            guard principal.tenant.models.contains(model), embedder.canEmbed(model) else {
                throw GatewayError.invalidRequest(
                    "'embedding_model' is not an embedding model this tenant may use.", param: "embedding_model")
            }
        }
        let settings = settings
        let created = try documents.createCollection(
            tenant: tenant, name: name, embeddingModel: model, settings: settings, nowMs: Posix.wallMicros() / 1000)
        return send(201, created.json)
    }

    private func show(_ name: String) throws -> Int { send(200, try collection(name).json) }

    private func deleteCollection(_ name: String) throws -> Int {
        let deleted = try documents.deleteCollection(tenant: tenant, name: name)
        guard deleted else { throw GatewayError.missing("Collection '\(name)'") }
        return send(
            200,
            .object([("object", .string("collection.deleted")), ("name", .string(name)), ("deleted", .bool(true))]))
    }

    // MARK: documents

    private func listDocuments(_ name: String) throws -> Int {
        _ = try collection(name)
        let rows = try documents.documents(tenant: tenant, collection: name)
        return send(200, .object([("object", .string("list")), ("data", .array(rows.map { $0.json() }))]))
    }

    private func showDocument(_ name: String, _ id: String) throws -> Int {
        guard DocumentSettings.isDocumentID(id),
            let (info, text) = try documents.document(tenant: tenant, collection: name, id: id)
        else { throw GatewayError.missing("Document '\(DocumentSettings.isDocumentID(id) ? id : "?")'") }
        return send(200, info.json(text: text))
    }

    private func deleteDocument(_ name: String, _ id: String) throws -> Int {
        let deleted =
            try DocumentSettings.isDocumentID(id)
            && documents.deleteDocument(tenant: tenant, collection: name, id: id)
        guard deleted else { throw GatewayError.missing("Document '\(DocumentSettings.isDocumentID(id) ? id : "?")'") }
        return send(
            200, .object([("object", .string("document.deleted")), ("id", .string(id)), ("deleted", .bool(true))]))
    }

    /// The document a body carries: JSON `{text, source, format}`, or multipart with a `file` (or `text`)
    /// part and optional `source` and `format` fields.
    func incoming() throws -> (body: [UInt8], source: String?, format: DocumentFormat) {
        let type = request.headers["content-type"] ?? "application/json"
        if let boundary = Multipart.boundary(contentType: type) {
            let parts = try Multipart.parse(request.body, boundary: boundary)
            func field(_ name: String) throws -> String? {
                guard let part = parts.first(where: { $0.name == name }) else { return nil }
                guard let text = String(validating: part.body, as: UTF8.self) else {
                    throw GatewayError.invalidRequest("'\(name)' is not valid UTF-8.", param: name)
                }
                return text
            }
            guard let file = parts.first(where: { $0.name == "file" }) ?? parts.first(where: { $0.name == "text" })
            else { throw GatewayError.invalidRequest("The multipart body has no 'file' part.", param: "file") }
            let format = try DocumentFormat.detect(
                named: try field("format"), filename: file.filename, contentType: file.contentType)
            return (file.body, try field("source") ?? file.filename, format)
        }
        guard type.lowercased().hasPrefix("application/json") else { throw GatewayError.unsupportedMediaType }
        let body = try jsonBody()
        guard let text = body["text"]?.stringValue else {
            throw GatewayError.invalidRequest("'text' must be a string.", param: "text")
        }
        var source: String?
        if let value = body["source"], value != .null {
            guard let s = value.stringValue else {
                throw GatewayError.invalidRequest("'source' must be a string.", param: "source")
            }
            source = s
        }
        var named: String?
        if let value = body["format"], value != .null {
            guard let s = value.stringValue else {
                throw GatewayError.invalidRequest("'format' must be a string.", param: "format")
            }
            named = s
        }
        return (Array(text.utf8), source, try DocumentFormat.detect(named: named, filename: source, contentType: nil))
    }

    private func addDocument(_ name: String) throws -> Int {
        let collection = try collection(name)
        let (bytes, source, format) = try incoming()
        if let source, !Bounds.isIdentifier(source) {
            throw GatewayError.invalidRequest(
                "'source' must be 1 to \(Bounds.maxUserBytes) bytes without control characters.", param: "source")
        }
        let text = try DocumentText.prepare(bytes, format: format)
        let settings = settings
        var document = NewDocument(
            text: text, source: source, format: format, chunks: DocumentChunker.chunks(text, rule: settings.chunking))
        // The same text again is the stored document: nothing is embedded or written twice.
        if let existing = try documents.duplicate(tenant: tenant, collection: collection, of: document) {
            return send(200, existing.json(duplicate: true))
        }
        if let model = collection.embeddingModel {
            document.vectors = try billed.embed(document.chunks, model: model)
        }
        let (info, duplicate) = try documents.add(
            document, tenant: tenant, collection: name, settings: settings, nowMs: Posix.wallMicros() / 1000,
            storageQuota: principal.tenant.storageQuotaBytes)
        return send(duplicate ? 200 : 201, info.json(duplicate: duplicate))
    }

    // MARK: search

    private var embedder: Embedder { Embedder(context) }

    /// Embeddings held against the tenant's limits and budgets, each an execution of the model.
    private var billed: BilledEmbedder { BilledEmbedder(context) }

    private func search(_ name: String) throws -> Int {
        let query = try SearchRequest.parse(try jsonBody())
        let collection = try collection(name)
        let started = Posix.monotonicMs()
        let chunks = try DocumentSearcher(tenant: tenant, resources: resources, embedder: billed).search(
            query, in: collection)
        let body = JSONValue.object([
            ("object", .string("list")), ("collection", .string(name)), ("mode", .string(query.mode.rawValue)),
            ("data", .array(chunks.map(\.json))), ("search_ms", .int(Int(Posix.monotonicMs() - started))),
        ])
        return send(200, body)
    }
}
