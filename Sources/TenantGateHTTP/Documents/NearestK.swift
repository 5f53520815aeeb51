import TenantGateCore
import TenantGateSystem

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
