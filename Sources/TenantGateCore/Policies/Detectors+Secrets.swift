/// Secrets: provider keys, AWS keys, PEM blocks, JWTs, high-entropy tokens.
extension Detectors {
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
