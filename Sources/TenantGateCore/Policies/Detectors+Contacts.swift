/// E-mail addresses, phone numbers and IP addresses.
extension Detectors {
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
}
