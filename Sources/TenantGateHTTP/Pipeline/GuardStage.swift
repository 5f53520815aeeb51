import TenantGateCore
import TenantGateSystem

/// The worker's guardrail services: Unicode folding over utf8proc and tenant patterns compiled once.
enum Guardrails {
    /// Compiled tenant patterns by source (a pattern that fails to compile is remembered as nil).
    private static let compiled = Locked<[String: RegexMatcher?]>([:])

    /// The engine for `set`, charging `budget` (a request's; none outside requests).
    static func engine(_ set: PolicySet, budget: InspectionBudget = .unbounded()) -> PolicyEngine {
        PolicyEngine(set: set, folding: Utf8procFolding(), patterns: pattern, budget: budget)
    }

    @Sendable static func pattern(_ source: String) -> (any PatternMatching)? {
        if let known = compiled.withLock({ $0[source] }) { return known }
        let made = (try? Regex(source)).map(RegexMatcher.init)
        compiled.withLock {
            if $0.count > 4096 { $0.removeAll() }
            $0[source] = made
        }
        return made
    }

    /// Keys whose string values are text a policy reads: message content and text parts, tool results and
    /// tool-call arguments, the Anthropic `system`, embeddings `input`.
    static let textKeys: Set<String> = ["content", "text", "arguments", "system", "input"]

    /// `value` with every string leaf checked at egress, whatever its key (a tool's own arguments).
    static func rewriteEvery(_ value: JSONValue, engine: PolicyEngine, verdict: inout PolicyVerdict) -> JSONValue {
        switch value {
        case .string(let text):
            let checked = engine.check(Array(text.utf8), phase: .egress)
            verdict.triggers.record(checked.triggers)
            if verdict.blockedBy == nil { verdict.blockedBy = checked.blockedBy }
            guard checked.changed else { return value }
            verdict.changed = true
            return .string(String(decoding: checked.text, as: UTF8.self))
        case .array(let items): return .array(items.map { rewriteEvery($0, engine: engine, verdict: &verdict) })
        case .object(let members):
            return .object(members.map { ($0.0, rewriteEvery($0.1, engine: engine, verdict: &verdict)) })
        default: return value
        }
    }

    /// Keys of an answer whose string values are structure, not text the model wrote: everything else in
    /// an answer (content, refusal, reasoning, transcripts, arguments, annotations, keys the gateway does
    /// not know yet) is checked by egress rules.
    static let structuralKeys: Set<String> = [
        "role", "id", "type", "call_id", "finish_reason", "stop_reason", "status", "object", "model", "format",
        "signature", "expires_at", "index", "name", "tool_use_id", "media_type",
    ]

    /// `value` with every text string checked by `engine` at `phase` (ingress: the strings under
    /// `textKeys`; egress: every string not under `structuralKeys`); the triggers, the rule that blocks, if
    /// any, and the messages of `inject` rules are gathered in `verdict`.
    static func rewrite(
        _ value: JSONValue, key: String?, engine: PolicyEngine, verdict: inout PolicyVerdict,
        phase: PolicyPhase = .ingress
    ) -> JSONValue {
        let isText: Bool
        if phase == .ingress {
            isText = key.map(textKeys.contains) ?? false
        } else {
            isText = !(key.map(structuralKeys.contains) ?? false)
        }
        switch value {
        case .string(let text) where isText:
            let checked = engine.check(Array(text.utf8), phase: phase)
            verdict.triggers.record(checked.triggers)
            if verdict.blockedBy == nil { verdict.blockedBy = checked.blockedBy }
            for message in checked.injected where !verdict.injected.contains(message) {
                verdict.injected.append(message)
            }
            guard checked.changed else { return value }
            verdict.changed = true
            return .string(String(decoding: checked.text, as: UTF8.self))
        case .array(let items):
            return .array(items.map { rewrite($0, key: key, engine: engine, verdict: &verdict, phase: phase) })
        case .object(let members):
            return .object(
                members.map { ($0.0, rewrite($0.1, key: $0.0, engine: engine, verdict: &verdict, phase: phase)) })
        default:
            return value
        }
    }
}

/// utf8proc's folding for the detectors.
struct Utf8procFolding: ScalarFolding {
    func fold(_ scalar: Unicode.Scalar, into out: inout [Unicode.Scalar]) { UnicodeFold.fold(scalar, into: &out) }
}

/// A compiled tenant pattern for the detectors.
struct RegexMatcher: PatternMatching {
    let regex: Regex
    func matches(in text: [UInt8], maxSpan: Int, budget: InspectionBudget) throws -> [Range<Int>] {
        try regex.matches(in: text, maxSpan: maxSpan, stop: { budget.exhausted })
    }
}

/// Ingress policies: every message of the request is checked before anything is reserved. A block answers
/// `403 policy_blocked` and reaches no upstream; a redaction rewrites the request the upstream gets.
struct GuardStage: Stage {
    let name = "guard"

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        let set = call.tenant.policies
        guard set.any(.ingress) else { return }
        let engine = Guardrails.engine(set, budget: call.inspection)
        var verdict = PolicyVerdict(text: [])
        switch call.input {
        case .chat(let chat, let messages):
            if let messages {
                // An Anthropic client's own body goes upstream natively: check (and rewrite) that one.
                var original = GuardStage.rewrite(messages.original, engine: engine, verdict: &verdict)
                if let blocked = verdict.blockedBy { return try refuse(blocked, verdict, &call) }
                if !verdict.injected.isEmpty {
                    // Added to the system prompt, whichever form it has (a string or a list of text blocks).
                    let note = verdict.injected.joined(separator: "\n")
                    let system: JSONValue
                    switch original["system"] {
                    case .string(let text)?: system = .string(text + "\n\n" + note)
                    case .array(let blocks)?:
                        system = .array(blocks + [.object([("type", .string("text")), ("text", .string(note))])])
                    default: system = .string(note)
                    }
                    original = original.setting("system", system)
                    verdict.changed = true
                }
                if verdict.changed {
                    let parsed = try MessagesAPI.parse(json: original)
                    call.input = .chat(parsed.chat, messages: parsed)
                }
            } else {
                let messages = chat.body["messages"] ?? JSONValue.array([])
                var body = chat.body.setting(
                    "messages", Guardrails.rewrite(messages, key: "messages", engine: engine, verdict: &verdict))
                if let blocked = verdict.blockedBy { return try refuse(blocked, verdict, &call) }
                if !verdict.injected.isEmpty {
                    let note = JSONValue.object([
                        ("role", .string("system")), ("content", .string(verdict.injected.joined(separator: "\n"))),
                    ])
                    body = body.setting("messages", .array([note] + (body["messages"]?.arrayValue ?? [])))
                    verdict.changed = true
                }
                if verdict.changed { call.input = .chat(try ChatRequest.validate(body), messages: nil) }
            }
        case .embeddings(let embed):
            let body = embed.body.setting(
                "input",
                Guardrails.rewrite(embed.body["input"] ?? .null, key: "input", engine: engine, verdict: &verdict))
            if let blocked = verdict.blockedBy { return try refuse(blocked, verdict, &call) }
            if verdict.changed { call.input = .embeddings(try EmbeddingsRequest.parse(body.bytes)) }
        case .countTokens(let messages):
            // The text is sent upstream to be counted: the same rules apply (no inject: nothing answers).
            let original = GuardStage.rewrite(messages.original, engine: engine, verdict: &verdict)
            if let blocked = verdict.blockedBy { return try refuse(blocked, verdict, &call) }
            if verdict.changed { call.input = .countTokens(try MessagesAPI.parse(json: original)) }
        case .none:
            return
        }
        call.policyTriggers.record(verdict.triggers)
    }

    /// An Anthropic body with its `system` and `messages` checked (and rewritten) by `engine`.
    static func rewrite(_ original: JSONValue, engine: PolicyEngine, verdict: inout PolicyVerdict) -> JSONValue {
        var out = original
        for key in ["system", "messages"] {
            guard let part = original[key] else { continue }
            out = out.setting(key, Guardrails.rewrite(part, key: key, engine: engine, verdict: &verdict))
        }
        return out
    }

    private func refuse(_ rule: Policy, _ verdict: PolicyVerdict, _ call: inout ModelCall) throws {
        call.policyTriggers.record(verdict.triggers)
        call.policyBlocked = true
        throw GatewayError.policyBlocked(policy: rule.name, message: rule.message)
    }
}
