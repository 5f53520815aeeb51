/// Mid-stream checking of one channel of an answer (one choice's text): text is released only once no
/// rule can still match it. What may be the beginning of a match is held (each detector says where one may
/// be starting in the tail: a run of digits for a card, a word that could become a key; at most its
/// `longestMatch`), and so is any match still touching the end of what arrived (it may grow). A closed match is redacted before a byte of it is released; a block releases nothing more.
/// Each step scans only what is held plus a little released context: never the whole text again.
public struct StreamGuard: Sendable {
    private let engine: PolicyEngine
    private let phase: PolicyPhase
    /// Original bytes not released yet.
    private var pending: [UInt8] = []
    /// The last released bytes (word boundaries and context words need them).
    private var context: [UInt8] = []
    public private(set) var blockedBy: Policy?
    public private(set) var triggers: [PolicyTrigger] = []
    public private(set) var injected: [String] = []
    /// Bytes held after the last step: the next step waits until half as much again has arrived, so a
    /// long held run is not rescanned for every small delta (each byte is scanned a bounded number of
    /// times, whatever the delta sizes: linear work per stream).
    private var heldAfterStep = 0
    /// Held bytes below which every delta is checked at once (prose is released as it comes).
    static let eagerHold = 64
    /// Bytes of released context kept.
    static let contextBytes = 64
    /// Most bytes held at once: past it, a match that is still growing ends the channel as a block (a
    /// hostile upstream cannot grow a worker's memory by opening a match and never closing it, nor get the
    /// rest of it out by making it long).
    public static let maxHeld = 1 << 20

    /// A guard running `engine`'s rules of `phase` (mid-stream: midstream and egress rules).
    public init(engine: PolicyEngine, phase: PolicyPhase = .midstream) {
        self.engine = engine
        self.phase = phase
    }

    /// Takes the next piece of text; returns what may be released now.
    public mutating func feed(_ delta: [UInt8]) -> [UInt8] {
        guard blockedBy == nil else { return [] }
        pending += delta
        engine.budget.admit(bytes: delta.count)
        // Held text is looked at again only once it has grown by half (or while little is held), so a long
        // held run costs linear work whatever the size of the deltas that grow it.
        guard heldAfterStep < StreamGuard.eagerHold || pending.count - heldAfterStep >= heldAfterStep / 2 else {
            return []
        }
        if pending.count > StreamGuard.maxHeld {
            let text = context + pending
            if let growing = engine.findings(text, phase: phase).first(where: {
                !$0.failed && $0.range.upperBound >= text.count
            }) {
                triggers.record(engine.trigger(growing, phase))
                blockedBy = growing.rule
                pending = []
                return []
            }
        }
        return step(final: false)
    }

    /// The channel ended: checks and releases everything held.
    public mutating func finish() -> [UInt8] {
        guard blockedBy == nil else { return [] }
        return step(final: true)
    }

    /// Bytes held now.
    public var heldCount: Int { pending.count }

    private mutating func step(final: Bool) -> [UInt8] {
        defer { heldAfterStep = pending.count }
        guard !pending.isEmpty else { return [] }
        let base = context.count
        let text = context + pending
        // The release limit, in pending coordinates.
        var limit = pending.count
        if !final {
            let offset = engine.budget.measure { () -> Int in
                let norm = NormalizedText(text, folding: engine.folding)
                let cut = engine.pendingStart(norm.bytes, phase: phase)
                return norm.originalOffset(cut, originalCount: text.count)
            }
            limit = max(0, min(pending.count, offset - base))
        }
        let found = engine.findings(text, phase: phase).filter { $0.failed || $0.range.upperBound > base }
        var closed: [PolicyEngine.Finding] = []
        for finding in found {
            if !final && !finding.failed && finding.range.upperBound >= text.count {
                // Still growing: hold it whole.
                limit = min(limit, max(0, finding.range.lowerBound - base))
            } else {
                closed.append(finding)
            }
        }
        // A closed match is decided: release through it (everything before it is decided too).
        let openLimit =
            found.filter { !final && !$0.failed && $0.range.upperBound >= text.count }
            .map { max(0, $0.range.lowerBound - base) }.min() ?? pending.count
        for finding in closed where !finding.failed {
            limit = max(limit, min(openLimit, finding.range.upperBound - base))
        }
        var redactions: [(Range<Int>, String)] = []
        for finding in closed {
            let start = max(0, finding.range.lowerBound - base)
            let end = max(start, finding.range.upperBound - base)
            guard finding.failed || start < limit else { continue }
            triggers.record(engine.trigger(finding, phase))
            guard finding.rule.mode == .enforce, !finding.failsOpen else { continue }
            switch finding.rule.action {
            case .block:
                blockedBy = finding.rule
                pending = []
                return []
            case .redact:
                if finding.failed {
                    // A redaction that cannot run withholds everything held.
                    redactions = [(0..<limit, finding.rule.redaction)]
                } else if redactions.last.map({ $0.0.upperBound <= start }) ?? true {
                    redactions.append((start..<min(end, limit), finding.rule.redaction))
                }
            case .inject:
                if let message = finding.rule.message, !injected.contains(message) { injected.append(message) }
            case .log, .audit: break
            }
        }
        let released = PolicyEngine.apply(redactions, to: Array(pending[0..<limit]))
        pending.removeFirst(limit)
        context = Array((context + released).suffix(StreamGuard.contextBytes))
        return released
    }
}
