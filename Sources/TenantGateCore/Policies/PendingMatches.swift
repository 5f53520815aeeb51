/// Where a match may still be starting at the end of a text that is still growing: the stream guard
/// releases text only before that point. Each detector looks at the tail for the beginning of its own
/// shape (digits for a card, a word that could become a key prefix, a partial phrase), so ordinary prose
/// is held back by a few bytes at most, not by the longest possible match.
extension Detectors {
    /// The earliest index of `t` at which a match of `id` might begin without being recognisable yet
    /// (`t.count`: nothing pending).
    public static func pendingStart(_ id: DetectorID, _ t: [UInt8]) -> Int {
        let n = t.count
        switch id {
        case .card:
            return firstIn(t, run(t, max: id.longestMatch) { isDigit($0) || $0 == 0x20 || $0 == 0x2D }, where: isDigit)
        case .ssn:
            return firstIn(t, run(t, max: id.longestMatch) { isDigit($0) || $0 == 0x20 || $0 == 0x2D }, where: isDigit)
        case .phone:
            let start = run(t, max: id.longestMatch) {
                isDigit($0) || $0 == 0x2B || $0 == 0x28 || $0 == 0x29 || $0 == 0x20 || $0 == 0x2D || $0 == 0x2E
            }
            return firstIn(t, start) { isDigit($0) || $0 == 0x2B || $0 == 0x28 }
        case .ip:
            return firstIn(t, run(t, max: id.longestMatch) { isHex($0) || $0 == 0x2E || $0 == 0x3A }) {
                isHex($0) || $0 == 0x3A
            }
        case .email:
            let start = run(t, max: id.longestMatch) {
                isAlnum($0) || $0 == 0x40 || $0 == 0x2E || $0 == 0x5F || $0 == 0x25 || $0 == 0x2B || $0 == 0x2D
                    || $0 == 0x27
            }
            return firstIn(t, start) { $0 != 0x2E }
        case .iban:
            // Word starts in the tail that could be the beginning of `CCdd…`.
            var p = max(0, n - id.longestMatch)
            while p < n {
                if (p == 0 || !isAlnum(t[p - 1])) && isAlpha(t[p]) && ibanShape(t, from: p) { return p }
                p += 1
            }
            return n
        case .openAIKey: return keyStart(t, ["sk-"], cap: 256)
        case .anthropicKey: return keyStart(t, ["sk-ant-"], cap: 256)
        case .githubToken: return keyStart(t, ["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"], cap: 256)
        case .slackToken: return keyStart(t, ["xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xoxe-"], cap: 256)
        case .awsKey: return keyStart(t, ["AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"], cap: 24)
        case .jwt: return keyStart(t, ["eyJ"], cap: 4096, dots: true)
        case .entropy:
            let start = run(t, max: 256) {
                isAlnum($0) || $0 == 0x2B || $0 == 0x2F || $0 == 0x3D || $0 == 0x5F || $0 == 0x2D
            }
            return start
        case .privateKey:
            // A header that has begun (`-`, `--`, …, `-----BEGIN RSA PRIVATE KEY-----` not yet closed).
            let from = max(0, n - 64)
            var p = from
            while p < n {
                if t[p] == 0x2D && isPrefixOrStart(t, p, "-----BEGIN ") { return p }
                p += 1
            }
            return n
        case .override, .roleSwitch, .jailbreak, .systemExtraction, .delimiter:
            return PhraseLists.all.pendingStart(t)
        }
    }

    /// The start of the longest suffix of `t` (at most `max` bytes) whose bytes all satisfy `allowed`.
    static func run(_ t: [UInt8], max: Int, _ allowed: (UInt8) -> Bool) -> Int {
        var p = t.count
        let floor = Swift.max(0, t.count - max)
        while p > floor, allowed(t[p - 1]) { p -= 1 }
        return p
    }

    /// The first index from `start` whose byte satisfies `match` (`t.count` if none).
    static func firstIn(_ t: [UInt8], _ start: Int, where match: (UInt8) -> Bool) -> Int {
        var p = start
        while p < t.count, !match(t[p]) { p += 1 }
        return p
    }

    /// Whether `t[p...]` could still become the start of an IBAN (`CCdd` then letters, digits, spaces).
    static func ibanShape(_ t: [UInt8], from p: Int) -> Bool {
        for k in 0..<(t.count - p) {
            let b = t[p + k]
            switch k {
            case 0, 1: if !isAlpha(b) { return false }
            case 2, 3: if !isDigit(b) { return false }
            default: if !(isAlnum(b) || b == 0x20) { return false }
            }
        }
        if t.count - p >= 2 {
            let country = String(decoding: [t[p] & 0xDF, t[p + 1] & 0xDF], as: UTF8.self)
            return ibanLengths[country] != nil
        }
        return true
    }

    /// The start of the trailing run of key characters when it is, or could still become, one of `prefixes`.
    static func keyStart(_ t: [UInt8], _ prefixes: [String], cap: Int, dots: Bool = false) -> Int {
        let start = run(t, max: cap) { isKeyChar($0) || (dots && $0 == 0x2E) }
        guard start < t.count else { return t.count }
        for prefix in prefixes where isPrefixOrStart(t, start, prefix) { return start }
        return t.count
    }

    /// Whether `t[p...]` starts with `prefix`, or is itself the beginning of `prefix`.
    static func isPrefixOrStart(_ t: [UInt8], _ p: Int, _ prefix: String) -> Bool {
        var k = p
        for b in prefix.utf8 {
            if k == t.count { return true }
            if t[k] != b { return false }
            k += 1
        }
        return true
    }
}

extension PhraseMatcher {
    /// Where the longest phrase that the end of `text` has begun starts (`text.count`: none).
    public func pendingStart(_ text: [UInt8]) -> Int {
        let (collapsed, origin) = PhraseMatcher.collapse(text)
        let depth = pendingDepth(collapsed)
        guard depth > 0 else { return text.count }
        let start = collapsed.count - depth
        return origin.isEmpty ? start : Int(origin[start])
    }
}
