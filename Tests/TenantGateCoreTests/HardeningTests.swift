import Testing

@testable import TenantGateCore

private func model(cap: Int? = nil, price: Double = 1, imageTokens: Int = 2_500, field: String = "max_tokens")
    -> ModelConfig
{
    ModelConfig(
        name: "m", backend: "b", upstreamModel: "up", inputPerMTok: price, outputPerMTok: price,
        cachedInputPerMTok: price, cacheWritePerMTok: price, maxTokens: cap, imageTokens: imageTokens,
        maxTokensField: field)
}

private func parseChat(_ text: String) throws -> ChatRequest { try ChatRequest.parse(Array(text.utf8)) }

@Suite struct SaturatingArithmeticTests {
    @Test(arguments: [
        (Int64(0), Int64(0), Int64(0)), (1, 1, 2), (.max, 1, .max), (.max, .max, .max), (.min, -1, .min),
        (.max, .min, -1), (-5, 3, -2),
    ])
    func add(a: Int64, b: Int64, expected: Int64) {
        #expect(a.saturatingAdd(b) == expected)
    }

    @Test(arguments: [
        (Int64(0), Int64.max, Int64(0)), (1, .max, .max), (2, .max, .max), (-2, .max, .min), (.min, -1, .max),
        (1 << 40, 1 << 40, .max), (-3, 4, -12),
    ])
    func multiply(a: Int64, b: Int64, expected: Int64) {
        #expect(a.saturatingMultiply(b) == expected)
    }

    @Test(arguments: [(Int?.none, 0), (0, 0), (1, 1), (-1, 0), (Int.min, 0), (Int.max, 1 << 40), (1 << 40, 1 << 40)])
    func reportedTokensAreClamped(value: Int?, expected: Int) {
        #expect(Bounds.reportedTokens(value) == expected)
    }

    @Test func usageFromAHostileUpstreamIsClamped() throws {
        let json = try JSONParser.parse(
            #"{"prompt_tokens":9223372036854775807,"completion_tokens":-9223372036854775808,"prompt_tokens_details":{"cached_tokens":9223372036854775807}}"#
        )
        let usage = try #require(Usage(openAI: json))
        #expect(usage.promptTokens == 1 << 40 && usage.completionTokens == 0 && usage.cachedTokens == 1 << 40)
        let anthropic = try #require(
            Usage(
                anthropic: try JSONParser.parse(
                    #"{"input_tokens":9223372036854775807,"cache_read_input_tokens":9223372036854775807,"cache_creation_input_tokens":9223372036854775807,"output_tokens":1}"#
                )))
        #expect(anthropic.promptTokens == 1 << 40)
        // Priced at the schema's maximum, the cost is clamped, not trapped on.
        #expect(Money.cost(usage, model(price: 1e9)) == Bounds.maxRequestCostNano)
        #expect(Money.cost(anthropic, model(price: 1e9)) == Bounds.maxRequestCostNano)
        #expect(Money.cost(Usage(promptTokens: 0, completionTokens: 0), model(price: 1e9)) == 0)
        // More cached or cache-written tokens than prompt tokens never make a negative cost.
        let odd = Usage(promptTokens: 10, completionTokens: -3, cachedTokens: 50, cacheWriteTokens: 70)
        #expect(Money.cost(odd, model(price: 1)) == 10 * 1000)
    }

    @Test(arguments: [Double.nan, .infinity, -.infinity, -1, 1e300])
    func moneyConversionsNeverTrap(value: Double) {
        #expect(Money.nano(usd: value) >= 0)
        #expect(Money.nanoPerToken(perMTok: value) >= 0)
    }
}

@Suite struct CompletionCapTests {
    @Test func capsComeFromTheClientThenTheCatalogThenTheDefault() throws {
        let none = try parseChat(#"{"messages":[{"role":"user","content":"hi"}]}"#)
        #expect(none.completionCap(for: model()) == Reservation.defaultCompletionCap)
        #expect(none.completionCap(for: model(cap: 50)) == 50)
        #expect(none.upstreamBody(for: model(cap: 50))["max_tokens"]?.intValue == 50)
        let modern = none.upstreamBody(for: model(cap: 40, field: "max_completion_tokens"))
        #expect(modern["max_completion_tokens"]?.intValue == 40 && modern["max_tokens"] == nil)
        #expect(modern["model"]?.stringValue == "up")
        let asked = try parseChat(#"{"max_completion_tokens":20,"messages":[{"role":"user","content":"hi"}]}"#)
        #expect(asked.upstreamBody(for: model(cap: 50))["max_completion_tokens"]?.intValue == 20)
        #expect(asked.upstreamBody(for: model(cap: 10))["max_completion_tokens"]?.intValue == 10)
    }

    @Test(arguments: [51, 1_000_000, Int.max])
    func aCapAboveTheModelsIsRefused(asked: Int) throws {
        let request = try parseChat(#"{"max_tokens":\#(asked),"messages":[{"role":"user","content":"hi"}]}"#)
        #expect(throws: GatewayError.self) { try request.checkCap(for: model(cap: 50)) }
    }

    @Test func theCeilingAppliesWithoutACatalogCap() throws {
        let at = try parseChat(
            #"{"max_tokens":\#(Bounds.maxCompletionTokens),"messages":[{"role":"user","content":"x"}]}"#)
        try at.checkCap(for: model())
        let over = try parseChat(
            #"{"max_tokens":\#(Bounds.maxCompletionTokens + 1),"messages":[{"role":"user","content":"x"}]}"#)
        #expect(throws: GatewayError.self) { try over.checkCap(for: model()) }
    }

    @Test(arguments: [
        #"{"max_tokens":9223372036854775808,"messages":[{"role":"user","content":"x"}]}"#,
        #"{"max_tokens":1e30,"messages":[{"role":"user","content":"x"}]}"#,
        #"{"max_tokens":2.5,"messages":[{"role":"user","content":"x"}]}"#,
        #"{"max_tokens":5,"max_completion_tokens":6,"messages":[{"role":"user","content":"x"}]}"#,
        #"{"n":0,"messages":[{"role":"user","content":"x"}]}"#,
        #"{"n":129,"messages":[{"role":"user","content":"x"}]}"#,
        #"{"n":9223372036854775807,"messages":[{"role":"user","content":"x"}]}"#,
        #"{"user":"","messages":[{"role":"user","content":"x"}]}"#,
        #"{"user":"a\nb","messages":[{"role":"user","content":"x"}]}"#,
        #"{"user":"\u0085","messages":[{"role":"user","content":"x"}]}"#,
        #"{"model":"a","model":"b","messages":[{"role":"user","content":"x"}]}"#,
    ])
    func hostileFieldsAreRefused(body: String) {
        #expect(throws: GatewayError.self) { try parseChat(body) }
    }

    @Test func userOf256BytesIsAccepted() throws {
        let user = String(repeating: "é", count: 128)
        #expect(try parseChat(#"{"user":"\#(user)","messages":[{"role":"user","content":"x"}]}"#).user == user)
        let long = user + "x"
        #expect(throws: GatewayError.self) {
            try parseChat(#"{"user":"\#(long)","messages":[{"role":"user","content":"x"}]}"#)
        }
    }

    @Test func nCompletionsAreReservedNTimesAndEveryBilledInputCounts() throws {
        let three = try parseChat(#"{"n":3,"max_tokens":10,"messages":[{"role":"user","content":"hello"}]}"#)
        let r = Reservation(chat: three, model: model())
        #expect(r.completionTokens == 30)
        #expect(r.promptTokens == 5 + 8)
        let image = try parseChat(
            #"{"messages":[{"role":"user","content":[{"type":"text","text":"abc"},{"type":"image_url","image_url":{"url":"https://x"}}]}]}"#
        )
        #expect(image.promptBound(imageTokens: 1000) == 3 + 1000 + 8)
        let tools = try parseChat(
            #"{"tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"a"}]}"#)
        #expect(
            tools.promptBound(imageTokens: 0) == 1 + 8 + #"[{"type":"function","function":{"name":"f"}}]"#.utf8.count)
    }
}

@Suite struct StrictInputTests {
    @Test func duplicateKeysAreRefusedAtAnyDepthAndSize() throws {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(#"{"a":1,"a":2}"#) }
        #expect(throws: JSONParseError.self) { try JSONParser.parse(#"{"x":[{"b":1,"c":2,"b":3}]}"#) }
        let many = (0..<40).map { "\"k\($0)\":\($0)" }.joined(separator: ",")
        #expect(try JSONParser.parse("{\(many)}")["k39"]?.intValue == 39)
        #expect(throws: JSONParseError.self) { try JSONParser.parse("{\(many),\"k3\":0}") }
        #expect(throws: JSONParseError.self) { try JSONParser.parse("{\(many),\"k39\":0}") }
        // Escapes that decode to the same name are the same key.
        #expect(throws: JSONParseError.self) { try JSONParser.parse(#"{"a":1,"\u0061":2}"#) }
    }

    @Test(arguments: [
        "00-" + String(repeating: "\u{FF10}", count: 32) + "-" + String(repeating: "\u{FF11}", count: 16) + "-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0\u{FF11}",
        "00-0af7651916cd43dd8448eb211c80319\u{e9}-b7ad6b7169203331-01",
    ])
    func nonASCIITraceparentsStartANewTrace(header: String) {
        let trace = TraceContext(header: header, newTraceID: String(repeating: "a", count: 32))
        #expect(trace.traceID == String(repeating: "a", count: 32) && trace.parentID == nil)
    }

    @Test func aValidTraceparentIsContinued() {
        let trace = TraceContext(
            header: "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", newTraceID: "x")
        #expect(trace.traceID == "0af7651916cd43dd8448eb211c80319c")
    }

    @Test func identifiersAreBoundedAndPrintable() {
        #expect(Bounds.isIdentifier("user-7"))
        #expect(!Bounds.isIdentifier(""))
        #expect(!Bounds.isIdentifier(String(repeating: "x", count: 257)))
        #expect(!Bounds.isIdentifier("tab\there"))
        #expect(!Bounds.isIdentifier("del\u{7F}"))
        #expect(
            Bounds.isPrintableASCII("Bearer sk-1") && !Bounds.isPrintableASCII("é") && !Bounds.isPrintableASCII("a\r\n")
        )
    }
}

@Suite struct AnthropicGateTests {
    private func tenant(_ features: String) throws -> TenantConfig {
        var state = ConfigState()
        state.backends["b"] = try JSONParser.parse(#"{"provider":"mock"}"#)
        state.models["m"] = try JSONParser.parse(#"{"backend":"b"}"#)
        state.tenants["t"] = try JSONParser.parse(#"{"models":["m"],"features":\#(features)}"#)
        let config = try GatewayConfig(state: state, keys: [], version: 1)
        return try #require(config.tenants["t"])
    }

    @Test func fieldsTheGatewayHasNotCheckedAreRefused() {
        for body in [
            #"{"max_tokens":5,"mcp_servers":[],"messages":[{"role":"user","content":"x"}]}"#,
            #"{"max_tokens":5,"container":"c","messages":[{"role":"user","content":"x"}]}"#,
            #"{"max_tokens":5,"metadata":{"other":1},"messages":[{"role":"user","content":"x"}]}"#,
            #"{"max_tokens":5,"metadata":{"user_id":""},"messages":[{"role":"user","content":"x"}]}"#,
        ] {
            #expect(throws: GatewayError.self) { try MessagesAPI.parse(Array(body.utf8)) }
        }
    }

    @Test func serverToolsDocumentsAndBetasNeedTheirFlags() throws {
        let parsed = try MessagesAPI.parse(
            Array(
                #"{"max_tokens":5,"tools":[{"type":"web_search_20250305","name":"web_search"},{"name":"f","input_schema":{"type":"object"}}],"messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"memo"}},{"type":"text","text":"x"}]}]}"#
                    .utf8))
        #expect(parsed.serverTools == ["web_search_20250305"])
        #expect(parsed.usesDocuments)
        // The server tool is not offered to other backends as a function; documents count in the reservation.
        #expect(parsed.chat.body["tools"]?.arrayValue?.count == 1)
        #expect(parsed.chat.extraPromptTokens > 40)
        #expect(throws: GatewayError.featureDisabled("server_tools")) {
            try parsed.checkGates(tenant: try tenant("{}"), subject: "s", beta: false)
        }
        #expect(throws: GatewayError.featureDisabled("documents")) {
            try parsed.checkGates(
                tenant: try tenant(#"{"server_tools":true,"documents":false}"#), subject: "s", beta: false)
        }
        #expect(throws: GatewayError.featureDisabled("anthropic_beta")) {
            try parsed.checkGates(tenant: try tenant(#"{"server_tools":true}"#), subject: "s", beta: true)
        }
        try parsed.checkGates(
            tenant: try tenant(#"{"server_tools":true,"anthropic_beta":true}"#), subject: "s", beta: true)
    }

    @Test func fallbacksOutsideTheAllowListAreDropped() throws {
        var state = ConfigState()
        state.backends["b"] = try JSONParser.parse(#"{"provider":"mock"}"#)
        for name in ["a", "b1", "c"] { state.models[name] = try JSONParser.parse(#"{"backend":"b"}"#) }
        state.tenants["t"] = try JSONParser.parse(#"{"models":["a","c"],"fallbacks":{"a":["b1","c","a"]}}"#)
        let config = try GatewayConfig(state: state, keys: [], version: 1)
        #expect(config.tenants["t"]?.chain(for: "a") == ["a", "c"])
    }
}

@Suite struct PromptStageKeepsTheEstimateTests {
    @Test func documentsStillCountAfterATenantPromptRewritesTheRequest() throws {
        var state = ConfigState()
        state.backends["b"] = try JSONParser.parse(#"{"provider":"mock"}"#)
        state.models["m"] = try JSONParser.parse(#"{"backend":"b"}"#)
        state.tenants["t"] = try JSONParser.parse(#"{"models":["m"],"system_prompt":"Rules."}"#)
        let tenant = try #require(try GatewayConfig(state: state, keys: [], version: 1).tenants["t"])
        let parsed = try MessagesAPI.parse(
            Array(
                #"{"max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"a long memo"}},{"type":"text","text":"x"}]}]}"#
                    .utf8))
        let (chat, served) = try PromptTemplating.apply(
            parsed.chat, tenant: tenant, model: "m", requested: nil, epochSeconds: 0)
        #expect(served != nil)
        #expect(chat.extraPromptTokens == parsed.chat.extraPromptTokens && chat.extraPromptTokens > 0)
    }
}
