/// Lowercase hexadecimal digits, for the encoders of the domain (JSON `\u00XX` escapes, trace ids).
enum Hex {
    static let lowerDigits: [UInt8] = Array("0123456789abcdef".utf8)
}
