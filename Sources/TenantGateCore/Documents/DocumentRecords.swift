/// A tenant's collection as listed.
public struct CollectionInfo: Sendable {
    public let id: Int64
    public let name: String
    public let createdMs: Int64
    public let embeddingModel: String?
    public let documents: Int64
    public let chunks: Int64
    public let bytes: Int64

    public init(
        id: Int64, name: String, createdMs: Int64, embeddingModel: String?, documents: Int64, chunks: Int64,
        bytes: Int64
    ) {
        self.id = id
        self.name = name
        self.createdMs = createdMs
        self.embeddingModel = embeddingModel
        self.documents = documents
        self.chunks = chunks
        self.bytes = bytes
    }

    public var json: JSONValue {
        .object([
            ("object", .string("collection")), ("name", .string(name)),
            ("created_at", .int(Int(createdMs / 1000))),
            ("embedding_model", embeddingModel.map { .string($0) } ?? .null),
            ("documents", .int(Int(documents))), ("chunks", .int(Int(chunks))), ("bytes", .int(Int(bytes))),
        ])
    }
}

/// A stored document, without its text.
public struct DocumentInfo: Sendable {
    public let id: String
    public let collection: String
    public let source: String?
    public let format: String
    public let bytes: Int64
    public let chunks: Int64
    public let createdMs: Int64

    public init(
        id: String, collection: String, source: String?, format: String, bytes: Int64, chunks: Int64, createdMs: Int64
    ) {
        self.id = id
        self.collection = collection
        self.source = source
        self.format = format
        self.bytes = bytes
        self.chunks = chunks
        self.createdMs = createdMs
    }

    public func json(text: String? = nil, duplicate: Bool = false) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("object", .string("document")), ("id", .string(id)), ("collection", .string(collection)),
            ("source", source.map { .string($0) } ?? .null), ("format", .string(format)),
            ("bytes", .int(Int(bytes))), ("chunks", .int(Int(chunks))), ("created_at", .int(Int(createdMs / 1000))),
        ]
        if duplicate { members.append(("duplicate", .bool(true))) }
        if let text { members.append(("text", .string(text))) }
        return .object(members)
    }
}

/// A document ready to be written: its text, chunks and (for a collection with an embedding model) one
/// unit vector per chunk.
public struct NewDocument: Sendable {
    public let text: String
    public let source: String?
    public let format: DocumentFormat
    public let chunks: [String]
    public var vectors: [[Float]]?

    public init(text: String, source: String?, format: DocumentFormat, chunks: [String]) {
        self.text = text
        self.source = source
        self.format = format
        self.chunks = chunks
    }

}
