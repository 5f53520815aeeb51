/// Where a policy looks: the request on its way in, or the answer on its way out.
public enum PolicyPhase: String, Sendable, CaseIterable {
    /// Every message of the request (text, tool results, tool-call arguments), before anything is reserved.
    case ingress
    /// Streamed answers only, as they flow (with hold-back).
    case midstream
    /// Every answer: whole answers, and streamed ones as they flow.
    case egress
}

/// What a policy does when it triggers.
public enum PolicyAction: String, Sendable, CaseIterable {
    /// Refuses the request (ingress: 403 `policy_blocked`) or ends the answer (`content_filter`).
    case block
    /// Replaces each matched span before any byte of it leaves.
    case redact
    /// Records the trigger only.
    case log
    /// Adds the policy's message to the answer (ingress: as a system note to the model).
    case inject
    /// Records the trigger in the audit trail (and the execution row), like `log`.
    case audit
}

/// Whether a policy acts.
public enum PolicyMode: String, Sendable, CaseIterable {
    case enforce
    /// Evaluates and records what it would have done; changes nothing.
    case shadow
    case off
}

/// What a policy whose detector fails at run time does.
public enum PolicyFailure: String, Sendable {
    /// Let the text through.
    case open
    /// Treat the failure as a trigger.
    case closed
}

/// What a policy matches with.
public enum PolicyMatcher: Sendable, Equatable {
    /// Built-in detectors: one (`pii.card`) or a family (`secret.*`), named as configured.
    case detectors([DetectorID], label: String)
    /// The tenant's own regular expression (PCRE2, bounded).
    case pattern(String)
    /// Whole words or phrases, case-insensitively, over normalized text.
    case keywords(KeywordList)
}

/// A tenant's keyword list with its automaton, built once when the configuration is loaded.
public struct KeywordList: Sendable, Equatable {
    public let words: [String]
    let matcher: PhraseMatcher

    /// Builds the automaton for `words`.
    public init(_ words: [String]) {
        self.words = words
        matcher = PhraseMatcher(words)
    }

    public static func == (a: KeywordList, b: KeywordList) -> Bool { a.words == b.words }
}

/// One rule of a tenant's policy set.
public struct Policy: Sendable, Equatable {
    public let name: String
    public let phase: PolicyPhase
    public let matcher: PolicyMatcher
    /// Triggers only at or above this score (0…1; detectors score 1 for a certain match).
    public let threshold: Double
    public let action: PolicyAction
    public let mode: PolicyMode
    /// Said to the client on `block` (and added on `inject`).
    public let message: String?
    /// Put in place of a redacted span (default `[REDACTED:<detector>]`).
    public let replacement: String?
    public let onError: PolicyFailure

    /// Creates a rule.
    public init(
        name: String, phase: PolicyPhase, matcher: PolicyMatcher, threshold: Double = 0.5, action: PolicyAction,
        mode: PolicyMode = .enforce, message: String? = nil, replacement: String? = nil, onError: PolicyFailure? = nil
    ) {
        self.name = name
        self.phase = phase
        self.matcher = matcher
        self.threshold = threshold
        self.action = action
        self.mode = mode
        self.message = message
        self.replacement = replacement
        // A failing check of a blocking or redacting rule closes by default: an outage must not leak.
        self.onError = onError ?? (action == .block || action == .redact ? .closed : .open)
    }

    /// The text that replaces a span this rule redacts.
    public var redaction: String {
        if let replacement { return replacement }
        switch matcher {
        case .detectors(_, let label): return "[REDACTED:\(label)]"
        case .pattern, .keywords: return "[REDACTED:\(name)]"
        }
    }

    /// Whether the rule runs in `phase` (egress rules also run mid-stream).
    public func applies(to phase: PolicyPhase) -> Bool {
        guard mode != .off else { return false }
        return self.phase == phase || (phase == .midstream && self.phase == .egress)
    }
}

/// A tenant's effective policies: `defaults.policies`, then the tenant's own, rule by rule (a tenant rule
/// of the same name replaces the default one; `mode: off` switches it off), presets expanded in place.
public struct PolicySet: Sendable, Equatable {
    public let rules: [Policy]
    /// The most bytes of normalized text a stream channel may hold back for its rules to recognise a match
    /// (what is actually held is only what may still begin one; a match growing at the end is held whole).
    public let holdBack: Int
    /// The tenant's `policy_hold_back`: a fixed tail instead of the detectors' own estimate.
    public let holdBackOverride: Int?

    /// The empty set.
    public static let none = PolicySet(rules: [], holdBackOverride: nil)

    /// Creates a set; `holdBackOverride` replaces the computed hold-back (tenant-tunable).
    public init(rules: [Policy], holdBackOverride: Int?) {
        self.rules = rules
        self.holdBackOverride = holdBackOverride
        let longest = rules.filter { $0.applies(to: .midstream) }.map { PolicySet.longestMatch($0.matcher) }.max()
        holdBack = holdBackOverride ?? longest ?? 0
    }

    /// Whether any rule runs in `phase`.
    public func any(_ phase: PolicyPhase) -> Bool { rules.contains { $0.applies(to: phase) } }

    /// The longest span (in characters) a matcher can produce; a pattern is bounded by `maxPatternSpan`.
    static func longestMatch(_ matcher: PolicyMatcher) -> Int {
        switch matcher {
        case .detectors(let ids, _): return ids.map(\.longestMatch).max() ?? 0
        case .keywords(let list): return (list.words.map { $0.utf8.count }.max() ?? 0) * 2 + 8
        case .pattern: return PolicySet.maxPatternSpan
        }
    }

    /// Longest span a tenant pattern may match (longer matches are ignored).
    public static let maxPatternSpan = 256
}
