import TenantGateCore
import TenantGateSystem

/// Ingress policies: every message of the request is checked before anything is reserved. A block answers
/// `403 policy_blocked` and reaches no upstream; a redaction rewrites the request the upstream gets.
struct GuardStage: Stage {
    let name = "guard"

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        let set = call.tenant.policies
        guard set.any(.ingress) else { return }
        let engine = services.resources.shared.policies.engine(set, budget: call.inspection)
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
