import TenantGateCore

/// Egress policies on a whole answer (streams are checked as they flow by `PolicyFilter`). Every field
/// that carries text the model wrote is read, in the client's API: content, refusals, reasoning, audio
/// transcripts, tool-call and legacy function-call arguments, Responses output items, Anthropic text,
/// thinking and every tool input (serialized), and any field the gateway does not know yet (only structural
/// keys such as `role` or `id` are skipped). Per-token `logprobs` are dropped: their token texts would spell
/// out what a redaction removed. A redaction rewrites the answer; a block replaces it with the policy's
/// message and sets `finish_reason: content_filter` (Anthropic: `stop_reason: refusal`).
struct EgressStage: Stage {
    let name = "egress"
    var runsWhenAnswered: Bool { true }

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        let set = call.tenant.policies
        guard set.any(.egress), var reply = call.reply, reply.status == 200, !call.streamed,
            let json = try? JSONParser.parse(reply.body)
        else { return }
        let engine = services.resources.shared.policies.engine(set, budget: call.inspection)
        var checked = Checked(engine: engine)
        let out: JSONValue
        switch call.api {
        case .openAI: out = checked.chat(json)
        case .responses: out = checked.responses(json)
        case .anthropic: out = checked.messages(json)
        }
        call.policyTriggers.record(checked.triggers)
        guard checked.changed else { return }
        reply.body = out.bytes
        call.reply = reply
    }

    /// One answer being checked: the rewritten parts, the triggers, and whether anything changed.
    struct Checked {
        let engine: PolicyEngine
        var triggers: [PolicyTrigger] = []
        var changed = false

        init(engine: PolicyEngine) { self.engine = engine }

        /// `value` with its text checked; the verdict's block and injected notes.
        mutating func rewrite(_ value: JSONValue, structural: Bool = true) -> (JSONValue, Policy?, [String]) {
            var verdict = PolicyVerdict(text: [])
            let out: JSONValue
            if structural {
                out = Guardrails.rewrite(value, key: nil, engine: engine, verdict: &verdict, phase: .egress)
            } else {
                out = Guardrails.rewriteEvery(value, engine: engine, verdict: &verdict)
            }
            triggers.record(verdict.triggers)
            if verdict.changed { changed = true }
            return (out, verdict.blockedBy, verdict.injected)
        }

        /// A tool's input object, checked as the text it serializes to (a match may span keys, or be a
        /// number): redacted leaf by leaf, and replaced whole when a match survives that.
        mutating func toolInput(_ input: JSONValue) -> (JSONValue, Policy?) {
            let serialized = input.bytes
            let verdict = engine.check(serialized, phase: .egress)
            triggers.record(verdict.triggers)
            if let blocked = verdict.blockedBy { return (input, blocked) }
            guard verdict.changed else { return (input, nil) }
            changed = true
            var leaves = PolicyVerdict(text: [])
            let rewritten = Guardrails.rewriteEvery(input, engine: engine, verdict: &leaves)
            let again = engine.check(rewritten.bytes, phase: .egress)
            if !again.changed && again.blockedBy == nil { return (rewritten, nil) }
            let redacting = (again.triggers + verdict.triggers).first { $0.action == .redact }?.policy
            let replacement = engine.set.rules.first { $0.name == redacting }?.redaction ?? "[REDACTED]"
            return (.object([("redacted", .string(replacement))]), nil)
        }

        /// Chat Completions: each choice's message, every field but the structural ones.
        mutating func chat(_ json: JSONValue) -> JSONValue {
            guard let choices = json["choices"]?.arrayValue else { return json }
            var next: [JSONValue] = []
            for original in choices {
                var choice = original
                if let logprobs = choice["logprobs"], logprobs != .null {
                    choice = choice.setting("logprobs", .null)
                    changed = true
                }
                var (message, blocked, notes) = rewrite(choice["message"] ?? .object([]))
                if message != (choice["message"] ?? .object([])), message["audio"]?["data"] != nil {
                    // The audio says what its transcript said: a redacted transcript drops the audio.
                    message = message.setting("audio", (message["audio"] ?? .null).removing("data"))
                }
                if let blocked {
                    message = .object([("role", .string("assistant")), ("content", .string(blocked.message ?? ""))])
                    choice = choice.setting("finish_reason", .string("content_filter"))
                    changed = true
                } else if !notes.isEmpty {
                    let text = (message["content"]?.stringValue ?? "") + "\n\n" + notes.joined(separator: "\n")
                    message = message.setting("content", .string(text))
                    changed = true
                }
                next.append(choice.setting("message", message))
            }
            return json.setting("choices", .array(next))
        }

        /// Responses: every output item (messages with their text and refusal parts, function calls,
        /// reasoning summaries, and item types added later).
        mutating func responses(_ json: JSONValue) -> JSONValue {
            guard let items = json["output"]?.arrayValue else { return json }
            var blocked: Policy?
            var notes: [String] = []
            var next: [JSONValue] = []
            for original in items {
                // Token log probabilities spell out a redacted text token by token: dropped.
                var item = original
                func spells(_ part: JSONValue) -> Bool { !(part["logprobs"]?.arrayValue?.isEmpty ?? true) }
                if let parts = item["content"]?.arrayValue, parts.contains(where: spells) {
                    item = item.setting(
                        "content", .array(parts.map { spells($0) ? $0.setting("logprobs", .array([])) : $0 }))
                    changed = true
                }
                let (checked, rule, injected) = rewrite(item)
                blocked = blocked ?? rule
                notes += injected
                next.append(checked)
            }
            var out = json.setting("output", .array(next))
            if let blocked {
                let id = (items.first?["id"]?.stringValue).map { $0 + "_policy" } ?? "msg_policy"
                out = out.setting(
                    "output",
                    .array([ResponsesAPI.messageItem(id: id, text: blocked.message ?? "", status: "completed")])
                )
                .setting("status", .string("incomplete"))
                .setting("incomplete_details", .object([("reason", .string("content_filter"))]))
                changed = true
            } else if !notes.isEmpty {
                let note = ResponsesAPI.messageItem(
                    id: "msg_policy_note", text: notes.joined(separator: "\n"), status: "completed")
                out = out.setting("output", .array(next + [note]))
                changed = true
            }
            return out
        }

        /// Anthropic Messages: text, thinking and every other block's text; tool-use input serialized.
        mutating func messages(_ json: JSONValue) -> JSONValue {
            guard let blocks = json["content"]?.arrayValue else { return json }
            var blocked: Policy?
            var notes: [String] = []
            var next: [JSONValue] = []
            for block in blocks {
                if let input = block["input"] {
                    // Tool use of any kind (client, server and MCP tools): the input as a whole.
                    let (checked, rule) = toolInput(input)
                    blocked = blocked ?? rule
                    next.append(block.setting("input", checked))
                } else {
                    let (checked, rule, injected) = rewrite(block)
                    blocked = blocked ?? rule
                    notes += injected
                    next.append(checked)
                }
            }
            var out = json.setting("content", .array(next))
            if let blocked {
                out = out.setting(
                    "content", .array([.object([("type", .string("text")), ("text", .string(blocked.message ?? ""))])])
                ).setting("stop_reason", .string("refusal"))
                changed = true
            } else if !notes.isEmpty {
                let note = JSONValue.object([
                    ("type", .string("text")), ("text", .string(notes.joined(separator: "\n"))),
                ])
                out = out.setting("content", .array(next + [note]))
                changed = true
            }
            return out
        }
    }
}
