/// A secret value (an upstream API key) whose description never shows it.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The secret itself; only for the upstream request.
    public let value: String

    /// Wraps `value`.
    public init(_ value: String) { self.value = value }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }

    /// `sk-…abcd`: enough to recognise a key, never enough to use it.
    public static func mask(_ key: String) -> String {
        let chars = Array(key)
        guard chars.count >= 12 else { return "…" }
        return String(chars.prefix(3)) + "…" + String(chars.suffix(4))
    }

    /// The prefix of a stored key's reference in configuration documents.
    public static let referencePrefix = "encrypted:"
}
