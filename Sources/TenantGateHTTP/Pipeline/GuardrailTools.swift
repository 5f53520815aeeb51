import TenantGateCore
import TenantGateSystem

/// The guardrails outside a request: checking a text against a tenant's rules, and measuring detector speed.
public enum GuardrailTools {
    /// What `tenant`'s rules of `phase` make of `text` (the worker's folding and pattern engine).
    public static func check(_ text: [UInt8], tenant: TenantConfig, phase: PolicyPhase) -> PolicyVerdict {
        PolicyEngines().engine(tenant.policies).check(text, phase: phase)
    }

    /// MB/s of each detector family, and of everything at once including normalization, over `corpusBytes`
    /// (and, last, microseconds per check of one short chat message),
    /// over business prose with one phone number and one e-mail address every 4 KiB, on one core.
    public static func benchmark(corpusBytes: Int = 8 << 20, perDetector: Bool = false) -> [(String, Double)] {
        let sentence = Array(
            ("The quarterly report was sent to the finance team on Tuesday; revenue grew 12% while costs "
                + "stayed flat, and invoice 4417-22 is due on 2026-12-01 for order 88123. ").utf8)
        let contact = Array("Call me at 415-555-2671 or write to ops@example.com. ".utf8)
        var page: [UInt8] = []
        while page.count < 4096 { page += sentence }
        page += contact
        var corpus: [UInt8] = []
        corpus.reserveCapacity(corpusBytes + page.count)
        while corpus.count < corpusBytes { corpus += page }
        func rate(_ body: () -> Void) -> Double {
            let start = Posix.monotonicMicros()
            body()
            let seconds = Double(max(1, Posix.monotonicMicros() - start)) / 1_000_000
            return Double(corpus.count) / 1_048_576 / seconds
        }
        var out: [(String, Double)] = []
        if perDetector {
            for id in DetectorID.allCases { out.append((id.rawValue, rate { _ = Detectors.scan([id], corpus) })) }
        }
        for family in ["pii", "secret", "inject"] {
            let ids = DetectorID.select(family + ".*") ?? []
            out.append((family + ".*", rate { _ = Detectors.scan(ids, corpus) }))
        }
        let every = PolicySet(
            rules: ["pii", "secret", "inject"].map { family in
                Policy(
                    name: family, phase: .egress,
                    matcher: .detectors(DetectorID.select(family + ".*") ?? [], label: family + ".*"), action: .redact)
            }, holdBackOverride: nil)
        let engine = PolicyEngines().engine(every)
        out.append(("all, normalized", rate { _ = engine.check(corpus, phase: .egress) }))
        // A chat message: the per-request cost is per text, not per byte.
        let message = Array("Say hello in five words, and keep it friendly please.".utf8)
        let start = Posix.monotonicMicros()
        for _ in 0..<20_000 { _ = engine.check(message, phase: .egress) }
        out.append(("short message (µs each)", Double(Posix.monotonicMicros() - start) / 20_000))
        return out
    }
}

extension GuardrailTools {
    /// Median milliseconds of one semantic-cache scan over `count` entries of `dimensions`.
    public static func semanticScanMs(count: Int, dimensions: Int = 1536) -> Double {
        SemanticIndex.benchmark(count: count, dimensions: dimensions)
    }
}
