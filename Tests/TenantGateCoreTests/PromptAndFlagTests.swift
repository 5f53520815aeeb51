import Testing

@testable import TenantGateCore

func tenant(_ json: String, defaults: String = "{}", versions: [String: Int] = [:]) throws -> TenantConfig {
    var state = ConfigState()
    state.backends["demo"] = try JSONParser.parse(#"{"provider":"mock"}"#)
    state.models["m"] = try JSONParser.parse(#"{"backend":"demo"}"#)
    state.tenants["acme"] = try JSONParser.parse(json)
    state.settings["defaults"] = try JSONParser.parse(defaults)
    let config = try GatewayConfig(state: state, keys: [], version: 1, promptVersions: ["acme": versions])
    return try #require(config.tenants["acme"])
}

func chat(_ json: String) throws -> ChatRequest { try ChatRequest.parse(Array(json.utf8)) }

@Suite struct PromptTemplateTests {
    @Test func rendersEveryVariable() throws {
        let t = try PromptTemplate(
            "{{tenant.id}}|{{ tenant.name }}|{{model}}|{{date}}|{{user}}|{{company}}", variables: ["company"])
        let out = t.render([
            "tenant.id": "acme", "tenant.name": "Acme", "model": "m", "date": "2026-11-22", "user": "u1",
            "company": "ACME Inc",
        ])
        #expect(out == "acme|Acme|m|2026-11-22|u1|ACME Inc")
    }

    @Test(arguments: [
        "Hello {{nobody}}", "Hello {{", "Hello }} there", "{{ {{model}} }}", "{{mo{del}}", "a {{model}} b }}",
        "{{}}",
    ])
    func refusesBadTemplates(_ source: String) {
        #expect(throws: PromptTemplate.Invalid.self) { try PromptTemplate(source, variables: []) }
    }

    @Test func refusesHugeTemplates() {
        #expect(throws: PromptTemplate.Invalid.self) {
            try PromptTemplate(String(repeating: "a", count: PromptTemplate.maxBytes + 1), variables: [])
        }
    }

    @Test func badTemplateIsAConfigErrorNamingTheKey() throws {
        do {
            _ = try tenant(#"{"models":["m"],"prompts":{"sales":"Hi {{who}}"}}"#)
            Issue.record("accepted")
        } catch let error as ConfigError {
            #expect(error.path == "tenants.acme.prompts.sales")
        }
    }
}

@Suite struct PromptModeTests {
    let request = #"{"messages":[{"role":"system","content":"client sys"},{"role":"user","content":"hi"}],"user":"u7"}"#

    @Test func prependKeepsClientSystemAfterTenantPrompt() throws {
        let t = try tenant(#"{"models":["m"],"system_prompt":"For {{user}} on {{date}}"}"#, versions: ["default": 3])
        let (out, served) = try PromptTemplating.apply(
            try chat(request), tenant: t, model: "m", requested: nil, epochSeconds: 86_400)
        #expect(out.messages.map { $0["content"]?.stringValue } == ["For u7 on 1970-01-02", "client sys", "hi"])
        #expect(served?.name == "default" && served?.version == 3)
    }

    @Test func replaceDropsClientSystem() throws {
        let t = try tenant(#"{"models":["m"],"system_prompt":"T","prompt_mode":"replace"}"#)
        let (out, _) = try PromptTemplating.apply(
            try chat(request), tenant: t, model: "m", requested: nil, epochSeconds: 0)
        #expect(out.messages.map { $0["role"]?.stringValue } == ["system", "user"])
        #expect(out.messages[0]["content"]?.stringValue == "T")
    }

    @Test func lockedRefusesClientSystem() throws {
        let t = try tenant(#"{"models":["m"],"system_prompt":"T","prompt_mode":"locked"}"#)
        #expect(throws: GatewayError.systemPromptLocked) {
            try PromptTemplating.apply(try chat(request), tenant: t, model: "m", requested: nil, epochSeconds: 0)
        }
        let ok = try chat(#"{"messages":[{"role":"user","content":"hi"}]}"#)
        let (out, _) = try PromptTemplating.apply(ok, tenant: t, model: "m", requested: nil, epochSeconds: 0)
        #expect(out.messages.count == 2)
    }

    @Test func namedTemplateByHeaderOrMetadata() throws {
        let t = try tenant(#"{"models":["m"],"system_prompt":"D","prompts":{"sales":"S"}}"#)
        let (a, sa) = try PromptTemplating.apply(
            try chat(#"{"messages":[{"role":"user","content":"x"}]}"#), tenant: t, model: "m", requested: "sales",
            epochSeconds: 0)
        #expect(a.messages[0]["content"]?.stringValue == "S" && sa?.name == "sales")
        let (b, _) = try PromptTemplating.apply(
            try chat(#"{"messages":[{"role":"user","content":"x"}],"metadata":{"prompt":"sales","k":"v"}}"#),
            tenant: t, model: "m", requested: nil, epochSeconds: 0)
        #expect(b.messages[0]["content"]?.stringValue == "S")
        #expect(b.body["metadata"]?.jsonString == #"{"k":"v"}"#)
        let (c, _) = try PromptTemplating.apply(
            try chat(#"{"messages":[{"role":"user","content":"x"}],"metadata":{"prompt":"sales"}}"#),
            tenant: t, model: "m", requested: nil, epochSeconds: 0)
        #expect(c.body["metadata"] == nil)
        #expect(throws: GatewayError.unknownPrompt("nope")) {
            try PromptTemplating.apply(
                try chat(#"{"messages":[{"role":"user","content":"x"}]}"#), tenant: t, model: "m", requested: "nope",
                epochSeconds: 0)
        }
    }

    @Test func noTemplateLeavesMessagesAlone() throws {
        let t = try tenant(#"{"models":["m"]}"#)
        let c = try chat(request)
        let (out, served) = try PromptTemplating.apply(c, tenant: t, model: "m", requested: nil, epochSeconds: 0)
        #expect(out.body == c.body && served == nil)
    }
}

@Suite struct FeatureFlagTests {
    @Test func builtinsDefaultsAndOverrides() throws {
        let t = try tenant(
            #"{"models":["m"],"features":{"tools":false,"beta_ui":true}}"#,
            defaults: #"{"features":{"streaming":false,"tools":true}}"#)
        #expect(t.feature("streaming", subject: "u") == false)
        #expect(t.feature("tools", subject: "u") == false)
        #expect(t.feature("embeddings", subject: "u") == true)
        #expect(t.feature("semantic_cache", subject: "u") == false)
        #expect(t.feature("beta_ui", subject: "u") == true)
        #expect(t.feature("unknown_flag", subject: "u") == false)
        let all = Dictionary(uniqueKeysWithValues: FeatureFlags.all(tenant: t, subject: "u"))
        #expect(all["beta_ui"] == true && all["streaming"] == false && all.count == 8)
    }

    @Test func rolloutOfTenPercentIsWithinOnePercentAndStable() throws {
        let t = try tenant(#"{"models":["m"],"features":{"new_model":10}}"#)
        let on = (0..<10_000).filter { t.feature("new_model", subject: "user-\($0)") }.count
        #expect(abs(on - 1000) <= 100)
        for i in 0..<200 {
            #expect(t.feature("new_model", subject: "user-\(i)") == t.feature("new_model", subject: "user-\(i)"))
        }
    }

    @Test func zeroAndHundredPercent() throws {
        let t = try tenant(#"{"models":["m"],"features":{"a":0,"b":100}}"#)
        #expect((0..<500).allSatisfy { !t.feature("a", subject: "\($0)") })
        #expect((0..<500).allSatisfy { t.feature("b", subject: "\($0)") })
    }

    @Test func percentagesOutsideRangeAreRefused() throws {
        #expect(throws: ConfigError.self) {
            try ConfigState.validateFile(
                ConfigNode(json: try JSONParser.parse(#"{"tenants":{"a":{"features":{"x":-1}}}}"#)))
        }
    }
}
