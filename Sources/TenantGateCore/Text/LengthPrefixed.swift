/// Bytes made of fields, each preceded by its length (8 bytes, little-endian): no two different field lists
/// encode alike, so a hash or a MAC over them cannot be fooled by moving bytes from one field to the next.
public struct LengthPrefixed: Sendable {
    public private(set) var bytes: [UInt8] = []

    /// An empty encoding.
    public init() {}

    /// Appends one field.
    public mutating func field(_ value: [UInt8]) {
        var n = UInt64(value.count)
        for _ in 0..<8 {
            bytes.append(UInt8(n & 0xFF))
            n >>= 8
        }
        bytes += value
    }

    /// Appends one text field (UTF-8).
    public mutating func field(_ text: String) { field(Array(text.utf8)) }
}
