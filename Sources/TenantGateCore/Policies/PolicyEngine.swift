/// A tenant's compiled regular expression, matched with bounded work (the worker implements it over PCRE2).
public protocol PatternMatching: Sendable {
    /// Every non-overlapping match of at most `maxSpan` bytes in `text`, in time linear in its length;
    /// throws when a match limit is reached, when there are too many matches, or when `budget` runs out.
    func matches(in text: [UInt8], maxSpan: Int, budget: InspectionBudget) throws -> [Range<Int>]
}

/// What one rule did (or, in shadow mode, would have done). Never holds the matched text.
public struct PolicyTrigger: Sendable, Equatable {
    public let policy: String
    public let phase: PolicyPhase
    public let action: PolicyAction
    public let mode: PolicyMode
    /// The detector family, `pattern` or `keywords`.
    public let detector: String
    /// Bytes matched, over all its matches (0 when the check failed and `on_error: closed` acted).
    public internal(set) var length: Int
    /// The detector failed at run time.
    public let failed: Bool
    /// Matches it stands for: one request records one trigger per rule, phase and outcome, however many
    /// times the rule matched (100,000 matches of a shadow rule are one row of the trail, not 100,000).
    public internal(set) var count = 1

    /// Creates a trigger for one match.
    public init(
        policy: String, phase: PolicyPhase, action: PolicyAction, mode: PolicyMode, detector: String, length: Int,
        failed: Bool
    ) {
        self.policy = policy
        self.phase = phase
        self.action = action
        self.mode = mode
        self.detector = detector
        self.length = length
        self.failed = failed
    }

    /// Whether `other` is the same rule's trigger in the same phase with the same outcome.
    func sameKind(_ other: PolicyTrigger) -> Bool {
        policy == other.policy && phase == other.phase && action == other.action && mode == other.mode
            && failed == other.failed && detector == other.detector
    }

    /// As stored with the execution.
    public var json: JSONValue {
        .object([
            ("policy", .string(policy)), ("phase", .string(phase.rawValue)), ("action", .string(action.rawValue)),
            ("mode", .string(mode.rawValue)), ("detector", .string(detector)), ("length", .int(length)),
            ("failed", .bool(failed)), ("count", .int(count)),
        ])
    }

    /// `name:action` with `(shadow)` when it changed nothing, for logs.
    public var summary: String { "\(policy):\(action.rawValue)\(mode == .shadow ? "(shadow)" : "")" }
}

extension Array where Element == PolicyTrigger {
    /// As stored with the execution: a JSON array.
    public var json: JSONValue { .array(map(\.json)) }

    /// Adds `trigger`, folded into the trigger of the same kind if there is one (counts and lengths add up,
    /// saturating): the list never grows past one entry per rule, phase and outcome.
    public mutating func record(_ trigger: PolicyTrigger) {
        if let i = firstIndex(where: { $0.sameKind(trigger) }) {
            self[i].length = self[i].length.saturatingAdd(trigger.length)
            self[i].count = self[i].count.saturatingAdd(trigger.count)
        } else {
            append(trigger)
        }
    }

    /// Adds each of `triggers` (see `record`).
    public mutating func record(_ triggers: [PolicyTrigger]) {
        for trigger in triggers { record(trigger) }
    }
}

/// The outcome of checking one text.
public struct PolicyVerdict: Sendable {
    /// The text to use (redactions applied); the input when nothing changed.
    public var text: [UInt8]
    /// The rule that blocks it, if one does (enforced).
    public var blockedBy: Policy?
    /// Messages of enforced `inject` rules that triggered.
    public var injected: [String] = []
    public var triggers: [PolicyTrigger] = []
    /// Whether the text changed.
    public var changed = false

    /// A verdict on `text` with nothing found yet.
    public init(text: [UInt8]) { self.text = text }
}

/// Runs a policy set's rules of one phase over text: finds matches on normalized text, maps them back to
/// the original bytes, and applies the actions.
public struct PolicyEngine: Sendable {
    public let set: PolicySet
    let folding: any ScalarFolding
    let patterns: @Sendable (String) -> (any PatternMatching)?
    /// The request's inspection budget: past it, every rule counts as failed (`on_error` decides).
    public let budget: InspectionBudget

    /// An engine for `set`; `patterns` gives the compiled matcher of a tenant pattern (nil: cannot).
    public init(
        set: PolicySet, folding: any ScalarFolding, patterns: @escaping @Sendable (String) -> (any PatternMatching)?,
        budget: InspectionBudget = .unbounded()
    ) {
        self.set = set
        self.folding = folding
        self.patterns = patterns
        self.budget = budget
    }

    /// One rule's match in original bytes.
    struct Finding {
        let rule: Policy
        let range: Range<Int>
        let failed: Bool
        /// A check that failed for a rule whose `on_error` is `open`: recorded, never acted on.
        var failsOpen: Bool { failed && rule.onError == .open }
    }

    /// Matches of `phase`'s rules in `text`, in original byte ranges, by start. Each rule runs only while
    /// the request's inspection budget lasts; past it the rule counts as failed.
    func findings(_ text: [UInt8], phase: PolicyPhase) -> [Finding] {
        let rules = set.rules.filter { $0.applies(to: phase) }
        guard !rules.isEmpty, !text.isEmpty else { return [] }
        // A spent budget reads nothing more: every rule has failed.
        if budget.exhausted { return rules.map { Finding(rule: $0, range: 0..<0, failed: true) } }
        return budget.measure { () -> [Finding] in
            let norm = NormalizedText(text, folding: folding)
            var out: [Finding] = []
            for rule in rules {
                var spans: [Range<Int>] = []
                var failed = budget.exhausted
                if !failed {
                    switch rule.matcher {
                    case .detectors(let ids, _):
                        spans = Detectors.scan(ids, norm.bytes).filter { $0.score >= rule.threshold }.map(\.range)
                    case .keywords(let list):
                        spans = list.matcher.scan(norm.bytes).map(\.range)
                    case .pattern(let pattern):
                        if let matcher = patterns(pattern),
                            let found = try? matcher.matches(
                                in: norm.bytes, maxSpan: PolicySet.maxPatternSpan, budget: budget)
                        {
                            spans = found
                        } else {
                            failed = true
                        }
                    }
                }
                if failed {
                    // Recorded either way; only a closed rule acts on it.
                    out.append(Finding(rule: rule, range: 0..<0, failed: true))
                    continue
                }
                for span in spans where !span.isEmpty {
                    out.append(Finding(rule: rule, range: norm.originalRange(span), failed: false))
                }
            }
            return out.sorted { $0.range.lowerBound < $1.range.lowerBound }
        }
    }

    /// The earliest normalized index of `text` at which a match of some rule of `phase` may be starting but
    /// cannot be recognised yet: the stream guard releases nothing from there on. A tenant's explicit
    /// `policy_hold_back` replaces it with a fixed tail.
    func pendingStart(_ text: [UInt8], phase: PolicyPhase) -> Int {
        if let fixed = set.holdBackOverride { return max(0, text.count - fixed) }
        var start = text.count
        for rule in set.rules where rule.applies(to: phase) {
            switch rule.matcher {
            case .detectors(let ids, _):
                for id in ids { start = min(start, Detectors.pendingStart(id, text)) }
            case .keywords(let list):
                start = min(start, list.matcher.pendingStart(text))
            case .pattern:
                start = min(start, max(0, text.count - PolicySet.maxPatternSpan))
            }
        }
        return start
    }

    /// Checks a whole text (a request message, or a whole answer).
    public func check(_ text: [UInt8], phase: PolicyPhase) -> PolicyVerdict {
        var verdict = PolicyVerdict(text: text)
        budget.admit(bytes: text.count)
        let found = findings(text, phase: phase)
        guard !found.isEmpty else { return verdict }
        var redactions: [(Range<Int>, String)] = []
        for finding in found {
            verdict.triggers.record(trigger(finding, phase))
            guard finding.rule.mode == .enforce, !finding.failsOpen else { continue }
            switch finding.rule.action {
            case .block where verdict.blockedBy == nil: verdict.blockedBy = finding.rule
            case .redact:
                if finding.failed {
                    // A redaction that could not run withholds the whole text.
                    redactions = [(0..<text.count, finding.rule.redaction)]
                } else if redactions.last.map({ $0.0.upperBound <= finding.range.lowerBound }) ?? true {
                    redactions.append((finding.range, finding.rule.redaction))
                }
            case .inject:
                if let message = finding.rule.message, !verdict.injected.contains(message) {
                    verdict.injected.append(message)
                }
            default: break
            }
        }
        if !redactions.isEmpty {
            verdict.text = PolicyEngine.apply(redactions, to: text)
            verdict.changed = true
        }
        return verdict
    }

    func trigger(_ finding: Finding, _ phase: PolicyPhase) -> PolicyTrigger {
        let detector: String
        switch finding.rule.matcher {
        case .detectors(_, let label): detector = label
        case .pattern: detector = "pattern"
        case .keywords: detector = "keywords"
        }
        return PolicyTrigger(
            policy: finding.rule.name, phase: phase, action: finding.rule.action, mode: finding.rule.mode,
            detector: detector, length: finding.range.count, failed: finding.failed)
    }

    /// `text` with each (sorted, non-overlapping) range replaced.
    static func apply(_ redactions: [(Range<Int>, String)], to text: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.count)
        var at = 0
        for (range, replacement) in redactions {
            out += text[at..<range.lowerBound]
            out += Array(replacement.utf8)
            at = range.upperBound
        }
        out += text[at...]
        return out
    }
}
