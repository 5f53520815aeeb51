/// A one-line description of an unexpected error, for the request log (never for the client): its type
/// and text, control characters as spaces, at most `maxBytes` of UTF-8 (cut between characters). The
/// errors this describes come from our own code and the C libraries' messages: SQLite's and
/// PostgreSQL's primary messages name a constraint or a type and at most one offending value (never a
/// whole text: the gateway binds typed values), and the bound keeps any one line short.
public enum ErrorDetail {
    public static let maxBytes = 300

    public static func of(_ error: any Error) -> String {
        var out = String.UnicodeScalarView()
        var bytes = 0
        for scalar in "\(type(of: error)): \(String(describing: error))".unicodeScalars {
            let size = UTF8.width(scalar)
            guard bytes + size <= maxBytes else { break }
            bytes += size
            out.append(scalar.value < 0x20 || scalar.value == 0x7F ? " " : scalar)
        }
        return String(out)
    }
}
