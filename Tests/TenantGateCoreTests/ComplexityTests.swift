import Synchronization
import Testing

@testable import TenantGateCore

/// Worst-case inputs for every scan on the request path, timed at 64 KiB and at 1 MiB: a linear scan
/// takes about 16 times as long on the larger one, a quadratic one about 256 times. The bound (48×) sits
/// far from both so that a noisy machine does not fail a linear scan; an absolute ceiling catches a scan
/// that is linear but far too slow.
enum Complexity {
    static let small = 64 << 10
    static let large = 1 << 20

    /// `unit` repeated to `size` bytes.
    static func repeated(_ unit: String, _ size: Int) -> [UInt8] {
        let bytes = Array(unit.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(size + bytes.count)
        while out.count < size { out += bytes }
        return Array(out.prefix(size))
    }

    /// Fastest of `runs` runs of `body`, in seconds.
    static func fastest(_ runs: Int, _ body: () -> Void) -> Double {
        let clock = ContinuousClock()
        var best = Double.infinity
        for _ in 0..<runs {
            let elapsed = clock.measure(body)
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            best = min(best, seconds)
        }
        return best
    }

    /// Expects `work` to be linear on inputs made by `make` (and under `ceiling` seconds on 1 MiB).
    static func expectLinear(
        _ name: String, ceiling: Double = 20, make: (Int) -> [UInt8], _ work: ([UInt8]) -> Void,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let smallInput = make(small)
        let largeInput = make(large)
        let t64 = fastest(3) { work(smallInput) }
        let t1M = fastest(1) { work(largeInput) }
        let ratio = t1M / max(t64, 1e-6)
        // Under 50 ms on 1 MiB is fast whatever the ratio (timer noise dominates tiny times).
        #expect(
            t1M < 0.05 || ratio < 48, "\(name): \(t64 * 1000) ms on 64 KiB, \(t1M * 1000) ms on 1 MiB (×\(ratio))",
            sourceLocation: sourceLocation)
        #expect(t1M < ceiling, "\(name): \(t1M) s on 1 MiB", sourceLocation: sourceLocation)
    }

    /// Inputs that make scans restart inside runs, or walk back and forth: each detector's own prefixes,
    /// separators and classes, repeated.
    static let hostileUnits = [
        "eyJ", "eyJ.", "eyJhbGciOiJIUzI1NiJ9.", "eyJhbGciOiJIUzI1NiJ9.eyJ", "sk-", "sk-ant-", "sk-proj-", "ghp_",
        "github_pat_", "xoxb-", "AKIA", "AKIAAAAA", "-----BEGIN ", "-----BEGIN RSA PRIVATE KEY-----", "-----END ",
        "-", "@", "a@", "a.a@", ".@a", "@a.", "4", "4 ", "4-", "4111 ", "+1 ", "+", "(", "(415) ", ") ", "1:",
        "1.", "1.1.", "::", "a:", "fe80::", "DE89", "DE89 ", "GB82 WEST ", "ssn 123", "123-45-", "123 45 ",
        "ignore previous ", "ignore ", "system", "<|im_start|>", "a", "a ", "aA1+/", "４", "\u{200B}a", "é",
        "\u{FF21}\u{FF22}", "ﬁ",
    ]
}

@Suite struct DetectorComplexityTests {
    @Test(arguments: Complexity.hostileUnits)
    func everyDetectorIsLinear(unit: String) {
        Complexity.expectLinear("all detectors over \(unit.debugDescription)", make: { Complexity.repeated(unit, $0) })
        {
            _ = Detectors.scan(DetectorID.allCases, $0)
        }
    }

    /// The JWT detector used to restart at every `eyJ` inside the run it had just read: 1 MiB of `eyJ`
    /// held a core for minutes.
    @Test func jwtRunIsReadOnce() {
        Complexity.expectLinear("secret.jwt over eyJ", make: { Complexity.repeated("eyJ", $0) }) {
            _ = Detectors.scan([.jwt], $0)
        }
        // Still found where it is, beside hostile runs.
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
        let text = Array(("eyJeyJeyJ " + token + " eyJ").utf8)
        let found = Detectors.scan([.jwt], text)
        #expect(found.map(\.range) == [10..<(10 + token.utf8.count)])
    }

    @Test(arguments: Complexity.hostileUnits.prefix(24))
    func normalizationAndKeywordsAreLinear(unit: String) {
        let engine = PolicyEngine(
            set: PolicySet(
                rules: [
                    Policy(
                        name: "all", phase: .egress,
                        matcher: .detectors(DetectorID.allCases, label: "all"), action: .redact),
                    Policy(
                        name: "words", phase: .egress,
                        matcher: .keywords(KeywordList(["ignore previous", "a a", "eyJ"])),
                        action: .redact),
                ], holdBackOverride: nil), folding: BasicFolding(), patterns: { _ in nil })
        Complexity.expectLinear("engine.check over \(unit.debugDescription)", make: { Complexity.repeated(unit, $0) }) {
            _ = engine.check($0, phase: .egress)
        }
    }

    /// A stream fed in 16-byte deltas: a held run must not be rescanned for every delta.
    @Test(arguments: ["eyJ", "sk-", "4", "a@", "-----BEGIN RSA PRIVATE KEY-----", "aA1+/", "1:", "ignore "])
    func streamGuardIsLinearInSmallDeltas(unit: String) {
        let engine = PolicyEngine(
            set: PolicySet(
                rules: [
                    Policy(
                        name: "all", phase: .midstream,
                        matcher: .detectors(DetectorID.allCases, label: "all"), action: .redact)
                ], holdBackOverride: nil), folding: BasicFolding(), patterns: { _ in nil })
        Complexity.expectLinear(
            "stream guard over \(unit.debugDescription)", ceiling: 60, make: { Complexity.repeated(unit, $0) }
        ) {
            input in
            var guarded = StreamGuard(engine: engine)
            var released = 0
            var i = 0
            while i < input.count {
                released += guarded.feed(Array(input[i..<min(input.count, i + 16)])).count
                i += 16
            }
            released += guarded.finish().count
            // Nothing is lost or withheld when nothing matched (these units match nothing).
            if ["eyJ", "4", "a@", "aA1+/"].contains(unit) { #expect(released == input.count) }
        }
    }
}

@Suite struct ParserComplexityTests {
    static let shapes: [(String, @Sendable (Int) -> [UInt8])] = [
        ("deep arrays", { n in Array(repeating: UInt8(ascii: "["), count: n) }),
        ("deep objects", { n in Complexity.repeated("{\"a\":", n) }),
        ("long key", { n in Array("{\"".utf8) + Complexity.repeated("k", n) + Array("\":1}".utf8) }),
        ("many keys", { n in Array("{".utf8) + Complexity.repeated("\"a\":1,", n) + Array("\"z\":1}".utf8) }),
        ("duplicate keys", { n in Array("{".utf8) + Complexity.repeated("\"a\":1,", n) + Array("\"a\":1}".utf8) }),
        ("escapes", { n in Array("\"".utf8) + Complexity.repeated("\\u0041\\n", n) + Array("\"".utf8) }),
        ("surrogates", { n in Array("\"".utf8) + Complexity.repeated("\\ud83d\\ude00", n) + Array("\"".utf8) }),
        ("long number", { n in Complexity.repeated("9", n) }),
        ("many numbers", { n in Array("[".utf8) + Complexity.repeated("1e999,", n) + Array("1]".utf8) }),
        ("big array", { n in Array("[".utf8) + Complexity.repeated("\"x\",", n) + Array("0]".utf8) }),
    ]

    @Test(arguments: 0..<shapes.count)
    func jsonIsLinear(index: Int) {
        let (name, make) = ParserComplexityTests.shapes[index]
        Complexity.expectLinear("JSON \(name)", make: make) { _ = try? JSONParser.parse($0) }
    }

    @Test(arguments: ["data: x\n", "data: x\n\n", ":\n", "data:", "\r", "event: e\ndata: {}\n\n", "x"])
    func sseIsLinear(unit: String) {
        Complexity.expectLinear("SSE \(unit.debugDescription)", make: { Complexity.repeated(unit, $0) }) { input in
            var parser = SSEParser()
            var i = 0
            while i < input.count {
                _ = parser.feed(Array(input[i..<min(input.count, i + 7)]))
                i += 7
            }
            _ = parser.finish()
        }
    }

    @Test(arguments: ["--b\r\n", "--b", "-", "\r\n", "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n"])
    func multipartIsLinear(unit: String) {
        Complexity.expectLinear("multipart \(unit.debugDescription)", make: { Complexity.repeated(unit, $0) }) {
            _ = try? Multipart.parse($0, boundary: "b")
        }
    }

    @Test(arguments: ["a=b&", "%41", "%", "&", "+", "a"])
    func formDecodingIsLinear(unit: String) {
        Complexity.expectLinear("form \(unit.debugDescription)", make: { Complexity.repeated(unit, $0) }) {
            _ = URLEncoding.decode($0[...])
        }
    }

    @Test(arguments: ["<", "<a ", "<!--", "&amp;", "<script>", "a"])
    func htmlTextIsLinear(unit: String) {
        Complexity.expectLinear("HTML \(unit.debugDescription)", make: { Complexity.repeated(unit, $0) }) {
            _ = HTMLText.plain(String(decoding: $0, as: UTF8.self))
        }
    }

    @Test(arguments: ["a ", "a", ". ", "\n\n", "word. "])
    func chunkingIsLinear(unit: String) {
        Complexity.expectLinear("chunker \(unit.debugDescription)", make: { Complexity.repeated(unit, $0) }) {
            _ = DocumentChunker.chunks(String(decoding: $0, as: UTF8.self))
        }
    }
}

@Suite struct InspectionBudgetTests {
    /// A clock the test moves by hand.
    final class ManualClock: Sendable {
        let now = Mutex<UInt64>(1)
        func advance(_ nanos: UInt64) { now.withLock { $0 += nanos } }
        var read: @Sendable () -> UInt64 { { [self] in self.now.withLock { $0 } } }
    }

    @Test func chargesMeasuredTimeAgainstBaseAndEarnedAllowance() {
        let clock = ManualClock()
        let budget = InspectionBudget(rate: InspectionRate(baseMs: 1, msPerMiB: 10), clock: clock.read)
        budget.measure { clock.advance(900_000) }
        #expect(!budget.exhausted)
        budget.measure { clock.advance(200_000) }
        #expect(budget.exhausted)
        // More text earns more time, but a spent budget stays spent for the request.
        budget.admit(bytes: 1 << 20)
        #expect(budget.exhausted)
    }

    @Test func earnedAllowanceAndRunningSpan() {
        let clock = ManualClock()
        let budget = InspectionBudget(rate: InspectionRate(baseMs: 0, msPerMiB: 10), clock: clock.read)
        budget.admit(bytes: 1 << 19)  // 5 ms
        budget.measure {
            clock.advance(4_000_000)
            #expect(!budget.exhausted)
            clock.advance(2_000_000)
            // The span still running counts.
            #expect(budget.exhausted)
        }
        #expect(budget.spentNanos == 6_000_000)
    }

    @Test func hugeAllowancesSaturate() {
        let clock = ManualClock()
        let budget = InspectionBudget(rate: InspectionRate(baseMs: 0, msPerMiB: Int.max), clock: clock.read)
        budget.admit(bytes: Int.max)
        budget.admit(bytes: Int.max)
        // An hour per MiB of Int.max bytes saturates instead of wrapping to a small allowance.
        budget.measure { clock.advance(3_600_000_000_000) }
        #expect(!budget.exhausted)
    }

    /// Past the budget, a redacting rule fails closed (the whole text withheld) and a logging one opens.
    @Test func spentBudgetFailsRulesByTheirOnError() {
        let clock = ManualClock()
        let budget = InspectionBudget(rate: InspectionRate(baseMs: 1, msPerMiB: 0), clock: clock.read)
        let engine = PolicyEngine(
            set: PolicySet(
                rules: [
                    Policy(
                        name: "cards", phase: .egress, matcher: .detectors([.card], label: "pii.card"), action: .redact),
                    Policy(name: "note", phase: .egress, matcher: .keywords(KeywordList(["hello"])), action: .log),
                ], holdBackOverride: nil), folding: BasicFolding(), patterns: { _ in nil }, budget: budget)
        let first = engine.check(Array("hello 4111 1111 1111 1111".utf8), phase: .egress)
        #expect(String(decoding: first.text, as: UTF8.self) == "hello [REDACTED:pii.card]")
        budget.measure { clock.advance(2_000_000) }
        let second = engine.check(Array("hello there".utf8), phase: .egress)
        #expect(String(decoding: second.text, as: UTF8.self) == "[REDACTED:pii.card]")
        // Both failures are recorded; only the closed rule acted (the open `log` rule changes nothing).
        #expect(second.triggers.map(\.failed) == [true, true])
        #expect(second.triggers.map(\.policy) == ["cards", "note"])
    }
}
