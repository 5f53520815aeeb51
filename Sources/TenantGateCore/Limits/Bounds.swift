/// The documented bounds on every number a client, an upstream or a configuration controls, and
/// arithmetic on them that cannot trap: a trap on the request path would end every in-flight call of
/// the worker, whatever its tenant.
public enum Bounds {
    /// Largest completion a request may ask for when the catalog gives the model no `max_tokens`.
    public static let maxCompletionTokens = 1_048_576
    /// Largest token count accepted from an upstream's usage report; larger (or negative) values are
    /// clamped, so sums and costs stay far from `Int64.max`.
    public static let maxReportedTokens = 1 << 40
    /// Largest `n` (completions per request) accepted.
    public static let maxChoices = 128
    /// Largest `Retry-After` honoured from an upstream, seconds.
    public static let maxRetryAfterSeconds = 600
    /// The most one request may cost, nano-USD (10 million USD): a settled cost is clamped to it (an upstream
    /// reporting absurd usage), and a request whose worst case reaches it is refused. Counters then take
    /// hundreds of thousands of such requests to approach `Int64.max`, and their SQL saturates there.
    public static let maxRequestCostNano: Int64 = 10_000_000_000_000_000
    /// Bytes of a client-chosen identifier that is stored, logged or templated (`user`, `metadata.user_id`).
    public static let maxUserBytes = 256

    /// `value` clamped to `0...maxReportedTokens` (nil counts as 0).
    public static func reportedTokens(_ value: Int?) -> Int {
        min(max(value ?? 0, 0), maxReportedTokens)
    }

    /// Most dimensions of a stored embedding (documents, semantic cache): 16 KiB a vector.
    public static let maxEmbeddingDimensions = 4096

    /// Whether `text` is a short identifier fit to store, log and put in a template: 1…`maxUserBytes`
    /// bytes of UTF-8 with no control characters.
    public static func isIdentifier(_ text: String) -> Bool {
        guard !text.isEmpty, text.utf8.count <= maxUserBytes else { return false }
        return text.unicodeScalars.allSatisfy { !($0.value < 0x20 || (0x7F...0x9F).contains($0.value)) }
    }

    /// Whether every byte of `text` is printable ASCII (fit for an HTTP header value sent upstream).
    public static func isPrintableASCII(_ text: String) -> Bool {
        text.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7F }
    }
}

extension FixedWidthInteger where Self: SignedInteger {
    /// `self + other`, saturating at the type's bounds instead of trapping.
    public func saturatingAdd(_ other: Self) -> Self {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }

    /// `self * other`, saturating at the type's bounds instead of trapping.
    public func saturatingMultiply(_ other: Self) -> Self {
        let (product, overflow) = multipliedReportingOverflow(by: other)
        return overflow ? ((self < 0) == (other < 0) ? .max : .min) : product
    }
}
