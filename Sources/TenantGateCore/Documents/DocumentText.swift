/// The text of a document as it is stored and chunked: plain text and Markdown as sent (line ends
/// normalised), HTML reduced to its visible text.
public enum DocumentFormat: String, Sendable, CaseIterable {
    case text, markdown, html

    /// The format a multipart part or a JSON `format` names, else the one its file name or content type
    /// suggests, else plain text.
    public static func detect(named: String?, filename: String?, contentType: String?) throws(GatewayError)
        -> DocumentFormat
    {
        if let named {
            guard let format = DocumentFormat(rawValue: named.lowercased()) else {
                throw .invalidRequest("'format' must be one of text, markdown, html.", param: "format")
            }
            return format
        }
        let type = contentType?.lowercased() ?? ""
        let name = filename?.lowercased() ?? ""
        if type.hasPrefix("text/html") || name.hasSuffix(".html") || name.hasSuffix(".htm") { return .html }
        if type.hasPrefix("text/markdown") || name.hasSuffix(".md") || name.hasSuffix(".markdown") { return .markdown }
        return .text
    }
}

public enum DocumentText {
    /// Most bytes of one document's text (after HTML is stripped).
    public static let maxBytes = 4 << 20

    /// Validates and normalises a document body: strict UTF-8, no NUL, `\r\n` and `\r` as `\n`, HTML reduced
    /// to text; empty (after trimming) is refused.
    public static func prepare(_ bytes: [UInt8], format: DocumentFormat) throws(GatewayError) -> String {
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw .invalidRequest("The document is not valid UTF-8.", param: "text")
        }
        guard !bytes.contains(0) else { throw .invalidRequest("The document contains NUL bytes.", param: "text") }
        var text = normaliseLineEnds(decoded)
        if format == .html { text = HTMLText.plain(text) }
        guard text.utf8.count <= maxBytes else {
            throw .invalidRequest("The document's text exceeds \(maxBytes) bytes.", param: "text")
        }
        guard text.utf8.contains(where: { $0 > 0x20 }) else {
            throw .invalidRequest("The document has no text.", param: "text")
        }
        return text
    }

    static func normaliseLineEnds(_ text: String) -> String {
        guard text.utf8.contains(0x0D) else { return text }
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        var previousCR = false
        for byte in text.utf8 {
            if byte == 0x0D {
                out.append(0x0A)
                previousCR = true
                continue
            }
            if byte == 0x0A && previousCR {
                previousCR = false
                continue
            }
            previousCR = false
            out.append(byte)
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// HTML to visible text without a DOM: tags removed, `script`, `style`, `head`-only and comment contents
/// dropped, block elements and `<br>` as line breaks (paragraphs stay paragraphs for the chunker), the
/// common named entities and numeric references decoded. Malformed markup never fails: it degrades to
/// its text.
public enum HTMLText {
    private static let dropped: Set<String> = ["script", "style", "noscript", "template", "title", "svg"]
    private static let blocks: Set<String> = [
        "p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "li", "ul", "ol", "table",
        "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "hr", "dl", "dt", "dd", "figure",
        "figcaption", "form", "body", "html",
    ]
    private static let entities: [String: String] = [
        "amp": "&", "lt": "<", "gt": ">", "quot": "\"", "apos": "'", "nbsp": " ", "ndash": "–", "mdash": "—",
        "hellip": "…", "copy": "©", "reg": "®", "laquo": "«", "raquo": "»", "rsquo": "’", "lsquo": "‘",
        "rdquo": "”", "ldquo": "“", "euro": "€",
    ]

    public static func plain(_ html: String) -> String {
        let bytes = Array(html.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        var nextClose = 0
        var skipUntil: String?
        while i < bytes.count {
            let byte = bytes[i]
            if byte == UInt8(ascii: "<") {
                if bytes[i...].starts(with: Array("<!--".utf8)) {
                    i = find(Array("-->".utf8), in: bytes, from: i + 4).map { $0 + 3 } ?? bytes.count
                    continue
                }
                // A tag ends within 4 KiB; a '<' without one is text. The next '>' is found once and reused
                // by every '<' before it, so a hostile run of '<' stays linear.
                if nextClose <= i {
                    nextClose = bytes[(i + 1)...].firstIndex(of: UInt8(ascii: ">")) ?? bytes.count
                }
                guard nextClose < bytes.count, nextClose - i <= 4096 else {
                    if skipUntil == nil { out.append(byte) }
                    i += 1
                    continue
                }
                let close = nextClose
                let (name, closing) = tagName(bytes[(i + 1)..<close])
                i = close + 1
                if let waiting = skipUntil {
                    if closing && name == waiting { skipUntil = nil }
                    continue
                }
                if !closing && dropped.contains(name) && bytes[close - 1] != UInt8(ascii: "/") {
                    skipUntil = name
                } else if name == "br" {
                    out.append(0x0A)
                } else if blocks.contains(name) {
                    out.append(contentsOf: [0x0A, 0x0A])
                } else if name == "td" || name == "th" {
                    out.append(0x20)
                }
                continue
            }
            if skipUntil != nil {
                i += 1
                continue
            }
            if byte == UInt8(ascii: "&"), let (text, next) = entity(bytes, at: i) {
                out.append(contentsOf: text.utf8)
                i = next
                continue
            }
            out.append(byte)
            i += 1
        }
        return tidy(out)
    }

    private static func tagName(_ inner: ArraySlice<UInt8>) -> (String, Bool) {
        var slice = inner
        var closing = false
        if slice.first == UInt8(ascii: "/") {
            closing = true
            slice = slice.dropFirst()
        }
        let name = slice.prefix {
            ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39)
        }
        return (String(decoding: name, as: UTF8.self).lowercased(), closing)
    }

    private static func entity(_ bytes: [UInt8], at start: Int) -> (String, Int)? {
        let end = min(bytes.count, start + 12)
        guard let semi = bytes[(start + 1)..<end].firstIndex(of: UInt8(ascii: ";")) else { return nil }
        let name = String(decoding: bytes[(start + 1)..<semi], as: UTF8.self)
        if name.hasPrefix("#") {
            let digits = name.dropFirst()
            let value =
                digits.first == "x" || digits.first == "X" ? UInt32(digits.dropFirst(), radix: 16) : UInt32(digits)
            guard let value, value != 0, let scalar = Unicode.Scalar(value) else { return nil }
            return (String(Character(scalar)), semi + 1)
        }
        guard let text = entities[name.lowercased()] else { return nil }
        return (text, semi + 1)
    }

    private static func find(_ needle: [UInt8], in bytes: [UInt8], from: Int) -> Int? {
        guard needle.count <= bytes.count else { return nil }
        var i = from
        while i + needle.count <= bytes.count {
            if bytes[i] == needle[0] && bytes[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }

    /// Runs of spaces become one; lines are trimmed; more than one blank line becomes one.
    private static func tidy(_ bytes: [UInt8]) -> String {
        var lines: [[UInt8]] = []
        var line: [UInt8] = []
        var space = false
        func endLine() {
            lines.append(line)
            line.removeAll(keepingCapacity: true)
            space = false
        }
        for byte in bytes {
            if byte == 0x0A {
                endLine()
            } else if byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0C {
                space = !line.isEmpty
            } else {
                if space { line.append(0x20) }
                space = false
                line.append(byte)
            }
        }
        endLine()
        var out: [UInt8] = []
        var pendingBlank = false
        for line in lines {
            if line.isEmpty {
                pendingBlank = !out.isEmpty
                continue
            }
            if !out.isEmpty {
                out.append(0x0A)
                if pendingBlank { out.append(0x0A) }
            }
            out.append(contentsOf: line)
            pendingBlank = false
        }
        return String(decoding: out, as: UTF8.self)
    }
}
