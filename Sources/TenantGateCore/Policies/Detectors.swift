/// The built-in detectors. Each reads normalized text and reports spans with a score (1 for a certain
/// match); none uses a network or a model.
public enum DetectorID: String, Sendable, CaseIterable {
    case card = "pii.card"
    case iban = "pii.iban"
    case ssn = "pii.ssn_us"
    case email = "pii.email"
    case phone = "pii.phone"
    case ip = "pii.ip"
    case openAIKey = "secret.openai"
    case anthropicKey = "secret.anthropic"
    case awsKey = "secret.aws"
    case githubToken = "secret.github"
    case slackToken = "secret.slack"
    case privateKey = "secret.pem"
    case jwt = "secret.jwt"
    case entropy = "secret.entropy"
    case override = "inject.override"
    case roleSwitch = "inject.role_switch"
    case jailbreak = "inject.jailbreak"
    case systemExtraction = "inject.system_extraction"
    case delimiter = "inject.delimiter"

    /// The detectors a configured name selects: one id, or a family (`pii.*`, `secret.*`, `inject.*`).
    public static func select(_ name: String) -> [DetectorID]? {
        if let one = DetectorID(rawValue: name) { return [one] }
        guard name.hasSuffix(".*") || name.hasSuffix(".any") else { return nil }
        let family = String(name.prefix(upTo: name.lastIndex(of: ".") ?? name.endIndex)) + "."
        let all = allCases.filter { $0.rawValue.hasPrefix(family) }
        return all.isEmpty ? nil : all
    }

    /// Bytes of normalized text it needs to see to recognise a match (a longer match that is still growing
    /// at the end of the text is held whole, so this bounds the start of a match, not its length).
    public var longestMatch: Int {
        switch self {
        case .card: return 40
        case .iban: return 48
        case .ssn: return 16
        case .email: return 80
        case .phone: return 32
        case .ip: return 48
        case .openAIKey, .anthropicKey, .githubToken, .slackToken: return 48
        case .awsKey: return 24
        case .privateKey: return 48
        case .jwt: return 48
        case .entropy: return 40
        case .override, .roleSwitch, .jailbreak, .systemExtraction, .delimiter: return PhraseLists.longest + 8
        }
    }
}

/// One match of a rule in a text.
public struct Detection: Sendable, Equatable {
    /// The normalized byte range.
    public let range: Range<Int>
    public let score: Double
}

/// The pure matching functions of the built-in detectors, over normalized UTF-8 bytes.
public enum Detectors {
    /// Spans of `id` in `text`.
    public static func scan(_ id: DetectorID, _ text: [UInt8]) -> [Detection] {
        switch id {
        case .card: return cards(text)
        case .iban: return ibans(text)
        case .ssn: return ssns(text)
        case .email: return emails(text)
        case .phone: return phones(text)
        case .ip: return ips(text)
        case .openAIKey:
            return prefixed(text, ["sk-proj-", "sk-svcacct-", "sk-admin-", "sk-"], minBody: 20, not: ["sk-ant-"])
        case .anthropicKey: return prefixed(text, ["sk-ant-"], minBody: 20, not: [])
        case .awsKey: return aws(text)
        case .githubToken:
            return prefixed(text, ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"], minBody: 20, not: [])
        case .slackToken:
            return prefixed(text, ["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxe-"], minBody: 10, not: [])
        case .privateKey: return pem(text)
        case .jwt: return jwts(text)
        case .entropy: return highEntropy(text)
        case .override, .roleSwitch, .jailbreak, .systemExtraction, .delimiter:
            return PhraseLists.scan([id], text)
        }
    }

    /// Spans of every detector in `ids` (the phrase families in one pass).
    public static func scan(_ ids: [DetectorID], _ text: [UInt8]) -> [Detection] {
        let phrases = Set(ids.filter { PhraseLists.families.contains($0) })
        var out = phrases.isEmpty ? [] : PhraseLists.scan(phrases, text)
        for id in ids where !phrases.contains(id) { out += scan(id, text) }
        return out
    }

    // MARK: character classes

    @inline(__always) static func isDigit(_ b: UInt8) -> Bool { b &- 0x30 < 10 }
    @inline(__always) static func isAlpha(_ b: UInt8) -> Bool { (b | 0x20) &- 0x61 < 26 }
    @inline(__always) static func isAlnum(_ b: UInt8) -> Bool { isDigit(b) || isAlpha(b) }
    /// A letter, digit or underscore, or any non-ASCII byte (part of a word in another script).
    @inline(__always) static func isWord(_ b: UInt8) -> Bool { isAlnum(b) || b == 0x5F || b >= 0x80 }

    // MARK: payment cards

    /// 12–19 digits, in groups split by single spaces or dashes, passing Luhn, with a known issuer prefix
    /// and length; not part of a longer digit run.
    static func cards(_ t: [UInt8]) -> [Detection] {
        var out: [Detection] = []
        var digits: [UInt8] = []
        digits.reserveCapacity(24)
        var i = 0
        while i < t.count {
            guard isDigit(t[i]), i == 0 || !(isDigit(t[i - 1]) || t[i - 1] == 0x2E || isAlpha(t[i - 1])) else {
                i += 1
                continue
            }
            digits.removeAll(keepingCapacity: true)
            var j = i
            var lastDigit = i
            var separator: UInt8?
            while j < t.count, digits.count < 20 {
                if isDigit(t[j]) {
                    digits.append(t[j] - 0x30)
                    lastDigit = j
                    j += 1
                } else if (t[j] == 0x20 || t[j] == 0x2D), j + 1 < t.count, isDigit(t[j + 1]), isDigit(t[j - 1]),
                    separator == nil || separator == t[j]
                {
                    separator = t[j]
                    j += 1
                } else {
                    break
                }
            }
            let end = lastDigit + 1
            if (12...19).contains(digits.count), !(end < t.count && (isDigit(t[end]) || isAlpha(t[end]))),
                luhn(digits), issuerAccepts(digits)
            {
                out.append(Detection(range: i..<end, score: 1))
            }
            i = max(j, i + 1)
        }
        return out
    }

    static func luhn(_ digits: [UInt8]) -> Bool {
        var sum = 0
        for (k, d) in digits.reversed().enumerated() {
            var v = Int(d)
            if k % 2 == 1 {
                v *= 2
                if v > 9 { v -= 9 }
            }
            sum += v
        }
        return sum % 10 == 0
    }

    /// Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay, Maestro prefixes with their lengths.
    static func issuerAccepts(_ d: [UInt8]) -> Bool {
        func prefix(_ n: Int) -> Int { d.prefix(n).reduce(0) { $0 * 10 + Int($1) } }
        let n = d.count
        switch d[0] {
        case 4: return n == 13 || n == 16 || n == 19
        case 5:
            let p2 = prefix(2)
            return ((51...55).contains(p2) && n == 16) || ((50...59).contains(p2) && (12...19).contains(n))
        case 2: return (2221...2720).contains(prefix(4)) && n == 16
        case 3:
            let p2 = prefix(2)
            if p2 == 34 || p2 == 37 { return n == 15 }
            if (3528...3589).contains(prefix(4)) { return (16...19).contains(n) }
            if (300...305).contains(prefix(3)) || p2 == 36 || p2 == 38 || p2 == 39 { return (14...19).contains(n) }
            return false
        case 6:
            if prefix(4) == 6011 || prefix(2) == 65 || (644...649).contains(prefix(3)) { return (16...19).contains(n) }
            if prefix(2) == 62 { return (16...19).contains(n) }
            return (12...19).contains(n) && (prefix(2) == 63 || prefix(2) == 67)
        default: return false
        }
    }

    // MARK: IBAN

    static let ibanLengths: [String: Int] = [
        "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
        "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
        "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
        "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
        "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
        "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
        "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
        "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    ]

    /// Country code, two check digits and the BBAN (optionally in groups of four split by spaces): the
    /// country's length and ISO 7064 mod 97 = 1.
    static func ibans(_ t: [UInt8]) -> [Detection] {
        var out: [Detection] = []
        var i = 0
        while i + 4 < t.count {
            guard isAlpha(t[i]), isAlpha(t[i + 1]), isDigit(t[i + 2]), isDigit(t[i + 3]),
                i == 0 || !isAlnum(t[i - 1])
            else {
                i += 1
                continue
            }
            let country = String(decoding: [t[i] & 0xDF, t[i + 1] & 0xDF], as: UTF8.self)
            guard let length = ibanLengths[country] else {
                i += 1
                continue
            }
            var chars: [UInt8] = []
            var j = i
            var last = i
            while j < t.count, chars.count < length {
                if isAlnum(t[j]) {
                    chars.append(isAlpha(t[j]) ? t[j] & 0xDF : t[j])
                    last = j
                    j += 1
                } else if t[j] == 0x20, j + 1 < t.count, isAlnum(t[j + 1]), chars.count % 4 == 0 {
                    j += 1
                } else {
                    break
                }
            }
            let end = last + 1
            if chars.count == length, !(end < t.count && isAlnum(t[end])), mod97(chars) == 1 {
                out.append(Detection(range: i..<end, score: 1))
                i = end
            } else {
                i += 1
            }
        }
        return out
    }

    static func mod97(_ chars: [UInt8]) -> Int {
        var remainder = 0
        for c in chars.dropFirst(4) + chars.prefix(4) {
            if isDigit(c) {
                remainder = (remainder * 10 + Int(c - 0x30)) % 97
            } else {
                remainder = (remainder * 100 + Int(c - 0x41 + 10)) % 97
            }
        }
        return remainder
    }

    // MARK: US SSN

    /// `AAA-GG-SSSS` (or spaces): area not 000, 666 or 9xx, group not 00, serial not 0000, and not a known
    /// advertising number; nine bare digits count only with a context word (`ssn`, `social security`) in
    /// the 40 bytes before them.
    static func ssns(_ t: [UInt8]) -> [Detection] {
        var out: [Detection] = []
        var digits: [Int] = []
        digits.reserveCapacity(12)
        var i = 0
        while i + 9 <= t.count {
            guard isDigit(t[i]), i == 0 || !(isDigit(t[i - 1]) || t[i - 1] == 0x2D) else {
                i += 1
                continue
            }
            digits.removeAll(keepingCapacity: true)
            var j = i
            var separated = false
            while j < t.count, digits.count < 9 {
                if isDigit(t[j]) {
                    digits.append(Int(t[j] - 0x30))
                    j += 1
                } else if (t[j] == 0x2D || t[j] == 0x20), digits.count == 3 || digits.count == 5, j + 1 < t.count,
                    isDigit(t[j + 1])
                {
                    separated = true
                    j += 1
                } else {
                    break
                }
            }
            defer { i = max(i + 1, j) }
            guard digits.count == 9,
                !(j < t.count && (isDigit(t[j]) || t[j] == 0x2D && j + 1 < t.count && isDigit(t[j + 1])))
            else { continue }
            let area = digits[0] * 100 + digits[1] * 10 + digits[2]
            let group = digits[3] * 10 + digits[4]
            let serial = digits[5...].reduce(0) { $0 * 10 + $1 }
            let number = area * 1_000_000 + group * 10_000 + serial
            guard area != 0, area != 666, area < 900, group != 0, serial != 0,
                ![78_051_120, 219_099_999, 123_456_789].contains(number)
            else { continue }
            if !separated {
                let window = String(decoding: t[max(0, i - 40)..<i], as: UTF8.self).lowercased()
                guard window.contains("ssn") || window.contains("social security") || window.contains("tax id")
                else { continue }
            }
            out.append(Detection(range: i..<j, score: 1))
        }
        return out
    }

    // MARK: email

    /// `local@domain.tld`: a dot-atom local part of at most 64 bytes, a domain of labels with a letter TLD.
    static func emails(_ t: [UInt8]) -> [Detection] {
        var out: [Detection] = []
        func isLocal(_ b: UInt8) -> Bool {
            isAlnum(b) || b == 0x2E || b == 0x5F || b == 0x25 || b == 0x2B || b == 0x2D || b == 0x27
        }
        var at = 0
        while at < t.count {
            guard t[at] == 0x40 else {
                at += 1
                continue
            }
            var start = at
            while start > 0, isLocal(t[start - 1]), at - start < 64 { start -= 1 }
            while start < at, t[start] == 0x2E { start += 1 }
            var end = at + 1
            var lastDot = -1
            while end < t.count,
                isAlnum(t[end]) || t[end] == 0x2D || (t[end] == 0x2E && end + 1 < t.count && isAlnum(t[end + 1]))
            {
                if t[end] == 0x2E { lastDot = end }
                end += 1
            }
            let tld = lastDot > 0 ? t[(lastDot + 1)..<end] : []
            if start < at, lastDot > at + 1, tld.count >= 2, tld.allSatisfy(isAlpha) {
                out.append(Detection(range: start..<end, score: 1))
            }
            at = max(at + 1, end)
        }
        return out
    }

    // MARK: phone numbers

    /// E.164 (`+` and 8–15 digits, separators allowed) and NANP (`(NXX) NXX-XXXX`, area and exchange not
    /// starting with 0 or 1, exchange not N11), never inside a longer digit run.
    static func phones(_ t: [UInt8]) -> [Detection] {
        var out: [Detection] = []
        var digits: [Int] = []
        digits.reserveCapacity(20)
        var i = 0
        while i < t.count {
            let plus = t[i] == 0x2B
            guard plus || isDigit(t[i]) || t[i] == 0x28,
                i == 0
                    || !(isDigit(t[i - 1]) || isAlpha(t[i - 1]) || t[i - 1] == 0x2B || t[i - 1] == 0x2D
                        || t[i - 1] == 0x2E)
            else {
                i += 1
                continue
            }
            digits.removeAll(keepingCapacity: true)
            var j = plus ? i + 1 : i
            var last = i
            var groups = 0
            var previousSeparator = true
            var run = 0  // separators in a row: ") " is two
            while j < t.count, digits.count < 16 {
                let b = t[j]
                if isDigit(b) {
                    if previousSeparator { groups += 1 }
                    digits.append(Int(b - 0x30))
                    last = j
                    previousSeparator = false
                    run = 0
                } else if b == 0x20 || b == 0x2D || b == 0x2E || b == 0x28 || b == 0x29, run < 2,
                    !previousSeparator || b == 0x28 || (run == 1 && t[j - 1] == 0x29)
                {
                    previousSeparator = true
                    run += 1
                } else {
                    break
                }
                j += 1
            }
            let end = last + 1
            defer { i = max(i + 1, end) }
            guard !digits.isEmpty, !(end < t.count && (isDigit(t[end]) || isAlpha(t[end]))) else { continue }
            if plus {
                if (8...15).contains(digits.count), digits[0] != 0 { out.append(Detection(range: i..<end, score: 1)) }
                continue
            }
            let skip = digits.count == 11 && digits[0] == 1 ? 1 : 0
            // A bare run of ten digits is an order number, not a phone number: NANP needs its separators.
            guard digits.count - skip == 10, groups >= 3 else { continue }
            let a = digits[skip...].map { $0 }
            let areaOK = a[0] >= 2 && !(a[1] == 1 && a[2] == 1)
            let exchangeOK = a[3] >= 2 && !(a[4] == 1 && a[5] == 1)
            if areaOK && exchangeOK { out.append(Detection(range: i..<end, score: 1)) }
        }
        return out
    }

    // MARK: IP addresses

    /// Dotted IPv4 with every octet 0–255 (not a version string: no fifth part), and IPv6 with at least
    /// three colons of hex groups.
    static func ips(_ t: [UInt8]) -> [Detection] {
        var out: [Detection] = []
        var i = 0
        while i < t.count {
            let doubleColon = t[i] == 0x3A && i + 1 < t.count && t[i + 1] == 0x3A
            guard isDigit(t[i]) || isHex(t[i]) || doubleColon,
                i == 0 || !(isAlnum(t[i - 1]) || t[i - 1] == 0x2E || t[i - 1] == 0x3A)
            else {
                i += 1
                continue
            }
            if let end = ipv4(t, i) {
                out.append(Detection(range: i..<end, score: 1))
                i = end
            } else if let end = ipv6(t, i) {
                out.append(Detection(range: i..<end, score: 1))
                i = end
            } else {
                i += 1
            }
        }
        return out
    }

    @inline(__always) static func isHex(_ b: UInt8) -> Bool { isDigit(b) || (b | 0x20) &- 0x61 < 6 }

    static func ipv4(_ t: [UInt8], _ start: Int) -> Int? {
        var j = start
        for part in 0..<4 {
            var value = 0
            var n = 0
            while j < t.count, isDigit(t[j]), n < 3 {
                value = value * 10 + Int(t[j] - 0x30)
                n += 1
                j += 1
            }
            guard n > 0, value <= 255, !(n > 1 && t[j - n] == 0x30) else { return nil }
            if part < 3 {
                guard j < t.count, t[j] == 0x2E else { return nil }
                j += 1
            }
        }
        if j < t.count, isAlnum(t[j]) || (t[j] == 0x2E && j + 1 < t.count && isDigit(t[j + 1])) { return nil }
        return j
    }

    static func ipv6(_ t: [UInt8], _ start: Int) -> Int? {
        var j = start
        var colons = 0
        var groups = 0
        var doubled = false
        while j < t.count {
            var n = 0
            while j < t.count, isHex(t[j]), n < 5 {
                n += 1
                j += 1
            }
            if n > 4 { return nil }
            if n > 0 { groups += 1 }
            guard j < t.count, t[j] == 0x3A else { break }
            if j + 1 < t.count, t[j + 1] == 0x3A {
                if doubled { return nil }
                doubled = true
                colons += 1
                j += 1
            }
            colons += 1
            j += 1
        }
        guard colons >= 3, groups >= 2, groups <= 8, doubled || groups == 8 else { return nil }
        // Three colons in a row are no address.
        var k = start
        while k + 2 < j {
            if t[k] == 0x3A && t[k + 1] == 0x3A && t[k + 2] == 0x3A { return nil }
            k += 1
        }
        if j < t.count, isAlnum(t[j]) { return nil }
        while j > start, t[j - 1] == 0x3A, !(j >= 2 && t[j - 2] == 0x3A) { j -= 1 }
        return j
    }

    // MARK: secrets

    @inline(__always) static func isKeyChar(_ b: UInt8) -> Bool { isAlnum(b) || b == 0x2D || b == 0x5F }

    /// A prefix followed by at least `minBody` key characters, starting a word.
    static func prefixed(_ t: [UInt8], _ prefixes: [String], minBody: Int, not excluded: [String]) -> [Detection] {
        var out: [Detection] = []
        var firsts = [Bool](repeating: false, count: 256)
        for p in prefixes { if let b = p.utf8.first { firsts[Int(b)] = true } }
        var i = 0
        while i < t.count {
            guard firsts[Int(t[i])], i == 0 || !isKeyChar(t[i - 1]) else {
                i += 1
                continue
            }
            var matched = false
            for prefix in prefixes where startsWith(t, i, prefix) && !excluded.contains(where: { startsWith(t, i, $0) })
            {
                var end = i + prefix.utf8.count
                while end < t.count, isKeyChar(t[end]) { end += 1 }
                if end - i - prefix.utf8.count >= minBody {
                    out.append(Detection(range: i..<end, score: 1))
                    i = end
                    matched = true
                }
                break
            }
            if !matched { i += 1 }
        }
        return out
    }

    static func startsWith(_ t: [UInt8], _ i: Int, _ prefix: String) -> Bool {
        let p = prefix.utf8
        guard i + p.count <= t.count else { return false }
        var k = i
        for b in p {
            guard t[k] == b else { return false }
            k += 1
        }
        return true
    }

    /// AWS access key ids: `AKIA`/`ASIA`/`AGPA`/`AIDA`/`AROA` and 16 uppercase letters or digits.
    static func aws(_ t: [UInt8]) -> [Detection] {
        var out: [Detection] = []
        var i = 0
        while i + 20 <= t.count {
            if t[i] == 0x41, i == 0 || !isAlnum(t[i - 1]),
                ["AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"].contains(where: {
                    startsWith(t, i, $0)
                }),
                t[(i + 4)..<(i + 20)].allSatisfy({ isDigit($0) || $0 &- 0x41 < 26 }),
                !(i + 20 < t.count && isAlnum(t[i + 20]))
            {
                out.append(Detection(range: i..<(i + 20), score: 1))
                i += 20
            } else {
                i += 1
            }
        }
        return out
    }

    /// A PEM private key: from `-----BEGIN … PRIVATE KEY-----` to its `-----END … -----` (or to the end of
    /// the text, if the end has not come yet).
    static func pem(_ t: [UInt8]) -> [Detection] {
        var out: [Detection] = []
        var i = 0
        while let begin = find(t, "-----BEGIN ", from: i) {
            guard let close = find(t, "-----", from: begin + 11), close - begin < 64,
                String(decoding: t[(begin + 11)..<close], as: UTF8.self).hasSuffix("PRIVATE KEY")
            else {
                i = begin + 11
                continue
            }
            if let end = find(t, "-----END ", from: close + 5), let tail = find(t, "-----", from: end + 9) {
                out.append(Detection(range: begin..<(tail + 5), score: 1))
                i = tail + 5
            } else {
                out.append(Detection(range: begin..<t.count, score: 1))
                break
            }
        }
        return out
    }

    static func find(_ t: [UInt8], _ needle: String, from: Int) -> Int? {
        let n = Array(needle.utf8)
        guard let first = n.first, from < t.count else { return nil }
        var i = from
        let last = t.count - n.count
        while i <= last {
            if t[i] == first {
                var k = 1
                while k < n.count && t[i + k] == n[k] { k += 1 }
                if k == n.count { return i }
            }
            i += 1
        }
        return nil
    }

    /// `eyJ…` header, `.`, `eyJ…` claims, `.`, signature (base64url).
    static func jwts(_ t: [UInt8]) -> [Detection] {
        var out: [Detection] = []
        func isB64(_ b: UInt8) -> Bool { isAlnum(b) || b == 0x2D || b == 0x5F }
        var i = 0
        while let start = find(t, "eyJ", from: i) {
            // A token starts a base64url run: an `eyJ` inside a run is never one, so no run is read twice
            // from inside (a scan restarting at every `eyJ` of a 1 MiB run would be quadratic).
            if start > 0 && isB64(t[start - 1]) {
                var skip = start
                while skip < t.count, isB64(t[skip]) { skip += 1 }
                i = skip
                continue
            }
            var j = start
            var parts = 0
            var firstRunEnd = start
            while parts < 3 {
                let from = j
                while j < t.count, isB64(t[j]) { j += 1 }
                if parts == 0 { firstRunEnd = j }
                guard j - from >= 8 else { break }
                parts += 1
                if parts < 3 {
                    guard j + 3 < t.count, t[j] == 0x2E, startsWith(t, j + 1, "eyJ") || parts == 2 else { break }
                    j += 1
                }
            }
            if parts == 3 {
                out.append(Detection(range: start..<j, score: 1))
                i = j
            } else {
                // The header's run was read to its end; the next candidate lies past it.
                i = max(start + 3, firstRunEnd)
            }
        }
        return out
    }

    /// A run of at least 32 token characters (letters, digits, `+/=_-`) mixing classes, whose Shannon
    /// entropy reaches 4 bits per character: scores 0.5 at 4 bits, 1 at 4.5 and above.
    static func highEntropy(_ t: [UInt8]) -> [Detection] {
        func isToken(_ b: UInt8) -> Bool { isAlnum(b) || b == 0x2B || b == 0x2F || b == 0x3D || b == 0x5F || b == 0x2D }
        var out: [Detection] = []
        var i = 0
        while i < t.count {
            guard isToken(t[i]) else {
                i += 1
                continue
            }
            var j = i
            while j < t.count, isToken(t[j]) { j += 1 }
            if j - i >= 32 {
                let run = t[i..<j]
                var counts = [Int](repeating: 0, count: 256)
                for b in run { counts[Int(b)] += 1 }
                let n = Double(run.count)
                var bits = 0.0
                for c in counts where c > 0 {
                    let p = Double(c) / n
                    bits -= p * log2(p)
                }
                let classes = [
                    run.contains(where: isDigit), run.contains { $0 &- 0x61 < 26 }, run.contains { $0 &- 0x41 < 26 },
                ]
                .filter { $0 }.count
                if bits >= 4.0 && classes >= 2 {
                    out.append(Detection(range: i..<j, score: min(1, 0.5 + (bits - 4.0))))
                }
            }
            i = j
        }
        return out
    }

    /// log₂ without Foundation.
    static func log2(_ x: Double) -> Double {
        // x in (0, 1]: split into mantissa and exponent, then a series for ln(m).
        var m = x
        var e = 0.0
        while m < 0.5 {
            m *= 2
            e -= 1
        }
        let y = (m - 1) / (m + 1)
        let y2 = y * y
        var term = y
        var sum = 0.0
        var k = 1.0
        while k < 40 {
            sum += term / k
            term *= y2
            k += 2
        }
        return e + 2 * sum / 0.6931471805599453
    }
}
