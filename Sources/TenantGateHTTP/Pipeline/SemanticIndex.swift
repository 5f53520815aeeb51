import TenantGateCore
import TenantGateSystem

/// A worker's in-memory copy of the semantic cache's vectors, per tenant, scope and signature (a hit needs
/// an equal signature, so only those entries are ever read), scanned by brute force (SIMD dot products).
/// A set is reloaded from the database when the tenant's generation changed, so every worker sees a
/// store, an eviction or a purge at its next lookup. A lookup reads at most `perSignature` vectors and the
/// worker holds at most `capacityBytes` of them: a tenant with a large cache costs no request more.
final class SemanticIndex: Sendable {
    struct Entry: Sendable {
        let key: [UInt8]
        let vector: [SIMD8<Float>]
        let signature: String
    }

    private struct Loaded {
        let generation: Int64
        let entries: [Entry]
        let bytes: Int
    }

    private let sets = Locked<(table: [[UInt8]: Loaded], bytes: Int)>(([:], 0))
    /// Most entries of one signature a lookup compares.
    static let perSignature = 256
    /// Most bytes of vectors a worker holds (beyond it, the sets are dropped and reloaded on use).
    static let capacityBytes = 64 << 20

    /// The entries of `tenant` in `scope` with `signature`, at the database's current generation.
    func entries(tenant: String, scope: [UInt8], signature: String, store: any ResponseCacheReads) throws -> [Entry] {
        let generation = try store.generation(tenant: tenant)
        var id = Array(tenant.utf8) + [0]
        id += scope
        id += [0] + Array(signature.utf8)
        if let known = sets.withLock({ $0.table[id] }), known.generation == generation { return known.entries }
        let loaded = try store.vectors(
            tenant: tenant, scope: scope, signature: signature, limit: SemanticIndex.perSignature
        ).map { Entry(key: $0.key, vector: SemanticIndex.pack($0.vector), signature: $0.signature) }
        let bytes = loaded.reduce(0) { $0 + $1.vector.count * 32 + $1.key.count + $1.signature.utf8.count }
        sets.withLock { held in
            if let old = held.table[id] { held.bytes -= old.bytes }
            if held.bytes + bytes > SemanticIndex.capacityBytes {
                held.table.removeAll()
                held.bytes = 0
            }
            held.table[id] = Loaded(generation: generation, entries: loaded, bytes: bytes)
            held.bytes += bytes
        }
        return loaded
    }

    /// The most similar entry with the same signature, and its cosine.
    static func best(_ query: [SIMD8<Float>], signature: String, in entries: [Entry]) -> (Entry, Float)? {
        var best: (Entry, Float)?
        for entry in entries where entry.signature == signature && entry.vector.count == query.count {
            let s = dot(query, entry.vector)
            if s > (best?.1 ?? -2) { best = (entry, s) }
        }
        return best
    }

    static func dot(_ a: [SIMD8<Float>], _ b: [SIMD8<Float>]) -> Float {
        var sum = SIMD8<Float>(repeating: 0)
        for i in 0..<min(a.count, b.count) { sum += a[i] * b[i] }
        return sum.sum()
    }

    /// A vector in SIMD lanes (zero-padded).
    static func pack(_ values: [Float]) -> [SIMD8<Float>] {
        var out: [SIMD8<Float>] = []
        out.reserveCapacity((values.count + 7) / 8)
        var i = 0
        while i < values.count {
            var lane = SIMD8<Float>(repeating: 0)
            for k in 0..<8 where i + k < values.count { lane[k] = values[i + k] }
            out.append(lane)
            i += 8
        }
        return out
    }

    /// Milliseconds to compare a query with `count` entries of `dimensions` (one core), for the benchmark:
    /// the worst case, where every entry of the scope has the query's signature.
    static func benchmark(count: Int, dimensions: Int) -> Double {
        var state: UInt64 = 42
        func next() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(bitPattern: state >> 11) % 2000 - 1000) / 1000
        }
        let entries = (0..<count).map { i in
            Entry(
                key: [UInt8(i & 0xFF)], vector: pack(SemanticCache.unit((0..<dimensions).map { _ in Double(next()) })),
                signature: "same")
        }
        let query = pack(SemanticCache.unit((0..<dimensions).map { _ in Double(next()) }))
        var runs: [Double] = []
        for _ in 0..<5 {
            let start = Posix.monotonicMicros()
            _ = best(query, signature: "same", in: entries)
            runs.append(Double(Posix.monotonicMicros() - start) / 1000)
        }
        return runs.sorted()[runs.count / 2]
    }
}
