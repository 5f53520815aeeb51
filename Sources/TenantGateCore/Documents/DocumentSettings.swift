/// A tenant's document limits and chunking (`documents:` in `defaults` or per tenant).
public struct DocumentSettings: Sendable, Equatable {
    /// Most text bytes over all the tenant's collections.
    public var maxBytes: Int64 = 256 << 20
    /// Most documents over all the tenant's collections.
    public var maxDocuments = 100_000
    /// Most collections.
    public var maxCollections = 100
    public var chunking = ChunkingRule.standard
    /// The model new collections embed their chunks with (vector and hybrid search), if any.
    public var embeddingModel: String?

    public init() {}

    public init(_ json: JSONValue?) {
        guard let json else { return }
        if let v = json["max_bytes"]?.intValue { maxBytes = Int64(v) }
        if let v = json["max_documents"]?.intValue { maxDocuments = v }
        if let v = json["max_collections"]?.intValue { maxCollections = v }
        chunking = ChunkingRule(
            chunkTokens: json["chunk_tokens"]?.intValue ?? ChunkingRule.standard.chunkTokens,
            overlapTokens: json["overlap_tokens"]?.intValue ?? ChunkingRule.standard.overlapTokens)
        embeddingModel = json["embedding_model"]?.stringValue
    }

    /// Collection names: a letter or digit, then letters, digits, `.`, `_`, `-`; at most 64 bytes.
    public static func isCollectionName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...64).contains(bytes.count) else { return false }
        func alnum(_ b: UInt8) -> Bool {
            (0x30...0x39).contains(b) || (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b)
        }
        return alnum(bytes[0]) && bytes.allSatisfy { alnum($0) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D }
    }

    /// Document ids: `doc_` and 24 lower-case hex digits.
    public static func isDocumentID(_ id: String) -> Bool {
        let bytes = Array(id.utf8)
        return bytes.count == 28 && id.hasPrefix("doc_")
            && bytes.dropFirst(4).allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}

/// Retrieval-augmented chat: which collection feeds a chat call's context, and how much of it.
public struct RetrievalSettings: Sendable, Equatable {
    public var collection: String
    public var k = 4
    public var maxContextTokens = 2000
    public var mode = SearchMode.bm25
    public var template = RetrievalSettings.defaultTemplate
    /// Whether a whole (non-stream) answer carries `tenantgate.sources` (the header is always sent).
    public var sourcesField = true

    public static let defaultTemplate =
        "Use the numbered sources below when they help answer, and cite them by number, like [1].\n\n{{context}}"

    public init(collection: String) { self.collection = collection }

    /// The tenant's `retrieval:` setting, if it names a collection.
    public init?(tenant json: JSONValue?) {
        guard let json, let collection = json["collection"]?.stringValue else { return nil }
        self.collection = collection
        apply(json)
    }

    mutating func apply(_ json: JSONValue) {
        if let v = json["k"]?.intValue { k = min(max(v, 1), 20) }
        if let v = json["max_context_tokens"]?.intValue { maxContextTokens = min(max(v, 1), 100_000) }
        if let v = json["mode"]?.stringValue, let m = SearchMode(rawValue: v) { mode = m }
        if let v = json["template"]?.stringValue { template = v }
        if let v = json["sources_field"]?.boolValue { sourcesField = v }
    }

    /// The settings for one request: the tenant's, overridden by `metadata.retrieval` (a collection name,
    /// `{collection, k, mode}`, or `"off"` / `false` to skip retrieval for this request).
    public static func resolve(tenant: RetrievalSettings?, request value: JSONValue?) throws(GatewayError)
        -> RetrievalSettings?
    {
        guard let value, value != .null else { return tenant }
        let param = "metadata.retrieval"
        switch value {
        case .bool(false): return nil
        case .string("off"), .string("none"): return nil
        case .string(let name):
            guard DocumentSettings.isCollectionName(name) else {
                throw .invalidRequest("'\(param)' must name a collection.", param: param)
            }
            var settings = tenant ?? RetrievalSettings(collection: name)
            settings.collection = name
            return settings
        case .object:
            let name = value["collection"]?.stringValue ?? tenant?.collection
            guard let name, DocumentSettings.isCollectionName(name) else {
                throw .invalidRequest("'\(param).collection' must name a collection.", param: param)
            }
            if let k = value["k"], k.intValue.map({ (1...20).contains($0) }) != true {
                throw .invalidRequest("'\(param).k' must be an integer from 1 to 20.", param: param)
            }
            if let mode = value["mode"], mode.stringValue.flatMap(SearchMode.init(rawValue:)) == nil {
                throw .invalidRequest("'\(param).mode' must be one of bm25, vector, hybrid.", param: param)
            }
            var settings = tenant ?? RetrievalSettings(collection: name)
            settings.collection = name
            if let k = value["k"]?.intValue { settings.k = k }
            if let mode = value["mode"]?.stringValue.flatMap(SearchMode.init(rawValue:)) { settings.mode = mode }
            return settings
        default:
            throw .invalidRequest(
                "'\(param)' must be a collection name, an object, or \"off\".", param: param)
        }
    }
}

/// One chunk a search found.
public struct FoundChunk: Sendable, Equatable {
    /// `<document id>#<chunk number>`: the id clients see (no database row ids leave the gateway).
    public let chunkID: String
    public let documentID: String
    public let source: String?
    public let seq: Int
    public let text: String
    public let score: Double

    public init(documentID: String, source: String?, seq: Int, text: String, score: Double) {
        self.chunkID = "\(documentID)#\(seq)"
        self.documentID = documentID
        self.source = source
        self.seq = seq
        self.text = text
        self.score = score
    }

    public var json: JSONValue {
        .object([
            ("object", .string("search_result")), ("chunk_id", .string(chunkID)),
            ("document_id", .string(documentID)), ("source", source.map { .string($0) } ?? .null),
            ("chunk", .int(seq)), ("score", .number(ContextBlock.score(score))), ("text", .string(text)),
        ])
    }
}

/// The context block retrieval adds to a chat call's system prompt.
public enum ContextBlock {
    /// The chunks that fit `maxTokens` (in rank order; one that does not fit is skipped, a later shorter
    /// one may still fit) and the block made from the template: each chunk numbered, with its source.
    public static func render(_ chunks: [FoundChunk], settings: RetrievalSettings) -> (String, [FoundChunk])? {
        var used: [FoundChunk] = []
        var parts: [String] = []
        var tokens = 0
        for chunk in chunks {
            let label = "[\(used.count + 1)] (\(chunk.source.map { "source: \($0), " } ?? "")id: \(chunk.chunkID))"
            let part = label + "\n" + chunk.text
            let cost = TokenEstimate.text(part)
            guard tokens + cost <= settings.maxContextTokens else { continue }
            tokens += cost
            used.append(chunk)
            parts.append(part)
        }
        guard !used.isEmpty else { return nil }
        let context = parts.joined(separator: "\n\n")
        let template = settings.template
        if template.contains("{{context}}") {
            return (
                template.split(separator: "{{context}}", omittingEmptySubsequences: false).joined(separator: context),
                used
            )
        }
        return (template + "\n\n" + context, used)
    }

    /// A score with six significant decimals, as JSON number text.
    public static func score(_ value: Double) -> String {
        guard value.isFinite else { return "0" }
        let scaled = (value * 1_000_000).rounded()
        guard abs(scaled) < 9e15 else { return "0" }
        let n = Int64(scaled)
        let sign = n < 0 ? "-" : ""
        let magnitude = n.magnitude
        let fraction = String(magnitude % 1_000_000)
        return sign + String(magnitude / 1_000_000) + "." + String(repeating: "0", count: 6 - fraction.count) + fraction
    }
}
