/// W3C Trace Context: the `traceparent` the gateway continues (or starts) for each request.
public struct TraceContext: Sendable, Equatable {
    /// 32 lowercase hex digits.
    public let traceID: String
    /// The caller's span id, if a valid `traceparent` came in.
    public let parentID: String?

    /// Continues `header` if it is a valid version-00 `traceparent`, else starts a trace with `newTraceID`.
    public init(header: String?, newTraceID: String) {
        if let header, let parsed = TraceContext.parse(header) {
            traceID = parsed.0
            parentID = parsed.1
        } else {
            traceID = newTraceID
            parentID = nil
        }
    }

    /// The `traceparent` to send upstream, with the gateway's own span id.
    public func traceparent(spanID: String) -> String { "00-\(traceID)-\(spanID)-01" }

    static func parse(_ header: String) -> (String, String)? {
        // Byte-level: `Character.isHexDigit` also accepts full-width digits, which must never reach a header.
        guard header.utf8.count <= 512, header.utf8.allSatisfy({ $0 < 0x80 }) else { return nil }
        let parts = header.trimmingASCII(" \t").split(separator: "-", omittingEmptySubsequences: false)
        let hex: (Substring) -> Bool = { part in
            part.utf8.allSatisfy {
                (0x30...0x39).contains($0) || (0x61...0x66).contains($0) || (0x41...0x46).contains($0)
            }
        }
        guard parts.count >= 4, parts[0].utf8.count == 2, parts[0] != "ff", parts[1].utf8.count == 32,
            parts[2].utf8.count == 16, parts[3].utf8.count == 2, parts.prefix(4).allSatisfy(hex),
            parts[0] == "00" ? parts.count == 4 : true
        else { return nil }
        let trace = parts[1].lowercased()
        let parent = parts[2].lowercased()
        guard trace != String(repeating: "0", count: 32), parent != String(repeating: "0", count: 16) else {
            return nil
        }
        return (trace, parent)
    }
}
