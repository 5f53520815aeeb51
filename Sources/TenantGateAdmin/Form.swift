import TenantGateCore

/// A submitted `application/x-www-form-urlencoded` form (or a query string).
public struct Form: Sendable {
    /// Fields in order; a name may repeat.
    public let fields: [(String, String)]

    /// Why a form was refused.
    public enum Problem: Error, Equatable {
        case invalidUTF8
        case tooManyFields
    }

    /// Parses urlencoded bytes; invalid UTF-8 (after percent-decoding) refuses the whole form.
    public init(urlencoded bytes: [UInt8], maxFields: Int = 2000) throws(Problem) {
        var out: [(String, String)] = []
        for pair in bytes.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: true) {
            guard out.count < maxFields else { throw .tooManyFields }
            let parts = pair.split(separator: UInt8(ascii: "="), maxSplits: 1, omittingEmptySubsequences: false)
            let name = try Form.decode(parts[0])
            let value = parts.count > 1 ? try Form.decode(parts[1]) : ""
            out.append((name, value))
        }
        fields = out
    }

    /// A form of these fields (a submitted form with some values changed).
    public init(fields: [(String, String)]) { self.fields = fields }

    /// Parses a query string.
    public init(query: String) throws(Problem) { try self.init(urlencoded: Array(query.utf8)) }

    /// The first value of `name`.
    public subscript(name: String) -> String? { fields.first { $0.0 == name }?.1 }

    /// The first value of `name`, trimmed; nil when missing or blank.
    public func text(_ name: String) -> String? {
        guard let value = self[name] else { return nil }
        let trimmed = value.trimmingASCII()
        return trimmed.isEmpty ? nil : trimmed
    }

    private static func decode(_ bytes: ArraySlice<UInt8>) throws(Problem) -> String {
        guard let text = URLEncoding.decode(bytes) else { throw .invalidUTF8 }
        return text
    }

    /// Cookies from a `Cookie` header.
    public static func cookies(_ header: String?) -> [String: String] {
        var out: [String: String] = [:]
        for part in (header ?? "").split(separator: ";") {
            let kv = part.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { continue }
            let name = String(kv[0]).trimmingASCII()
            if out[name] == nil { out[name] = String(kv[1]).trimmingASCII() }
        }
        return out
    }
}
