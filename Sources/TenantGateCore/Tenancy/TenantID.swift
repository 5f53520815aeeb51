/// A validated tenant id: `[a-z0-9][a-z0-9_-]{0,62}`.
public struct TenantID: Hashable, Sendable, CustomStringConvertible {
    /// The id text.
    public let rawValue: String

    /// Validates `raw`; nil if it does not match the SPEC's pattern.
    public init?(_ raw: String) {
        let bytes = raw.utf8
        guard let first = bytes.first, bytes.count <= 63 else { return nil }
        guard TenantID.isLowerAlnum(first) else { return nil }
        for b in bytes.dropFirst() where !(TenantID.isLowerAlnum(b) || b == UInt8(ascii: "_") || b == UInt8(ascii: "-"))
        {
            return nil
        }
        rawValue = raw
    }

    private static func isLowerAlnum(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
    }

    public var description: String { rawValue }
}
