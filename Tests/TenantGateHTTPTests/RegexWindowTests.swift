import Testing

@testable import TenantGateSystem

/// Windowed tenant-pattern matching finds what one search over the whole subject finds (for matches within
/// the span limit), on text that puts matches and multibyte characters across every window edge.
@Suite struct RegexWindowTests {
    /// A deterministic mix of words, digit runs, multibyte letters and separators.
    static func text(_ size: Int, seed: UInt64) -> [UInt8] {
        let pieces = ["ab", "abbbc", "123", "4567890123", "é", "日本", " ", "  ", "x@y.com", "aé1", "\n", "abc", "zz"]
        var state = seed
        var out: [UInt8] = []
        while out.count < size {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            out += Array(pieces[Int(state >> 33) % pieces.count].utf8)
        }
        return out
    }

    @Test(arguments: [
        "[0-9]{3,12}", "ab+c", "é[a-z1]", "日本", "[a-z]{1,20}@[a-z]{1,20}\\.com", "\\w{5}", "(?<=b)c", "c$", "^ab",
        "[^ ]{8,40}",
    ])
    func windowsFindWhatTheWholeSubjectSearchFinds(pattern: String) throws {
        let regex = try Regex(pattern)
        for seed in UInt64(1)...4 {
            let subject = RegexWindowTests.text(20_000, seed: seed)
            let span = 64
            // One window over everything: PCRE2's own answer.
            let whole = try regex.matches(in: subject, maxSpan: subject.count).filter { $0.count <= span }
            let windowed = try regex.matches(in: subject, maxSpan: span)
            #expect(windowed == whole, "\(pattern) seed \(seed): \(windowed.count) vs \(whole.count)")
        }
    }

    @Test func aMatchLongerThanTheSpanIsSkippedAndTheScanGoesOn() throws {
        let regex = try Regex("[0-9]+")
        let subject = Array((String(repeating: "7", count: 1000) + " 42 " + String(repeating: "9", count: 10)).utf8)
        let found = try regex.matches(in: subject, maxSpan: 16)
        // The long run is cut into windows and dropped; what follows is still found.
        #expect(found.contains(1001..<1003))
        #expect(found.contains(1004..<1014))
    }

    @Test func patternsThatMatchTheEmptyStringAreRefused() {
        for pattern in ["a*", "(x)?", "\\b", "(?=a)", ""] {
            #expect(throws: RegexError.self) { try Regex.validate(pattern) }
        }
        #expect(throws: Never.self) { try Regex.validate("project-[0-9]+") }
    }

    @Test func aStopRequestEndsTheScan() throws {
        let regex = try Regex("x")
        let subject = [UInt8](repeating: 0x61, count: 1 << 20)
        #expect(throws: RegexError.self) { try regex.matches(in: subject, maxSpan: 256, stop: { true }) }
    }
}
