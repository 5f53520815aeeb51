import TenantGateCore
import TenantGateSystem

/// Embeddings the documents API makes for a tenant, held against its limits and budgets like any model
/// call: the worst case (a token per byte) is reserved first, the reported usage settled after (a
/// failed call settles nothing used).
struct BilledEmbedder {
    let embedder: Embedder
    let principal: Principal
    let requestID: String
    let traceID: String
    let log: AppLog

    init(_ context: RequestContext) {
        embedder = Embedder(context)
        principal = context.principal
        requestID = context.requestID
        traceID = context.trace.traceID
        log = context.log
    }

    func embed(_ texts: [String], model name: String) throws -> [[Float]] {
        let resources = embedder.resources
        guard let model = embedder.config.models[name], let backend = embedder.config.backends[model.backend] else {
            throw GatewayError.upstreamError("the embedding model '\(name)' is not in the catalog")
        }
        let bound = texts.reduce(0) { $0.saturatingAdd($1.utf8.count) }
        let need = Reservation(
            promptTokens: bound, completionTokens: 0,
            costNano: Money.cost(Usage(promptTokens: bound, completionTokens: 0), model))
        var hold = Hold()
        try ReserveStage.reserve(
            tenant: principal.tenant, need: need, backend: backend, resources: resources, hold: &hold)
        var record = ExecutionRecord(
            requestID: requestID, atMs: Posix.wallMicros() / 1000, tenant: principal.tenant.id.rawValue, status: 200)
        record.keyID = principal.key.id
        record.model = name
        record.backend = model.backend
        record.traceID = traceID
        record.endpoint = "embeddings"
        let result = embedder.embed(texts, model: name)
        if let result {
            record.usage = Usage(promptTokens: result.tokens, completionTokens: 0)
            record.costNano = result.costNano
        } else {
            record.status = 502
            record.errorCode = "upstream_error"
        }
        if let claim = hold.leaseClaim {
            resources.leases.settle(claim, record: record)
        } else {
            resources.settlements.enqueue(reservation: hold.reservationID, record: record)
        }
        guard let result else { throw GatewayError.upstreamError("the embedding model '\(name)' did not answer") }
        guard result.vectors.allSatisfy({ (1...Bounds.maxEmbeddingDimensions).contains($0.count) }) else {
            throw GatewayError.upstreamError(
                "the embedding model '\(name)' answered vectors of over \(Bounds.maxEmbeddingDimensions) dimensions")
        }
        return result.vectors
    }
}

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

/// The `k` best of the vectors offered one at a time (memory: `k` scores, whatever the count offered).
struct NearestK {
    let query: [Float]
    let k: Int
    private var best: [(Int64, Double)] = []

    init(query: [Float], k: Int) {
        self.query = query
        self.k = max(0, k)
    }

    /// Considers one vector (one of another dimension is skipped).
    mutating func offer(_ id: Int64, _ vector: [Float]) {
        guard k > 0, vector.count == query.count else { return }
        let score = Double(SemanticCache.similarity(query, vector))
        if best.count < k {
            best.append((id, score))
            if best.count == k { best.sort { $0.1 > $1.1 } }
        } else if let last = best.last, score > last.1 {
            best[best.count - 1] = (id, score)
            var i = best.count - 1
            while i > 0 && best[i].1 > best[i - 1].1 {
                best.swapAt(i, i - 1)
                i -= 1
            }
        }
    }

    /// The best first.
    var sorted: [(Int64, Double)] { best.sorted { $0.1 > $1.1 } }
}
