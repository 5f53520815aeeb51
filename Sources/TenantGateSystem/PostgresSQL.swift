import CPostgres
import Glibc

/// The store's SQL is written once, with SQLite's parameters (`?` and `?NNN`); PostgreSQL numbers its
/// parameters `$1`, `$2`, … This rewrites them the way SQLite numbers them (a bare `?` takes one more than
/// the largest number so far), leaving string literals, quoted identifiers and comments alone. Done once
/// per statement, when it is prepared.
public enum PostgresSQL {
    /// The store's SQL (SQLite's dialect, kept to what both engines share) as PostgreSQL takes it:
    /// parameters numbered (`placeholders`); SQLite's two-argument scalar `MAX(0, x)` as `GREATEST(0, x)`
    /// (typed bigint, so a parameter in it is not taken for a 32-bit integer); `CAST(… AS INTEGER)` as
    /// `BIGINT` (SQLite's integers are 64-bit, PostgreSQL's `integer` is not).
    public static func translate(_ sql: String) -> String {
        placeholders(sql).replacing("MAX(0, ", with: "GREATEST(0::bigint, ").replacing(
            " AS INTEGER)", with: " AS BIGINT)")
    }

    public static func placeholders(_ sql: String) -> String {
        let bytes = Array(sql.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 8)
        var largest = 0
        var i = 0
        while i < bytes.count {
            let c = bytes[i]
            switch c {
            case UInt8(ascii: "'"), UInt8(ascii: "\""):
                // A quoted run ends at the next unpaired quote ('' and "" stand for the quote itself).
                var j = i + 1
                while j < bytes.count {
                    if bytes[j] == c {
                        if j + 1 < bytes.count && bytes[j + 1] == c { j += 2 } else { break }
                    } else {
                        j += 1
                    }
                }
                let end = min(j + 1, bytes.count)
                out.append(contentsOf: bytes[i..<end])
                i = end
            case UInt8(ascii: "-") where i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "-"):
                let end = bytes[i...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count
                out.append(contentsOf: bytes[i..<end])
                i = end
            case UInt8(ascii: "/") where i + 1 < bytes.count && bytes[i + 1] == UInt8(ascii: "*"):
                var j = i + 2
                while j + 1 < bytes.count && !(bytes[j] == UInt8(ascii: "*") && bytes[j + 1] == UInt8(ascii: "/")) {
                    j += 1
                }
                let end = min(j + 2, bytes.count)
                out.append(contentsOf: bytes[i..<end])
                i = end
            case UInt8(ascii: "?"):
                var j = i + 1
                var number = 0
                while j < bytes.count, bytes[j] >= UInt8(ascii: "0"), bytes[j] <= UInt8(ascii: "9"), number < 100_000 {
                    number = number * 10 + Int(bytes[j] - UInt8(ascii: "0"))
                    j += 1
                }
                if j == i + 1 { number = largest + 1 }
                largest = max(largest, number)
                out.append(UInt8(ascii: "$"))
                out.append(contentsOf: String(number).utf8)
                i = j
            default:
                out.append(c)
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
