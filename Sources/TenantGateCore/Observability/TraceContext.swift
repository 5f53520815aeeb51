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
        let parts = header.trimmingSpaces().split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[0].count == 2, parts[0] != "ff", parts[1].count == 32, parts[2].count == 16,
            parts[3].count == 2, parts.allSatisfy({ $0.allSatisfy(\.isHexDigit) }),
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

extension String {
    fileprivate func trimmingSpaces() -> Substring {
        var s = self[...]
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return s
    }
}
