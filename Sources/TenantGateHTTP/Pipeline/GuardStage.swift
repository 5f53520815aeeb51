import TenantGateCore
import TenantGateSystem

/// The worker's guardrail services: Unicode folding over utf8proc and tenant patterns compiled once.
enum Guardrails {
    /// Compiled tenant patterns by source (a pattern that fails to compile is remembered as nil).
    private static let compiled = Locked<[String: RegexMatcher?]>([:])

    /// The engine for `set`.
    static func engine(_ set: PolicySet) -> PolicyEngine {
        PolicyEngine(set: set, folding: Utf8procFolding(), patterns: pattern)
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

    /// `value` with every text string (under `textKeys`) checked by `engine` at `phase`; the triggers,
    /// the rule that blocks, if any, and the messages of `inject` rules are gathered in `verdict`.
    static func rewrite(_ value: JSONValue, key: String?, engine: PolicyEngine, verdict: inout PolicyVerdict)
        -> JSONValue
    {
        switch value {
        case .string(let text) where key.map(textKeys.contains) ?? false:
            let checked = engine.check(Array(text.utf8), phase: .ingress)
            verdict.triggers += checked.triggers
            if verdict.blockedBy == nil { verdict.blockedBy = checked.blockedBy }
            for message in checked.injected where !verdict.injected.contains(message) {
                verdict.injected.append(message)
            }
            guard checked.changed else { return value }
            verdict.changed = true
            return .string(String(decoding: checked.text, as: UTF8.self))
        case .array(let items):
            return .array(items.map { rewrite($0, key: key, engine: engine, verdict: &verdict) })
        case .object(let members):
            return .object(members.map { ($0.0, rewrite($0.1, key: $0.0, engine: engine, verdict: &verdict)) })
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
    func matches(in text: [UInt8]) throws -> [Range<Int>] { try regex.matches(in: text) }
}

/// Ingress policies: every message of the request is checked before anything is reserved. A block answers
/// `403 policy_blocked` and reaches no upstream; a redaction rewrites the request the upstream gets.
struct GuardStage: Stage {
    let name = "guard"

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        let set = call.tenant.policies
        guard set.any(.ingress) else { return }
        let engine = Guardrails.engine(set)
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
        call.policyTriggers += verdict.triggers
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
        call.policyTriggers += verdict.triggers
        throw GatewayError.policyBlocked(policy: rule.name, message: rule.message)
    }
}

/// Egress policies on a whole answer (streams are checked as they flow by `PolicyFilter`): the text of
/// every choice (and tool-call arguments) in the client's API; a redaction rewrites it, a block replaces it
/// with the policy's message and sets `finish_reason: content_filter` (Anthropic: `stop_reason: refusal`).
struct EgressStage: Stage {
    let name = "egress"
    var runsWhenAnswered: Bool { true }

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        let set = call.tenant.policies
        guard set.any(.egress), var reply = call.reply, reply.status == 200, !call.streamed,
            let json = try? JSONParser.parse(reply.body)
        else { return }
        let engine = Guardrails.engine(set)
        var out = json
        var triggers: [PolicyTrigger] = []
        var changed = false
        func check(_ text: String) -> (String, Policy?, [String]) {
            let verdict = engine.check(Array(text.utf8), phase: .egress)
            triggers += verdict.triggers
            if verdict.changed { changed = true }
            return (String(decoding: verdict.text, as: UTF8.self), verdict.blockedBy, verdict.injected)
        }
        if call.api == .openAI, let choices = json["choices"]?.arrayValue {
            var next: [JSONValue] = []
            for choice in choices {
                var message = choice["message"] ?? .object([])
                var blocked: Policy?
                var notes: [String] = []
                if let text = message["content"]?.stringValue {
                    let (checked, rule, injected) = check(text)
                    message = message.setting("content", .string(checked))
                    blocked = rule
                    notes = injected
                }
                if let calls = message["tool_calls"]?.arrayValue {
                    message = message.setting(
                        "tool_calls",
                        .array(
                            calls.map { tool in
                                guard let args = tool["function"]?["arguments"]?.stringValue else { return tool }
                                let (checked, rule, _) = check(args)
                                blocked = blocked ?? rule
                                return tool.setting(
                                    "function", (tool["function"] ?? .object([])).setting("arguments", .string(checked))
                                )
                            }))
                }
                var choice = choice
                if let blocked {
                    message = message.setting("content", .string(blocked.message ?? "")).removing("tool_calls")
                    choice = choice.setting("finish_reason", .string("content_filter"))
                    changed = true
                } else if !notes.isEmpty {
                    let text = (message["content"]?.stringValue ?? "") + "\n\n" + notes.joined(separator: "\n")
                    message = message.setting("content", .string(text))
                    changed = true
                }
                next.append(choice.setting("message", message))
            }
            out = json.setting("choices", .array(next))
        } else if call.api == .responses, let items = json["output"]?.arrayValue {
            var blocked: Policy?
            var notes: [String] = []
            var next: [JSONValue] = []
            for item in items {
                switch item["type"]?.stringValue {
                case "message":
                    let parts = (item["content"]?.arrayValue ?? []).map { part -> JSONValue in
                        guard let text = part["text"]?.stringValue else { return part }
                        let (checked, rule, injected) = check(text)
                        blocked = blocked ?? rule
                        notes += injected
                        return part.setting("text", .string(checked))
                    }
                    next.append(item.setting("content", .array(parts)))
                case "function_call":
                    let (checked, rule, _) = check(item["arguments"]?.stringValue ?? "")
                    blocked = blocked ?? rule
                    next.append(item.setting("arguments", .string(checked)))
                default: next.append(item)
                }
            }
            out = json.setting("output", .array(next))
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
                let id = "msg_policy_note"
                out = out.setting(
                    "output",
                    .array(
                        next + [
                            ResponsesAPI.messageItem(id: id, text: notes.joined(separator: "\n"), status: "completed")
                        ]))
                changed = true
            }
        } else if call.api == .anthropic, let blocks = json["content"]?.arrayValue {
            var blocked: Policy?
            var notes: [String] = []
            var next: [JSONValue] = []
            for block in blocks {
                if block["type"]?.stringValue == "text", let text = block["text"]?.stringValue {
                    let (checked, rule, injected) = check(text)
                    blocked = blocked ?? rule
                    notes += injected
                    next.append(block.setting("text", .string(checked)))
                } else {
                    next.append(block)
                }
            }
            out = json.setting("content", .array(next))
            if let blocked {
                out = out.setting(
                    "content", .array([.object([("type", .string("text")), ("text", .string(blocked.message ?? ""))])])
                ).setting("stop_reason", .string("refusal"))
                changed = true
            } else if !notes.isEmpty {
                out = out.setting(
                    "content",
                    .array(
                        next + [.object([("type", .string("text")), ("text", .string(notes.joined(separator: "\n")))])])
                )
                changed = true
            }
        }
        call.policyTriggers += triggers
        guard changed else { return }
        reply.body = out.bytes
        call.reply = reply
    }
}

/// Mid-stream policies: one `StreamGuard` per choice holds back, redacts or stops the text; tool-call
/// arguments are held whole until their choice finishes and checked then. A block ends the choice with
/// `finish_reason: content_filter` and the stream right after.
struct PolicyFilter: StreamFilter {
    private let engine: PolicyEngine
    private var guards: [Int: StreamGuard] = [:]
    /// Held tool-call arguments by choice, then tool index.
    private var arguments: [Int: [Int: [UInt8]]] = [:]
    private var finished: Set<Int> = []
    private(set) var stopped = false
    /// Triggers of tool-call arguments (the guards keep those of the text).
    private var triggers: [PolicyTrigger] = []
    private var template = ChunkFactory(id: "", model: "", created: 0)

    init(engine: PolicyEngine) { self.engine = engine }

    mutating func filter(_ piece: StreamPiece) -> [StreamPiece] {
        guard !stopped else { return [] }
        switch piece {
        case .chunk(let json, _):
            if let id = json["id"]?.stringValue, let model = json["model"]?.stringValue {
                template = ChunkFactory(id: id, model: model, created: json["created"]?.intValue ?? 0)
            }
            guard let choices = json["choices"]?.arrayValue, !choices.isEmpty else { return [piece] }
            var out: [StreamPiece] = []
            var kept: [JSONValue] = []
            for choice in choices {
                let index = choice["index"]?.intValue ?? 0
                var delta = choice["delta"] ?? .object([])
                var guarded = guards[index] ?? StreamGuard(engine: engine)
                if let text = delta["content"]?.stringValue {
                    let released = guarded.feed(Array(text.utf8))
                    delta =
                        released.isEmpty
                        ? delta.removing("content")
                        : delta.setting(
                            "content", .string(String(decoding: released, as: UTF8.self)))
                }
                if let calls = delta["tool_calls"]?.arrayValue {
                    var held = arguments[index] ?? [:]
                    // Arguments are held whole until the choice ends; past the guard's limit a tool call is
                    // not something to hold in memory: the choice ends as filtered.
                    let heldBytes = held.values.reduce(0) { $0.saturatingAdd($1.count) }
                    if heldBytes > StreamGuard.maxHeld {
                        out += flushKept(&kept, json)
                        out.append(end(index))
                        stopped = true
                        return out + [.end]
                    }
                    delta = delta.setting(
                        "tool_calls",
                        .array(
                            calls.map { call in
                                let tool = call["index"]?.intValue ?? 0
                                guard let args = call["function"]?["arguments"]?.stringValue else { return call }
                                held[tool, default: []] += Array(args.utf8)
                                return call.setting(
                                    "function", (call["function"] ?? .object([])).setting("arguments", .string("")))
                            }))
                    arguments[index] = held
                }
                guards[index] = guarded
                if guarded.blockedBy != nil {
                    out += flushKept(&kept, json)
                    out.append(end(index))
                    stopped = true
                    return out + [.end]
                }
                if choice["finish_reason"]?.stringValue != nil {
                    let (pieces, blocked) = finish(index, delta: delta, choice: choice)
                    out += flushKept(&kept, json) + pieces
                    if blocked {
                        stopped = true
                        return out + [.end]
                    }
                    continue
                }
                if delta.objectValue?.isEmpty == false { kept.append(choice.setting("delta", delta)) }
            }
            return out + flushKept(&kept, json)
        case .end:
            var out: [StreamPiece] = []
            for index in guards.keys.sorted() where !finished.contains(index) {
                let (pieces, blocked) = finish(index, delta: .object([]), choice: nil)
                out += pieces
                if blocked {
                    stopped = true
                    break
                }
            }
            return out + [.end]
        case .frame:
            return [piece]
        }
    }

    /// The kept choices of `json` as one chunk (usage stays on the chunk that carried it).
    private func flushKept(_ kept: inout [JSONValue], _ json: JSONValue) -> [StreamPiece] {
        defer { kept = [] }
        guard !kept.isEmpty else { return [] }
        return [.chunk(json.setting("choices", .array(kept)), raw: nil)]
    }

    /// Releases what choice `index` holds, then its finishing chunk (with its `finish_reason`); `delta` is
    /// the finishing chunk's own delta, its content already checked.
    private mutating func finish(_ index: Int, delta: JSONValue, choice: JSONValue?) -> ([StreamPiece], Bool) {
        finished.insert(index)
        var guarded = guards[index] ?? StreamGuard(engine: engine)
        var text = Array((delta["content"]?.stringValue ?? "").utf8)
        text += guarded.finish()
        defer { guards[index] = guarded }
        var out: [StreamPiece] = []
        if guarded.blockedBy != nil { return ([end(index)], true) }
        for note in guarded.injected { text += Array(("\n\n" + note).utf8) }
        if !text.isEmpty { out.append(content(text, index)) }
        for (tool, args) in (arguments[index] ?? [:]).sorted(by: { $0.key < $1.key }) {
            let verdict = engine.check(args, phase: .midstream)
            triggers += verdict.triggers
            if verdict.blockedBy != nil { return (out + [end(index)], true) }
            let call = JSONValue.object([
                ("index", .int(tool)),
                ("function", .object([("arguments", .string(String(decoding: verdict.text, as: UTF8.self)))])),
            ])
            out.append(.chunk(template.delta(.object([("tool_calls", .array([call]))]), index: index), raw: nil))
        }
        if let choice {
            out.append(.chunk(template.wrap(choice.setting("delta", delta.removing("content"))), raw: nil))
        }
        return (out, false)
    }

    private func content(_ text: [UInt8], _ index: Int) -> StreamPiece {
        .chunk(
            template.delta(.object([("content", .string(String(decoding: text, as: UTF8.self)))]), index: index),
            raw: nil)
    }

    /// The end of a blocked choice.
    private func end(_ index: Int) -> StreamPiece {
        .chunk(template.delta(.object([]), finish: "content_filter", index: index), raw: nil)
    }

    /// Every trigger so far (after the stream: all of them).
    var allTriggers: [PolicyTrigger] {
        guards.sorted(by: { $0.key < $1.key }).flatMap(\.value.triggers) + triggers
    }
}

/// The guardrails outside a request: checking a text against a tenant's rules, and measuring detector speed.
public enum GuardrailTools {
    /// What `tenant`'s rules of `phase` make of `text` (the worker's folding and pattern engine).
    public static func check(_ text: [UInt8], tenant: TenantConfig, phase: PolicyPhase) -> PolicyVerdict {
        Guardrails.engine(tenant.policies).check(text, phase: phase)
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
        let engine = Guardrails.engine(every)
        out.append(("all, normalized", rate { _ = engine.check(corpus, phase: .egress) }))
        // A chat message: the per-request cost is per text, not per byte.
        let message = Array("Say hello in five words, and keep it friendly please.".utf8)
        let start = Posix.monotonicMicros()
        for _ in 0..<20_000 { _ = engine.check(message, phase: .egress) }
        out.append(("short message (µs each)", Double(Posix.monotonicMicros() - start) / 20_000))
        return out
    }
}
