/// The `policies:` configuration: parsing, defaults inheritance and presets.
extension PolicySet {
    /// Documented packs a tenant can name (`- preset: pii-redact`) instead of writing rules.
    public static let presets: [String: [Policy]] = [
        "pii-redact": [
            Policy(
                name: "pii-redact.in", phase: .ingress, matcher: .detectors(pii, label: "pii.*"), action: .redact),
            Policy(
                name: "pii-redact.out", phase: .egress, matcher: .detectors(pii, label: "pii.*"), action: .redact),
        ],
        "secrets-block": [
            Policy(
                name: "secrets-block.in", phase: .ingress, matcher: .detectors(keys, label: "secret.*"),
                action: .block, message: "The request carries a credential; remove it and try again."),
            Policy(
                name: "secrets-block.out", phase: .egress, matcher: .detectors(keys, label: "secret.*"),
                action: .redact),
        ],
        "injection-log": [
            Policy(
                name: "injection-log", phase: .ingress, matcher: .detectors(injection, label: "inject.*"),
                action: .log)
        ],
        "injection-block": [
            Policy(
                name: "injection-block", phase: .ingress, matcher: .detectors(injection, label: "inject.*"),
                action: .block, message: "The request looks like a prompt injection.")
        ],
    ]

    static let pii = DetectorID.allCases.filter { $0.rawValue.hasPrefix("pii.") }
    /// Credentials with a known shape (the entropy heuristic is opt-in: it also fires on hashes and ids).
    static let keys = DetectorID.allCases.filter { $0.rawValue.hasPrefix("secret.") && $0 != .entropy }
    static let injection = DetectorID.allCases.filter { $0.rawValue.hasPrefix("inject.") }

    /// The effective set from `defaults.policies` and the tenant's `policies` (both already schema-checked):
    /// rules keep their order, a tenant rule replaces the default rule of the same name.
    public static func parse(defaults: JSONValue?, tenant: JSONValue?, holdBack: Int?, path: String)
        throws(ConfigError) -> PolicySet
    {
        var rules: [Policy] = []
        for (list, where_) in [(defaults, "defaults.policies"), (tenant, "\(path).policies")] {
            for (i, item) in (list?.arrayValue ?? []).enumerated() {
                for rule in try parseItem(item, path: "\(where_)[\(i)]") {
                    if let at = rules.firstIndex(where: { $0.name == rule.name }) {
                        rules[at] = rule
                    } else {
                        rules.append(rule)
                    }
                }
            }
        }
        return PolicySet(rules: rules, holdBackOverride: holdBack)
    }

    static func parseItem(_ item: JSONValue, path: String) throws(ConfigError) -> [Policy] {
        func fail(_ key: String, _ message: String) -> ConfigError {
            ConfigError(path: key.isEmpty ? path : "\(path).\(key)", message: message, line: nil)
        }
        if let preset = item["preset"]?.stringValue {
            guard let rules = presets[preset] else {
                throw fail(
                    "preset", "unknown preset '\(preset)' (one of: \(presets.keys.sorted().joined(separator: ", ")))")
            }
            guard item.objectValue?.count == 1 else { throw fail("", "a preset entry takes no other keys") }
            return rules
        }
        guard let name = item["name"]?.stringValue, !name.isEmpty else { throw fail("name", "is required") }
        guard let phase = item["phase"]?.stringValue.flatMap(PolicyPhase.init(rawValue:)) else {
            throw fail("phase", "is required: ingress, midstream or egress")
        }
        guard let action = item["action"]?.stringValue.flatMap(PolicyAction.init(rawValue:)) else {
            throw fail("action", "is required: block, redact, log, inject or audit")
        }
        var matchers: [PolicyMatcher] = []
        if let detector = item["detector"]?.stringValue {
            guard let ids = DetectorID.select(detector) else {
                throw fail("detector", "unknown detector '\(detector)'")
            }
            matchers.append(.detectors(ids, label: detector))
        }
        if let pattern = item["pattern"]?.stringValue {
            guard !pattern.isEmpty else { throw fail("pattern", "must not be empty") }
            matchers.append(.pattern(pattern))
        }
        if let words = item["keywords"]?.arrayValue {
            let list = words.compactMap(\.stringValue).filter { !$0.isEmpty }
            guard !list.isEmpty else { throw fail("keywords", "must list at least one word") }
            matchers.append(.keywords(KeywordList(list)))
        }
        guard matchers.count == 1, let matcher = matchers.first else {
            throw fail("", "needs exactly one of detector, pattern or keywords")
        }
        if action == .inject && item["message"] == nil { throw fail("message", "is required for inject") }
        return [
            Policy(
                name: name, phase: phase, matcher: matcher, threshold: item["threshold"]?.doubleValue ?? 0.5,
                action: action, mode: item["mode"]?.stringValue.flatMap(PolicyMode.init(rawValue:)) ?? .enforce,
                message: item["message"]?.stringValue, replacement: item["replacement"]?.stringValue,
                onError: item["on_error"]?.stringValue.flatMap(PolicyFailure.init(rawValue:)))
        ]
    }
}
