/// How a search ranks chunks.
public enum SearchMode: String, Sendable, CaseIterable {
    /// Full-text relevance (FTS5's BM25 over the collection's own index).
    case bm25
    /// Cosine similarity of embeddings (the collection's embedding model).
    case vector
    /// Both, fused by reciprocal rank.
    case hybrid
}

/// A validated search request.
public struct SearchRequest: Sendable, Equatable {
    public let query: String
    public let k: Int
    public let mode: SearchMode

    public static let maxK = 50
    public static let maxQueryBytes = 4096

    public init(query: String, k: Int = 5, mode: SearchMode = .bm25) {
        self.query = query
        self.k = k
        self.mode = mode
    }

    /// `{query, k, mode}` from a client's JSON body.
    public static func parse(_ body: JSONValue) throws(GatewayError) -> SearchRequest {
        guard case .object = body else { throw .invalidRequest("The body must be a JSON object.") }
        guard let query = body["query"]?.stringValue else {
            throw .invalidRequest("'query' must be a string.", param: "query")
        }
        guard query.utf8.count <= maxQueryBytes else {
            throw .invalidRequest("'query' exceeds \(maxQueryBytes) bytes.", param: "query")
        }
        var k = 5
        if let value = body["k"], value != .null {
            guard let n = value.intValue, (1...maxK).contains(n) else {
                throw .invalidRequest("'k' must be an integer from 1 to \(maxK).", param: "k")
            }
            k = n
        }
        var mode = SearchMode.bm25
        if let value = body["mode"], value != .null {
            guard let name = value.stringValue, let parsed = SearchMode(rawValue: name) else {
                throw .invalidRequest("'mode' must be one of bm25, vector, hybrid.", param: "mode")
            }
            mode = parsed
        }
        return SearchRequest(query: query, k: k, mode: mode)
    }
}

/// A user's query as an FTS5 MATCH expression: its words (letters and digits, as FTS5's `unicode61`
/// tokenizer sees them), each a quoted string token, joined by `OR`. Nothing the user typed is ever read
/// as query syntax: `"`, `*`, `:`, `^`, parentheses, `NEAR`, `AND`, column filters all become plain words
/// or separators.
public enum FullTextQuery {
    /// Most words of a query used.
    public static let maxTerms = 32
    /// Longest word kept (longer ones are cut).
    public static let maxTermBytes = 64

    /// The words of `query`, lower-cased, unique, in order.
    public static func terms(_ query: String) -> [String] {
        var terms: [String] = []
        var seen: Set<String> = []
        var word = ""
        func flush() {
            defer { word = "" }
            guard !word.isEmpty, terms.count < maxTerms else { return }
            var cut = word.lowercased()
            while cut.utf8.count > maxTermBytes { cut.removeLast() }
            if seen.insert(cut).inserted { terms.append(cut) }
        }
        for scalar in query.unicodeScalars {
            if scalar.properties.isAlphabetic || scalar.properties.numericType != nil {
                word.unicodeScalars.append(scalar)
            } else {
                flush()
            }
        }
        flush()
        return terms
    }

    /// The MATCH expression, or a 400 when the query has no words.
    public static func match(_ query: String) throws(GatewayError) -> String {
        let words = terms(query)
        guard !words.isEmpty else {
            throw .invalidRequest("'query' has no words to search for.", param: "query")
        }
        return expression(words)
    }

    /// `terms` (from `terms(_:)`) as quoted string tokens joined by `OR`.
    public static func expression(_ terms: [String]) -> String {
        // A word holds only letters and digits, so no quote can end its string token early.
        terms.map { "\"" + $0 + "\"" }.joined(separator: " OR ")
    }
}

/// Reciprocal rank fusion: each list gives an item 1 / (k + rank), rank from 1; items are ordered by
/// their sum (ties by first appearance).
public enum ReciprocalRank {
    public static let k = 60.0

    public static func fuse<ID: Hashable>(_ lists: [[ID]], limit: Int) -> [(ID, Double)] {
        var scores: [ID: Double] = [:]
        var order: [ID] = []
        for list in lists {
            for (index, id) in list.enumerated() {
                if scores[id] == nil { order.append(id) }
                scores[id, default: 0] += 1 / (k + Double(index + 1))
            }
        }
        let ranked = order.enumerated().sorted { a, b in
            let (sa, sb) = (scores[a.element] ?? 0, scores[b.element] ?? 0)
            return sa != sb ? sa > sb : a.offset < b.offset
        }
        return ranked.prefix(limit).map { ($0.element, scores[$0.element] ?? 0) }
    }
}
