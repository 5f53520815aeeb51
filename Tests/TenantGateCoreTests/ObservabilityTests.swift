import Testing

@testable import TenantGateCore

@Suite struct MetricsFormatTests {
    @Test func bucketsAndEscaping() {
        #expect(MetricsFormat.bucketLabel(seconds: 0.004) == "0.005")
        #expect(MetricsFormat.bucketLabel(seconds: 0.25) == "0.25")
        #expect(MetricsFormat.bucketLabel(seconds: 2) == "2.5")
        #expect(MetricsFormat.bucketLabel(seconds: 301) == "+Inf")
        #expect(MetricsFormat.escape("a\"b\\c\nd") == "a\\\"b\\\\c\\nd")
    }

    @Test func rendersCumulativeHistogramsAndCounters() {
        let rows: [(String, String, Int64)] = [
            ("tenantgate_requests_total", "tenant=\"a\",model=\"m\",status=\"200\"", 3),
            ("h_bucket", "tenant=\"a\",le=\"0.01\"", 2),
            ("h_bucket", "tenant=\"a\",le=\"1\"", 1),
            ("h_sum_ms", "tenant=\"a\"", 1500),
            ("h_count", "tenant=\"a\"", 3),
            ("tenantgate_cost_nano_total", "tenant=\"a\"", 1_500_000_000),
        ]
        let text = MetricsFormat.render(counters: rows, help: ["h": ("histogram", "H.")])
        #expect(text.contains("tenantgate_requests_total{tenant=\"a\",model=\"m\",status=\"200\"} 3\n"))
        #expect(text.contains("# TYPE h histogram\n"))
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
