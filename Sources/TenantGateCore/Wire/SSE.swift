/// One server-sent event as received: its raw bytes (without the blank line) and its `data` payload.
public struct SSEEvent: Sendable, Equatable {
    /// The `event:` field, if any.
    public var event: String?
    /// The joined `data:` lines.
    public var data: String
}

/// Splits a byte stream into server-sent events, however the bytes are chunked.
public struct SSEParser: Sendable {
    private var buffer: [UInt8] = []
    /// Buffered bytes above which the stream is considered broken.
    public let maxEventBytes: Int

    /// Creates a parser.
    public init(maxEventBytes: Int = 4 << 20) { self.maxEventBytes = maxEventBytes }

    /// Feeds bytes; returns the events completed by them. Nil if one event grew beyond the limit.
    public mutating func feed(_ bytes: [UInt8]) -> [SSEEvent]? {
        // The buffer holds one unfinished event with no blank line in it: only its last two bytes can
        // begin one, so scanning resumes there (rescanning it all made a long event quadratic).
        var i = max(0, buffer.count - 2)
        buffer.append(contentsOf: bytes)
        var events: [SSEEvent] = []
        var start = 0
        while i < buffer.count {
            // An event ends at an empty line: "\n\n" or "\r\n\r\n" (or mixed).
            if buffer[i] == 0x0A {
                var j = i + 1
                if j < buffer.count, buffer[j] == 0x0D { j += 1 }
                if j < buffer.count, buffer[j] == 0x0A {
                    if let event = SSEParser.parse(buffer[start..<i]) { events.append(event) }
                    start = j + 1
                    i = start
                    continue
                }
            }
            i += 1
        }
        if start > 0 { buffer.removeFirst(start) }
        if buffer.count > maxEventBytes { return nil }
        return events
    }

    /// Whatever is left when the stream ends (an event without its final blank line).
    public mutating func finish() -> SSEEvent? {
        defer { buffer.removeAll() }
        return SSEParser.parse(buffer[...])
    }

    private static func parse(_ block: ArraySlice<UInt8>) -> SSEEvent? {
        var event: String?
        var data: [String] = []
        for rawLine in block.split(separator: 0x0A, omittingEmptySubsequences: true) {
            var line = rawLine
            if line.last == 0x0D { line = line.dropLast() }
            if line.first == UInt8(ascii: ":") { continue }
            let text = String(decoding: line, as: UTF8.self)
            let (field, value): (Substring, Substring)
            if let colon = text.firstIndex(of: ":") {
                field = text[..<colon]
                var v = text[text.index(after: colon)...]
                if v.first == " " { v = v.dropFirst() }
                value = v
            } else {
                field = text[...]
                value = ""
            }
            if field == "data" { data.append(String(value)) } else if field == "event" { event = String(value) }
        }
        if data.isEmpty && event == nil { return nil }
        return SSEEvent(event: event, data: data.joined(separator: "\n"))
    }

    /// Frames `data` (and optionally an event name) as SSE bytes, splitting multi-line data.
    public static func frame(data: String, event: String? = nil) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(data.utf8.count + 16 + (event?.utf8.count ?? 0))
        if let event {
            out.append(contentsOf: "event: ".utf8)
            out.append(contentsOf: event.utf8)
            out.append(0x0A)
        }
        for line in data.utf8.split(separator: 0x0A, omittingEmptySubsequences: false) {
            out.append(contentsOf: "data: ".utf8)
            out.append(contentsOf: line)
            out.append(0x0A)
        }
        out.append(0x0A)
        return out
    }
}
