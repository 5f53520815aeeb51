import Testing

@testable import TenantGateCore

@Suite struct MetricsFormatTests {
    @Test func bucketsAndEscaping() {
        #expect(MetricsFormat.bucketLabels[MetricsFormat.bucketIndex(seconds: 0.004)] == "0.005")
        #expect(MetricsFormat.bucketLabels[MetricsFormat.bucketIndex(seconds: 0.25)] == "0.25")
        #expect(MetricsFormat.bucketLabels[MetricsFormat.bucketIndex(seconds: 2)] == "2.5")
        #expect(MetricsFormat.bucketLabels[MetricsFormat.bucketIndex(seconds: 301)] == "+Inf")
        #expect(MetricsFormat.escape("a\"b\\c\nd") == "a\\\"b\\\\c\\nd")
    }

    @Test func rendersCumulativeHistogramsAndCounters() {
        var r = MetricsFormat.Renderer(help: ["h": ("histogram", "H.")])
        let a = Array("tenant=\"a\"".utf8)
        r.add(name: "h_bucket", labels: a, le: 1, value: 2)
        r.add(name: "h_bucket", labels: a, le: 7, value: 1)
        r.add(name: "h_count", labels: a, le: -1, value: 3)
        r.add(name: "h_sum_ms", labels: a, le: -1, value: 1500)
        r.add(name: "tenantgate_cost_nano_total", labels: a, le: -1, value: 1_500_000_000)
        r.add(
            name: "tenantgate_requests_total", labels: Array("tenant=\"a\",model=\"m\",status=\"200\"".utf8), le: -1,
            value: 3)
        let out = r.finish()
        let text = String(decoding: out, as: UTF8.self)
        #expect(text.contains("tenantgate_requests_total{tenant=\"a\",model=\"m\",status=\"200\"} 3\n"))
        #expect(text.hasPrefix("# HELP h H.\n# TYPE h histogram\n"))
        #expect(text.contains("h_bucket{tenant=\"a\",le=\"0.005\"} 0\n"))
        #expect(text.contains("h_bucket{tenant=\"a\",le=\"0.01\"} 2\n"))
        #expect(text.contains("h_bucket{tenant=\"a\",le=\"0.5\"} 2\n"))
        #expect(text.contains("h_bucket{tenant=\"a\",le=\"1\"} 3\n"))
        #expect(text.contains("h_bucket{tenant=\"a\",le=\"+Inf\"} 3\n"))
        #expect(text.contains("h_sum{tenant=\"a\"} 1.5\n"))
        #expect(text.contains("h_count{tenant=\"a\"} 3\n"))
        #expect(text.contains("tenantgate_cost_usd_total{tenant=\"a\"} 1.5\n"))
        #expect(!text.contains("h_sum_ms"))
    }
}

@Suite struct TraceContextTests {
    @Test func continuesAValidTraceparent() {
        let t = TraceContext(
            header: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            newTraceID: "ffffffffffffffffffffffffffffffff")
        #expect(t.traceID == "4bf92f3577b34da6a3ce929d0e0e4736" && t.parentID == "00f067aa0ba902b7")
        #expect(t.traceparent(spanID: "1111111111111111") == "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01")
    }

    @Test(arguments: [
        "", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
    ])
    func startsAFreshTraceOnBadInput(_ header: String) {
        let t = TraceContext(header: header, newTraceID: "abcdefabcdefabcdefabcdefabcdef12")
        #expect(t.traceID == "abcdefabcdefabcdefabcdefabcdef12" && t.parentID == nil)
    }
}

@Suite struct IDGeneratorTests {
    @Test func idsAreLowercaseHexOfTheAskedLengthAndDistinct() {
        let ids = IDGenerator(seed: Array(0..<32))
        var seen = Set<String>()
        for _ in 0..<1000 {
            for bytes in [8, 16, 3] {
                let id = ids.hex(bytes: bytes)
                #expect(id.utf8.count == bytes * 2)
                #expect(id.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
                #expect(seen.insert(id).inserted)
            }
        }
        // The same seed gives the same ids (a thread's ids depend only on its seed), another seed others.
        #expect(IDGenerator(seed: Array(0..<32)).hex(bytes: 16) == IDGenerator(seed: Array(0..<32)).hex(bytes: 16))
        #expect(IDGenerator(seed: Array(0..<32)).hex(bytes: 16) != IDGenerator(seed: Array(1..<33)).hex(bytes: 16))
    }

    /// An all-zero seed (a state xoshiro never leaves) still gives random-looking ids, and never the
    /// all-zero id Trace Context calls invalid.
    @Test func anAllZeroSeedStillMakesValidIds() {
        let ids = IDGenerator(seed: [UInt8](repeating: 0, count: 32))
        let first = ids.hex(bytes: 16)
        #expect(first != String(repeating: "0", count: 32))
        #expect(ids.hex(bytes: 16) != first)
        #expect(IDGenerator(seed: []).hex(bytes: 8) != String(repeating: "0", count: 16))
    }
}

@Suite struct ErrorDetailTests {
    struct Odd: Error, CustomStringConvertible {
        var description: String
    }

    @Test func namesTheTypeAndText() {
        #expect(ErrorDetail.of(Odd(description: "it broke")) == "Odd: it broke")
    }

    @Test func isOneBoundedLine() {
        let detail = ErrorDetail.of(Odd(description: "line one\nline two\t" + String(repeating: "é", count: 400)))
        #expect(!detail.contains("\n") && !detail.contains("\t"))
        #expect(detail.hasPrefix("Odd: line one line two "))
        #expect(detail.utf8.count == ErrorDetail.maxBytes - 1 && detail.hasSuffix("é"))  // cut between characters
    }
}
