/// A fragment of HTML. Escaping is the default: interpolating a `String` (or any value) escapes all five
/// special characters, so text from a tenant, a form or the database can never become markup. Only
/// literals written in this module and other `HTML` values are trusted.
public struct HTML: Sendable, Equatable, ExpressibleByStringInterpolation {
    /// The markup.
    public private(set) var text: String

    /// Empty markup.
    public init() { text = "" }

    /// A trusted literal.
    public init(stringLiteral value: StaticString) { text = value.description }

    public init(stringInterpolation: Interpolation) { text = stringInterpolation.text }

    /// Builds markup from trusted literal segments and escaped values.
    public struct Interpolation: StringInterpolationProtocol {
        var text = ""

        public init(literalCapacity: Int, interpolationCount: Int) {
            text.reserveCapacity(literalCapacity + interpolationCount * 16)
        }

        public mutating func appendLiteral(_ literal: StaticString) { text += literal.description }

        /// Text: escaped.
        public mutating func appendInterpolation(_ value: String) { HTML.escape(value, into: &text) }

        /// Numbers and other plain values: escaped like text.
        public mutating func appendInterpolation<T: CustomStringConvertible>(_ value: T) {
            HTML.escape(value.description, into: &text)
        }

        /// Markup: as is.
        public mutating func appendInterpolation(_ html: HTML) { text += html.text }

        /// A list of fragments, concatenated.
        public mutating func appendInterpolation(_ list: [HTML]) {
            for html in list { text += html.text }
        }
    }

    /// Appends another fragment.
    public static func += (lhs: inout HTML, rhs: HTML) { lhs.text += rhs.text }

    /// Concatenates fragments.
    public static func + (lhs: HTML, rhs: HTML) -> HTML {
        var out = lhs
        out += rhs
        return out
    }

    /// `&`, `<`, `>`, `"` and `'` as character references.
    public static func escape(_ s: String, into out: inout String) {
        // Most text has nothing to escape: append it whole.
        let special = s.utf8.contains { $0 == 0x26 || $0 == 0x3C || $0 == 0x3E || $0 == 0x22 || $0 == 0x27 }
        guard special else {
            out += s
            return
        }
        for scalar in s.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(scalar)
            }
        }
    }

    /// The escaped text of `s`.
    public static func escaped(_ s: String) -> String {
        var out = ""
        escape(s, into: &out)
        return out
    }
}
