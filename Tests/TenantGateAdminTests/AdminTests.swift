import Testing

@testable import TenantGateAdmin
@testable import TenantGateCore

@Suite struct HTMLTests {
    @Test func interpolationEscapesAllFiveCharacters() {
        let hostile = #"<script>alert("x")</script> & 'quotes'"#
        let html: HTML = "<p title=\"\(hostile)\">\(hostile)</p>"
        #expect(
            html.text
                == "<p title=\"&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quotes&#39;\">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;quotes&#39;</p>"
        )
    }

    @Test func fragmentsAndNumbersCompose() {
        let inner: HTML = "<b>\("a<b")</b>"
        let outer: HTML = "<div>\(inner)\(42)\([inner, inner])</div>"
        #expect(outer.text == "<div><b>a&lt;b</b>42<b>a&lt;b</b><b>a&lt;b</b></div>")
    }
}

@Suite struct LayoutTests {
    /// One money format on every page (`Money.display`): four decimals, more only below a cent, truncated.
    @Test(arguments: [
        (Int64(0), "$0.0000"), (1_234, "$0.0000012"), (135_000, "$0.00013"), (999_999_999, "$0.9999"),
        (999_000_000, "$0.9990"), (1_000_000_000, "$1.0000"), (12_345_000_000, "$12.3450"),
        (50_000_000, "$0.0500"),
    ])
    func usdReadsTheSameOnEveryPage(_ nano: Int64, _ text: String) {
        #expect(Layout.usd(nano) == text)
    }

    @Test func dayParsingRefusesNonsense() {
        #expect(ExecutionsPage.day("2026-11-22") == CivilDate.days(year: 2026, month: 11, day: 22))
        #expect(ExecutionsPage.day("yesterday") == nil)
        #expect(ExecutionsPage.day("2026-13-01") == nil)
    }
}

@Suite struct FormTests {
    @Test func decodesPercentAndPlus() throws {
        let form = try Form(urlencoded: Array("a=1+2&b=%3Cx%3E%20%C3%A9&c&a=3&d=%ZZ".utf8))
        #expect(form["a"] == "1 2")
        #expect(form["b"] == "<x> é")
        #expect(form["c"] == "")
        #expect(form.fields.filter { $0.0 == "a" }.count == 2)
        #expect(form["d"] == "%ZZ")
    }

    @Test func refusesInvalidUTF8() {
        #expect(throws: Form.Problem.invalidUTF8) { try Form(urlencoded: Array("a=%FF%FE".utf8)) }
        #expect(throws: Form.Problem.invalidUTF8) { try Form(urlencoded: [0x61, 0x3D, 0xC0, 0x80]) }
    }

    @Test func refusesTooManyFields() {
        let body = Array(repeating: "a=1", count: 3000).joined(separator: "&")
        #expect(throws: Form.Problem.tooManyFields) { try Form(urlencoded: Array(body.utf8)) }
    }

    @Test func parsesCookies() {
        let cookies = Form.cookies("a=1; tg_admin=abc ; b=2; tg_admin=second")
        #expect(cookies["tg_admin"] == "abc")
        #expect(cookies["b"] == "2")
    }
}

@Suite struct TenantFormTests {
    private func form(_ pairs: [(String, String)]) throws -> Form {
        let body = pairs.map { "\(ExecutionsPage.percentEncoded($0))=\(ExecutionsPage.percentEncoded($1))" }
            .joined(separator: "&")
        return try Form(urlencoded: Array(body.utf8))
    }

    @Test func buildsAValidTenantAndKeepsKeysTheFormDoesNotOwn() throws {
        let current = try JSONParser.parse(
            #"{"name":"Old","models":["a"],"policies":[{"name":"p","detector":"pii.any","threshold":0.5,"phase":"ingress","action":"log"}],"budget":{"daily_usd":5},"upstream_keys":{"openai":"encrypted:sk-…abcd"}}"#
        )
        let submitted = try form([
            ("name", "New <b>"), ("models", "a, b\nc"), ("fallbacks", "a: b, c"), ("system_prompt", "Hi {{date}}"),
            ("prompt_mode", "replace"), ("features.streaming", "off"), ("features.beta", "25"),
            ("rate_limit.requests_per_minute", "100"), ("budget.monthly_usd", "12.5"),
            ("budget.enforcement", "soft"), ("variables", "product: TPS"), ("auth_passthrough", "on"),
        ])
        let tenant = try TenantPage.validated("acme", TenantForm.document(submitted, current: current))
        #expect(tenant["name"]?.stringValue == "New <b>")
        #expect(tenant["models"] == .array([.string("a"), .string("b"), .string("c")]))
        #expect(tenant["fallbacks"]?["a"] == .array([.string("b"), .string("c")]))
        #expect(tenant["prompt_mode"]?.stringValue == "replace")
        #expect(tenant["features"]?["streaming"] == .bool(false))
        #expect(tenant["features"]?["beta"]?.intValue == 25)
        #expect(tenant["rate_limit"]?["requests_per_minute"]?.intValue == 100)
        // daily_usd was cleared (the form owns it and left it empty); monthly set.
        #expect(tenant["budget"]?["daily_usd"] == nil)
        #expect(tenant["budget"]?["monthly_usd"]?.doubleValue == 12.5)
        #expect(tenant["budget"]?["enforcement"]?.stringValue == "soft")
        #expect(tenant["variables"]?["product"]?.stringValue == "TPS")
        #expect(tenant["auth_passthrough"] == .bool(true))
        #expect(tenant["policies"]?.arrayValue?.count == 1)
        #expect(tenant["upstream_keys"]?["openai"]?.stringValue == "encrypted:sk-…abcd")
    }

    @Test func errorsNameTheirField() throws {
        let submitted = try form([("models", "a"), ("rate_limit.requests_per_minute", "lots")])
        do {
            _ = try TenantPage.validated("acme", TenantForm.document(submitted, current: nil))
            Issue.record("expected an error")
        } catch let error as ConfigError {
            #expect(
                TenantForm.field(for: error, tenant: "acme", fields: TenantForm.numberFields)
                    == "rate_limit.requests_per_minute")
        }
    }

    @Test func valuesRoundTrip() throws {
        let tenant = try JSONParser.parse(
            #"{"name":"N","models":["a","b"],"fallbacks":{"a":["b"]},"features":{"x":true,"y":30},"budget":{"daily_usd":2.5,"enforcement":"soft"}}"#
        )
        let values = TenantForm.values(tenant)
        #expect(values["models"] == "a, b")
        #expect(values["fallbacks"] == "a: b")
        #expect(values["features.x"] == "on")
        #expect(values["features.y"] == "30")
        #expect(values["budget.daily_usd"] == "2.5")
        let back = try TenantPage.validated(
            "t",
            TenantForm.document(try form(values.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }), current: tenant)
        )
        #expect(back == (try TenantPage.validated("t", ConfigNode(json: tenant))))
    }
}

@Suite struct LoginThrottleTests {
    @Test(arguments: [
        ("192.0.2.7", "192.0.2.7"), ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::9", "2001:db8:1:2::/64"), ("2001:DB8:0001:0002:ffff::1", "2001:db8:1:2::/64"),
        ("::1", "0:0:0:0::/64"), ("::ffff:192.0.2.1", "192.0.2.1"), ("fe80::1::2", "fe80::1::2"),
        ("1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7:8:9"), ("zz::1", "zz::1"),
    ])
    func addressesOfOneIPv6SubnetCountAsOne(address: String, expected: String) {
        #expect(LoginGate.throttleAddress(address) == expected)
    }

    @Test func bucketAllowsABurstThenOneCheckPerRefill() {
        var bucket = CheckBucket(burst: 3, refillMs: 1_000)
        func take(_ now: Int64) -> Bool { bucket.take(nowMs: now) }
        var taken = 0
        for _ in 0..<3 where bucket.take(nowMs: 10_000) { taken += 1 }
        #expect(taken == 3)
        #expect(take(10_000) == false)
        #expect(take(10_999) == false)
        #expect(take(11_000) == true)
        #expect(take(11_000) == false)
        // Idle time refills up to the burst, never past it; a clock going back earns nothing.
        taken = 0
        for _ in 0..<3 where bucket.take(nowMs: 100_000) { taken += 1 }
        #expect(taken == 3)
        #expect(take(100_000) == false)
        #expect(take(50_000) == false)
    }
}
