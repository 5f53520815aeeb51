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

}
