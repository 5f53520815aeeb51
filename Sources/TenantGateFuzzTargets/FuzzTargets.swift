#if canImport(TenantGateCore)
    import TenantGateCore
#endif

/// The fuzz targets: each takes arbitrary bytes, runs one hand-written parser or translator of the request
/// path on them and traps when an invariant breaks (a crash is a finding). `scripts/fuzz` builds them with
/// libFuzzer (`-sanitize=fuzzer,address`) into one binary per target; the unit tests replay the corpora in
/// `Tests/FuzzCorpus/<target>/` through the same functions on every `scripts/test`.
public enum FuzzTargets {
    public static let all: [String: @Sendable ([UInt8]) -> Void] = [
        "json": json, "sse": sse, "multipart": multipart, "documents": documents, "query": query,
        "responses": responses, "messages": messages, "chat": chat,
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
}
