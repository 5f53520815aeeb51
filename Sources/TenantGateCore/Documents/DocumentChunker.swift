/// How documents are cut into chunks (per tenant: `documents.chunk_tokens`, `documents.overlap_tokens`).
public struct ChunkingRule: Sendable, Equatable {
    /// Most estimated tokens in a chunk (TenantGate's estimate: 4 bytes a token).
    public let chunkTokens: Int
    /// Estimated tokens every chunk after the first repeats from the end of the one before.
    public let overlapTokens: Int

    public static let standard = ChunkingRule(chunkTokens: 800, overlapTokens: 80)

    public init(chunkTokens: Int, overlapTokens: Int) {
        self.chunkTokens = min(max(chunkTokens, 64), 8192)
        self.overlapTokens = min(max(overlapTokens, 0), self.chunkTokens / 4)
    }

    var maxBytes: Int { chunkTokens * 4 }
    var overlapBytes: Int { overlapTokens * 4 }
    /// Most bytes of new text in a chunk (what is left beside the overlap and a separator).
    var pieceBytes: Int { maxBytes - overlapBytes - 2 }
}

/// Cuts a document's text into chunks: whole paragraphs (split at blank lines) packed up to the rule's
/// size; a paragraph too long for one chunk is split at sentence ends, then at spaces, then (a run
/// without spaces) at a character boundary. Every chunk after the first starts with the end of the one
/// before (`overlapTokens`, cut forward to a word boundary) so a passage cut in two is whole in one.
public enum DocumentChunker {
    public static func chunks(_ text: String, rule: ChunkingRule = .standard) -> [String] {
        var chunks: [String] = []
        var current: [UInt8] = []
        var fresh = false
        func close() {
            if fresh { chunks.append(String(decoding: trim(current[...]), as: UTF8.self)) }
            current = fresh ? overlap(current, bytes: rule.overlapBytes) : current
            fresh = false
        }
        for paragraph in paragraphs(Array(text.utf8)) {
            let pieces = paragraph.count <= rule.pieceBytes ? [paragraph] : split(paragraph, limit: rule.pieceBytes)
            for (index, piece) in pieces.enumerated() {
                let joiner: [UInt8] = current.isEmpty ? [] : index == 0 ? [0x0A, 0x0A] : [0x20]
                if current.count + joiner.count + piece.count > rule.maxBytes {
                    close()
                }
                let separator: [UInt8] = current.isEmpty ? [] : index == 0 ? [0x0A, 0x0A] : [0x20]
                current.append(contentsOf: separator)
                current.append(contentsOf: piece)
                fresh = true
            }
        }
        if fresh { chunks.append(String(decoding: trim(current[...]), as: UTF8.self)) }
        return chunks
    }

    /// Paragraphs: runs of lines between blank lines, trimmed.
    static func paragraphs(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        var out: [ArraySlice<UInt8>] = []
        var start = 0
        var lineStart = 0
        var i = 0
        func flush(_ end: Int) {
            let paragraph = trim(bytes[start..<end])
            if !paragraph.isEmpty { out.append(paragraph) }
        }
        while i <= bytes.count {
            if i == bytes.count || bytes[i] == 0x0A {
                let line = bytes[lineStart..<i]
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) {
                    flush(lineStart)
                    start = i
                }
                lineStart = i + 1
            }
            i += 1
        }
        flush(bytes.count)
        return out
    }

    /// A paragraph longer than `limit` as pieces of at most `limit` bytes.
    static func split(_ paragraph: ArraySlice<UInt8>, limit: Int) -> [ArraySlice<UInt8>] {
        var pieces: [ArraySlice<UInt8>] = []
        for sentence in sentences(paragraph) {
            if sentence.count <= limit {
                pieces.append(sentence)
                continue
            }
            // Words packed up to the limit; a word longer than it is cut at a character boundary.
            var start = sentence.startIndex
            while start < sentence.endIndex {
                var end = min(start + limit, sentence.endIndex)
                if end < sentence.endIndex {
                    if let space = sentence[start..<end].lastIndex(where: { $0 == 0x20 || $0 == 0x0A }),
                        space > start
                    {
                        end = space
                    } else {
                        while end > start + 1 && (sentence[end] & 0xC0) == 0x80 { end -= 1 }
                    }
                }
                let piece = trim(sentence[start..<end])
                if !piece.isEmpty { pieces.append(piece) }
                start = end
            }
        }
        // Short sentences are packed together again, so pieces stay near the limit.
        var packed: [ArraySlice<UInt8>] = []
        var run: [UInt8] = []
        for piece in pieces {
            if !run.isEmpty && run.count + 1 + piece.count > limit {
                packed.append(run[...])
                run = []
            }
            if !run.isEmpty { run.append(0x20) }
            run.append(contentsOf: piece)
        }
        if !run.isEmpty { packed.append(run[...]) }
        return packed
    }

    /// Sentences end after `.`, `!` or `?` followed by white space, and at line ends.
    static func sentences(_ text: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
        var out: [ArraySlice<UInt8>] = []
        var start = text.startIndex
        var i = text.startIndex
        while i < text.endIndex {
            let byte = text[i]
            let next = i + 1 < text.endIndex ? text[i + 1] : 0x20
            let ends =
                byte == 0x0A
                || ((byte == 0x2E || byte == 0x21 || byte == 0x3F) && (next == 0x20 || next == 0x0A))
            if ends {
                let sentence = trim(text[start...i])
                if !sentence.isEmpty { out.append(sentence) }
                start = i + 1
            }
            i += 1
        }
        let rest = trim(text[start..<text.endIndex])
        if !rest.isEmpty { out.append(rest) }
        return out
    }

    /// The end of `chunk` to repeat at the start of the next: at most `bytes`, starting after a space.
    static func overlap(_ chunk: [UInt8], bytes: Int) -> [UInt8] {
        guard bytes > 0, !chunk.isEmpty else { return [] }
        let from = max(0, chunk.count - bytes)
        guard let space = chunk[from...].firstIndex(where: { $0 == 0x20 || $0 == 0x0A }) else { return [] }
        return Array(trim(chunk[(space + 1)...]))
    }

    static func trim(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }),
            let last = bytes.lastIndex(where: { !isSpace($0) })
        else { return [] }
        return bytes[first...last]
    }
}
