import TenantGateCore

/// Mid-stream policies: one `StreamGuard` per choice holds back, redacts or stops the text, and one per
/// other text field of the delta (`refusal`, `reasoning_content`, `reasoning`, `audio.transcript`); tool-call
/// and legacy function-call arguments are held whole until their choice finishes and checked then. Delta
/// keys outside that list, audio data and per-token `logprobs` are dropped: what cannot be read is not
/// released. A block ends the choice with `finish_reason: content_filter` and the stream right after.
struct PolicyFilter: StreamFilter {
    private let engine: PolicyEngine
    private var guards: [Int: StreamGuard] = [:]
    /// The guards of the other text fields, by choice and field.
    private var sideGuards: [Int: [String: StreamGuard]] = [:]
    /// Delta fields whose text streams through a guard of its own.
    static let sideFields = ["refusal", "reasoning_content", "reasoning"]
    /// Delta keys that pass (after their text is checked); any other key is dropped.
    static let deltaKeys: Set<String> = [
        "role", "content", "tool_calls", "function_call", "refusal", "reasoning_content", "reasoning", "audio",
    ]
    /// `delta` with only the fields whose shape can be read: text fields as strings, `audio` an object
    /// (its data dropped, its transcript a string), `function_call` and each tool call with string names
    /// and arguments. Anything else is dropped, never passed unread.
    static func readable(_ delta: JSONValue) -> JSONValue {
        func strings(_ value: JSONValue, _ keys: Set<String>) -> JSONValue? {
            guard let members = value.objectValue else { return nil }
            return .object(members.filter { keys.contains($0.0) && $0.1.stringValue != nil })
        }
        var out: [(String, JSONValue)] = []
        for (key, value) in delta.objectValue ?? [] {
            switch key {
            case "role":
                if value.stringValue != nil { out.append((key, value)) }
            case "content", "refusal", "reasoning_content", "reasoning":
                if value.stringValue != nil || value == .null { out.append((key, value)) }
            case "audio":
                if let audio = strings(value, ["id", "transcript"]) { out.append((key, audio)) }
            case "function_call":
                if let call = strings(value, ["name", "arguments"]) { out.append((key, call)) }
            case "tool_calls":
                guard let calls = value.arrayValue else { continue }
                let kept = calls.compactMap { call -> JSONValue? in
                    guard let members = call.objectValue else { return nil }
                    return .object(
                        members.compactMap { name, v -> (String, JSONValue)? in
                            switch name {
                            case "index": return v.intValue != nil ? (name, v) : nil
                            case "id", "type": return v.stringValue != nil ? (name, v) : nil
                            case "function": return strings(v, ["name", "arguments"]).map { (name, $0) }
                            default: return nil
                            }
                        })
                }
                out.append((key, .array(kept)))
            default: continue
            }
        }
        return .object(out)
    }

    /// The tool index under which legacy `function_call` arguments are held.
    static let functionCallSlot = -1
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
            for original in choices {
                let index = original["index"]?.intValue ?? 0
                // Only what can be read passes: the choice's index, delta and finish reason, and the delta's
                // fields in their documented shapes (`logprobs`, a `message`, text as a list: dropped).
                let choice = JSONValue.object(
                    (original.objectValue ?? []).filter { ["index", "delta", "finish_reason"].contains($0.0) })
                var delta = PolicyFilter.readable(choice["delta"] ?? .object([]))
                var sides = sideGuards[index] ?? [:]
                for field in PolicyFilter.sideFields {
                    guard let text = delta[field]?.stringValue else { continue }
                    var side = sides[field] ?? StreamGuard(engine: engine)
                    let released = side.feed(Array(text.utf8))
                    sides[field] = side
                    delta =
                        released.isEmpty
                        ? delta.removing(field)
                        : delta.setting(field, .string(String(decoding: released, as: UTF8.self)))
                }
                if let audio = delta["audio"] {
                    // Audio cannot be read: only its transcript passes, through its own guard.
                    var kept = audio.removing("data")
                    if let text = audio["transcript"]?.stringValue {
                        var side = sides["audio"] ?? StreamGuard(engine: engine)
                        let released = side.feed(Array(text.utf8))
                        sides["audio"] = side
                        kept =
                            released.isEmpty
                            ? kept.removing("transcript")
                            : kept.setting("transcript", .string(String(decoding: released, as: UTF8.self)))
                    }
                    delta = delta.setting("audio", kept)
                }
                if let args = delta["function_call"]?["arguments"]?.stringValue {
                    var held = arguments[index] ?? [:]
                    held[PolicyFilter.functionCallSlot, default: []] += Array(args.utf8)
                    arguments[index] = held
                    delta = delta.setting(
                        "function_call", (delta["function_call"] ?? .object([])).setting("arguments", .string("")))
                }
                sideGuards[index] = sides
                if sides.values.contains(where: { $0.blockedBy != nil }) {
                    out += flushKept(&kept, json)
                    out.append(end(index))
                    stopped = true
                    return out + [.end]
                }
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
                // Arguments are held whole until the choice ends; past the guard's limit a tool call is not
                // something to hold in memory: the choice ends as filtered.
                if (arguments[index] ?? [:]).values.reduce(0, { $0.saturatingAdd($1.count) }) > StreamGuard.maxHeld {
                    out += flushKept(&kept, json)
                    out.append(end(index))
                    stopped = true
                    return out + [.end]
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
            for index in Set(guards.keys).union(sideGuards.keys).union(arguments.keys).sorted()
            where !finished.contains(index) {
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
        var sides = sideGuards[index] ?? [:]
        defer { sideGuards[index] = sides }
        for field in sides.keys.sorted() {
            guard var side = sides[field] else { continue }
            // What the finishing delta itself released of this field comes first, then the rest held.
            let already =
                field == "audio" ? delta["audio"]?["transcript"]?.stringValue : delta[field]?.stringValue
            let released = Array((already ?? "").utf8) + side.finish()
            sides[field] = side
            if side.blockedBy != nil { return (out + [end(index)], true) }
            guard !released.isEmpty else { continue }
            let text = JSONValue.string(String(decoding: released, as: UTF8.self))
            let delta: JSONValue =
                field == "audio"
                ? .object([("audio", .object([("transcript", text)]))]) : .object([(field, text)])
            out.append(.chunk(template.delta(delta, index: index), raw: nil))
        }
        for (tool, args) in (arguments[index] ?? [:]).sorted(by: { $0.key < $1.key }) {
            let verdict = engine.check(args, phase: .midstream)
            triggers.record(verdict.triggers)
            if verdict.blockedBy != nil { return (out + [end(index)], true) }
            if tool == PolicyFilter.functionCallSlot {
                let call = JSONValue.object([
                    ("arguments", .string(String(decoding: verdict.text, as: UTF8.self)))
                ])
                out.append(.chunk(template.delta(.object([("function_call", call)]), index: index), raw: nil))
                continue
            }
            let call = JSONValue.object([
                ("index", .int(tool)),
                ("function", .object([("arguments", .string(String(decoding: verdict.text, as: UTF8.self)))])),
            ])
            out.append(.chunk(template.delta(.object([("tool_calls", .array([call]))]), index: index), raw: nil))
        }
        if let choice {
            // Its text fields went out above, in order.
            var last = delta.removing("content")
            for field in PolicyFilter.sideFields { last = last.removing(field) }
            if let audio = last["audio"] { last = last.setting("audio", audio.removing("transcript")) }
            out.append(.chunk(template.wrap(choice.setting("delta", last)), raw: nil))
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
        guards.sorted(by: { $0.key < $1.key }).flatMap(\.value.triggers)
            + sideGuards.sorted(by: { $0.key < $1.key }).flatMap {
                $0.value.sorted { $0.key < $1.key }.flatMap(\.value.triggers)
            }
            + triggers
    }
}
