import TenantGateCore
import TenantGateSystem

/// Searches one of a tenant's collections: BM25 over the collection's own FTS5 index, cosine similarity
/// over its chunk vectors (brute force), or both fused by reciprocal rank.
struct DocumentSearcher {
    let tenant: String
    let resources: ThreadResources
    let embedder: BilledEmbedder

    var documents: any DocumentRepository { resources.store.documents }

    /// Candidates each ranking contributes to a hybrid fusion, per result wanted.
    static let hybridDepth = 4

    func search(_ request: SearchRequest, in collection: CollectionInfo) throws -> [FoundChunk] {
        _ = try FullTextQuery.match(request.query)
        switch request.mode {
        case .bm25:
            return try bm25(request.query, collection, k: request.k).map(\.1)
        case .vector, .hybrid:
            guard let model = collection.embeddingModel else {
                throw GatewayError.invalidRequest(
                    "Collection '\(collection.name)' has no embedding model: only mode bm25 can search it.",
                    param: "mode")
            }
            let vectors = try embedder.embed([request.query], model: model)
            guard let query = vectors.first else {
                throw GatewayError.upstreamError("the embedding model '\(model)' did not answer")
            }
            let depth = request.mode == .vector ? request.k : min(request.k * DocumentSearcher.hybridDepth, 200)
            // Streamed through a running top-k, on a scan connection (never one of the pooled readers).
            var best = NearestK(query: query, k: depth)
            try documents.forEachVector(tenant: tenant, collection: collection) { best.offer($0, $1) }
            let nearest = best.sorted
            if request.mode == .vector {
                return try documents.chunks(tenant: tenant, collection: collection, ids: nearest)
            }
            let lexical = try bm25(request.query, collection, k: depth)
            let fused = ReciprocalRank.fuse([lexical.map(\.0), nearest.map(\.0)], limit: request.k)
            let known = Dictionary(lexical.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
            let missing = fused.filter { known[$0.0] == nil }
            let fetched = try documents.chunks(tenant: tenant, collection: collection, ids: missing)
            var byID: [Int64: FoundChunk] = [:]
            for (id, chunk) in zip(missing.map(\.0), fetched) { byID[id] = chunk }
            let chunks: [FoundChunk] = fused.compactMap { id, score in
                guard let chunk = known[id] ?? byID[id] else { return nil }
                return FoundChunk(
                    documentID: chunk.documentID, source: chunk.source, seq: chunk.seq, text: chunk.text, score: score)
            }
            return chunks
        }
    }

    private func bm25(_ query: String, _ collection: CollectionInfo, k: Int) throws -> [(Int64, FoundChunk)] {
        try documents.searchBM25(tenant: tenant, collection: collection, query: query, k: k)
    }

    /// The `k` vectors most similar to `query` (dot products of unit vectors), best first.
    static func nearest(_ query: [Float], in vectors: [(Int64, [Float])], k: Int) -> [(Int64, Double)] {
        var best = NearestK(query: query, k: k)
        for (id, vector) in vectors { best.offer(id, vector) }
        return best.sorted
    }
}
