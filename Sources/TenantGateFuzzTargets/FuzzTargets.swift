import Foundation

#if canImport(TenantGateCore)
    import TenantGateCore
#endif
#if canImport(TenantGateServing)
    import TenantGateServing
#endif

/// The fuzz targets: each takes arbitrary bytes, runs one hand-written parser or translator of the request
/// path on them and traps when an invariant breaks (a crash is a finding). `scripts/fuzz` builds them with
/// libFuzzer (`-sanitize=fuzzer,address`) into one binary per target; the unit tests replay the corpora in
/// `Tests/FuzzCorpus/<target>/` through the same functions on every `scripts/test`.
public enum FuzzTargets {
    public static let all: [String: @Sendable ([UInt8]) -> Void] = [
        "json": json, "sse": sse, "multipart": multipart, "documents": documents, "query": query,
        "responses": responses, "messages": messages, "chat": chat, "jsondiff": jsonDifferential,
        "config": config, "form": form, "guardrails": guardrails, "adapter": adapter,
    ]

    /// JSON: whatever parses writes out and parses back to the same value.
    public static func json(_ bytes: [UInt8]) {
        guard let value = try? JSONParser.parse(bytes) else { return }
        let again = try? JSONParser.parse(value.bytes)
        precondition(again == value, "JSON round trip changed the value")
    }

    /// SSE: the same bytes split anywhere give the same events.
    public static func sse(_ bytes: [UInt8]) {
        var whole = SSEParser()
        let all = whole.feed(bytes)
        let cut = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
        var split = SSEParser()
        let first = split.feed(Array(bytes[..<cut]))
        let second = split.feed(Array(bytes[cut...]))
        guard let all, let first, let second else { return }
        precondition(all == first + second, "SSE events depend on how the bytes were split")
    }

    /// Multipart bodies under a boundary taken from the first bytes.
    public static func multipart(_ bytes: [UInt8]) {
        let boundary = String(decoding: bytes.prefix(8).filter { $0 > 0x20 && $0 < 0x7F }, as: UTF8.self)
        guard !boundary.isEmpty else { return }
        _ = try? Multipart.parse(Array(bytes.dropFirst(8)), boundary: boundary)
    }

    /// Documents: HTML to text, then chunks that respect the rule and lose no word.
    public static func documents(_ bytes: [UInt8]) {
        guard
            let text = try? DocumentText.prepare(bytes, format: bytes.first.map { $0 % 2 == 0 } == true ? .html : .text)
        else { return }
        let rule = ChunkingRule(chunkTokens: 64, overlapTokens: 8)
        for chunk in DocumentChunker.chunks(text, rule: rule) {
            precondition(chunk.utf8.count <= 256, "a chunk is larger than its rule")
        }
    }

    /// Search queries: only quoted words joined by OR ever reach MATCH.
    public static func query(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let match = try? FullTextQuery.match(text) else { return }
        // Bytes, not Characters: a quote followed by a combining mark is one Character in Swift, and still a
        // quote to FTS5 (the first finding of this target was that mistake in the check itself).
        for term in split(Array(match.utf8), on: Array(" OR ".utf8)) {
            precondition(term.count >= 3 && term.first == 0x22 && term.last == 0x22, "an unquoted term")
            precondition(!term.dropFirst().dropLast().contains(0x22), "a quote inside a term")
        }
    }

    private static func split(_ bytes: [UInt8], on separator: [UInt8]) -> [ArraySlice<UInt8>] {
        var parts: [ArraySlice<UInt8>] = []
        var start = 0
        var i = 0
        while i + separator.count <= bytes.count {
            if bytes[i..<(i + separator.count)].elementsEqual(separator) {
                parts.append(bytes[start..<i])
                i += separator.count
                start = i
            } else {
                i += 1
            }
        }
        parts.append(bytes[start...])
        return parts
    }

    /// Responses API requests: valid in, a valid Chat Completions request (or a clean error) out.
    public static func responses(_ bytes: [UInt8]) {
        guard let request = try? ResponsesAPI.parse(bytes), let chat = try? request.chat() else { return }
        precondition(!chat.messages.isEmpty, "a Responses request without messages")
        let answer = JSONValue.object([("choices", .array([.object([("message", chat.messages[0])])]))])
        _ = ResponsesAPI.response(
            fromCompletion: answer, id: "resp_" + String(repeating: "0", count: 48), request: request.original,
            model: "m", createdAt: 0, usage: nil)
    }

    /// Anthropic Messages requests: valid in, a valid neutral request out; the native body as well.
    public static func messages(_ bytes: [UInt8]) {
        guard let request = try? MessagesAPI.parse(bytes) else { return }
        _ = MessagesAPI.nativeBody(request.original, upstreamModel: "m", system: nil)
        precondition(!request.chat.messages.isEmpty, "a Messages request without messages")
    }

    /// Chat Completions requests: validation never traps, and an accepted one keeps its messages.
    public static func chat(_ bytes: [UInt8]) {
        guard let request = try? ChatRequest.parse(bytes) else { return }
        _ = request.promptText
        precondition(!request.messages.isEmpty, "a chat request without messages")
    }

    /// JSON against a reference parser (Foundation's JSONSerialization) on the same bytes: whatever ours
    /// accepts, the reference accepts with the same value; what only the reference accepts breaks one of
    /// ours documented stricter rules (duplicate keys, nesting deeper than 64, an unpaired surrogate).
    /// Inputs the reference reads in another encoding (a NUL byte, a byte-order mark) are skipped.
    public static func jsonDifferential(_ bytes: [UInt8]) {
        guard !bytes.contains(0), !bytes.starts(with: [0xEF, 0xBB, 0xBF]), !bytes.starts(with: [0xFE]),
            !bytes.starts(with: [0xFF])
        else { return }
        let reference = try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])
        do {
            let ours = try JSONParser.parse(bytes)
            if let reference {
                precondition(same(ours, reference), "JSON values differ from the reference")
            } else {
                // The reference refuses numbers it cannot hold as a Double (1e400); ours keeps their text.
                precondition(hasHugeNumber(ours), "the reference refused JSON that ours accepted")
            }
        } catch {
            guard reference != nil else { return }
            let stricter = ["duplicate key", "nesting deeper than", "unpaired surrogate"]
            precondition(
                stricter.contains { error.message.hasPrefix($0) } || trailingComma(bytes, at: error.offset),
                "ours refused valid JSON: \(error.message)")
        }
    }

    /// The reference takes `[1,]` and `{"a":1,}` (RFC 8259 does not): ours stops at that `]` or `}`.
    private static func trailingComma(_ bytes: [UInt8], at offset: Int) -> Bool {
        guard offset < bytes.count, bytes[offset] == UInt8(ascii: "]") || bytes[offset] == UInt8(ascii: "}") else {
            return false
        }
        let before = bytes[..<offset].last { ![0x20, 0x0A, 0x0D, 0x09].contains($0) }
        return before == UInt8(ascii: ",")
    }

    private static func hasHugeNumber(_ value: JSONValue) -> Bool {
        switch value {
        case .number(let text): return !(Double(text)?.isFinite ?? false)
        case .array(let items): return items.contains(where: hasHugeNumber)
        case .object(let members): return members.contains { hasHugeNumber($0.1) }
        default: return false
        }
    }

    private static func same(_ ours: JSONValue, _ reference: Any) -> Bool {
        switch ours {
        case .null: return reference is NSNull
        case .bool(let b): return (reference as? Bool) == b
        case .string(let s):
            return (reference as? String).map { withoutBOM($0) == withoutBOM(s) } ?? false
        case .number(let text):
            guard let n = reference as? NSNumber, let d = Double(text) else { return false }
            let r = n.doubleValue
            return r == d || abs(r - d) <= abs(d) * 1e-12 || !d.isFinite
        case .array(let items):
            guard let array = reference as? [Any], array.count == items.count else { return false }
            return zip(items, array).allSatisfy { same($0, $1) }
        case .object(let members):
            guard let dict = reference as? [String: Any] else { return false }
            // Keys too may have lost a U+FEFF in the reference; keys that differ only by one cannot be compared.
            let ourKeys = Set(members.map { withoutBOM($0.0) })
            guard ourKeys.count == members.count else { return true }
            let byKey = Dictionary(dict.map { (withoutBOM($0.key), $0.value) }, uniquingKeysWith: { first, _ in first })
            guard byKey.count == members.count else { return false }
            return members.allSatisfy { key, value in byKey[withoutBOM(key)].map { same(value, $0) } ?? false }
        }
    }

    /// The reference sometimes drops a literal U+FEFF (bytes EF BB BF) inside a string, keys included; ours
    /// keeps it. Found twice by this target (a value after 27 minutes, a key after 2 seconds).
    private static func withoutBOM(_ text: String) -> [Unicode.Scalar] {
        text.unicodeScalars.filter { $0.value != 0xFEFF }
    }

    /// A configuration document (as JSON, the tree a YAML import becomes): validation never traps, and an
    /// accepted document merged into a state and exported validates again and exports the same.
    public static func config(_ bytes: [UInt8]) {
        guard let json = try? JSONParser.parse(bytes),
            let document = try? ConfigState.validateFile(ConfigNode(json: json))
        else { return }
        let state = ConfigState().merging(document, prune: false)
        _ = try? GatewayConfig(state: state, keys: [], version: 0)
        let exported = state.document()
        guard let again = try? ConfigState.validateFile(ConfigNode(json: exported)) else {
            preconditionFailure("an exported configuration does not validate")
        }
        precondition(
            ConfigState().merging(again, prune: false).document() == exported, "export does not round-trip")
    }

    /// Form and query decoding: never traps; any text percent-encoded byte by byte decodes back to itself;
    /// a query's value is found again after encoding.
    public static func form(_ bytes: [UInt8]) {
        _ = URLEncoding.decode(bytes[...])
        guard let text = String(validating: bytes, as: UTF8.self) else { return }
        let encoded = bytes.map { b -> String in
            let hex = String(b, radix: 16, uppercase: true)
            return "%" + (hex.count == 1 ? "0" + hex : hex)
        }.joined()
        precondition(URLEncoding.decode(Array(encoded.utf8)[...]) == text, "percent-encoding does not round-trip")
        precondition(URLEncoding.value("k", inQuery: "a=1&k=\(encoded)&k=2") == text, "query value lost")
        _ = URLEncoding.value("k", inQuery: text)
    }

    /// Guardrail detectors on any bytes: every detection lies inside the text, every pending start is in
    /// bounds, and a policy engine with every detector redacting gives valid UTF-8 whenever the input was.
    public static func guardrails(_ bytes: [UInt8]) {
        for id in DetectorID.allCases {
            for found in Detectors.scan(id, bytes) {
                precondition(
                    found.range.lowerBound >= 0 && found.range.upperBound <= bytes.count, "\(id) out of bounds")
            }
            let pending = Detectors.pendingStart(id, bytes)
            precondition(pending >= 0 && pending <= bytes.count, "\(id) pending start out of bounds")
        }
        guard let engine = guardrailEngine else { return }
        let verdict = engine.check(bytes, phase: .ingress)
        if String(validating: bytes, as: UTF8.self) != nil {
            precondition(String(validating: verdict.text, as: UTF8.self) != nil, "redaction broke UTF-8")
        }
    }

    private static let guardrailEngine: PolicyEngine? = {
        let rules = JSONValue.array(
            DetectorID.allCases.map { id in
                .object([
                    ("name", .string("r-\(id.rawValue)")), ("detector", .string(id.rawValue)),
                    ("phase", .string("ingress")), ("action", .string("redact")),
                ])
            })
        guard let set = try? PolicySet.parse(defaults: nil, tenant: rules, holdBack: nil, path: "fuzz") else {
            return nil
        }
        return PolicyEngine(set: set, folding: BasicFolding(), patterns: { _ in nil })
    }()

    /// The front-end adapter: bytes read as FastCGI name-value pairs (1- or 4-byte lengths, values cut at a
    /// NUL as libfcgi's C strings are) up to an empty name, the rest the body. The request never traps and
    /// keeps its invariants: a path, a route only from `TG_ROUTE`, lowercase header names, a prefix only
    /// when valid, an incomplete body only when shorter than announced.
    public static func adapter(_ bytes: [UInt8]) {
        var params: [String: String] = [:]
        var i = 0
        func length() -> Int? {
            guard i < bytes.count else { return nil }
            if bytes[i] < 0x80 {
                defer { i += 1 }
                return Int(bytes[i])
            }
            guard i + 4 <= bytes.count else { return nil }
            defer { i += 4 }
            return Int(bytes[i] & 0x7F) << 24 | Int(bytes[i + 1]) << 16 | Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
        }
        func text(_ n: Int) -> String? {
            guard n <= bytes.count - i else { return nil }
            defer { i += n }
            return String(decoding: bytes[i..<i + n].prefix { $0 != 0 }, as: UTF8.self)
        }
        while let nameLength = length(), nameLength > 0, let valueLength = length(), let name = text(nameLength),
            let value = text(valueLength)
        {
            params[name] = value
        }
        var request = Request(params: params) { "made" }
        precondition(!request.path.isEmpty, "empty path")
        let route = params["TG_ROUTE"] ?? params["REDIRECT_TG_ROUTE"]
        precondition(request.route == Route(param: route), "route not from TG_ROUTE")
        precondition(request.pathTenant.map { !$0.isEmpty } ?? true, "empty tenant")
        precondition(request.headers.keys.allSatisfy { !$0.utf8.contains { $0 >= 0x41 && $0 <= 0x5A } }, "header case")
        precondition(request.prefix.isEmpty || Request.isPrefix(request.prefix), "invalid prefix taken")
        if request.expectsBody {
            let body = Array(bytes[min(i, bytes.count)...].prefix(1 << 20))
            request.attach(body: body)
            precondition(request.bodyIncomplete == (request.expectedBodyBytes.map { body.count < $0 } ?? false))
        }
        _ = request.queryValue("user")
        _ = request.credential
    }
}
