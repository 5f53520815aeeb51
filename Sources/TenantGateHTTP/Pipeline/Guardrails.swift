import TenantGateCore
import TenantGateSystem

/// Where guardrails meet JSON: which keys hold text a policy reads, and rewriting them.
enum Guardrails {
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
