import Testing

@testable import TenantGateCore

func node(_ json: String) throws -> ConfigNode { ConfigNode(json: try JSONParser.parse(json)) }

@Suite struct ConfigSchemaTests {
    @Test(arguments: [
        (#"{"tenants":{"acme":{"modls":[]}}}"#, "tenants.acme.modls"),
        (#"{"tenants":{"Acme":{}}}"#, "tenants.Acme"),
        (#"{"defaults":{"rate_limit":{"requests_per_minute":-1}}}"#, "defaults.rate_limit.requests_per_minute"),
        (#"{"backends":{"x":{"provider":"azure"}}}"#, "backends.x.provider"),
        (#"{"tenants":{"a":{"prompt_mode":"shout"}}}"#, "tenants.a.prompt_mode"),
        (#"{"tenants":{"a":{"features":{"streaming":101}}}}"#, "tenants.a.features.streaming"),
        (#"{"tenants":{"a":{"models":"m"}}}"#, "tenants.a.models"),
        (#"{"models":{"m":{"input_per_mtok":"cheap"}}}"#, "models.m.input_per_mtok"),
        (#"{"surprise":1}"#, "surprise"),
    ])
    func namesTheKey(_ json: String, _ path: String) throws {
        do {
            _ = try ConfigState.validateFile(node(json))
            Issue.record("accepted \(json)")
        } catch let error as ConfigError {
            #expect(error.path == path)
        }
    }

    @Test func reportsTheLine() {
        let n = ConfigNode.mapping(
            [
                (
                    key: "tenants",
                    value: .mapping(
                        [
                            (
                                key: "acme",
                                value: .mapping(
                                    [(key: "bogus", value: .scalar("1", quoted: false, line: 3), line: 3)], line: 2),
                                line: 2
                            )
                        ], line: 1), line: 1
                )
            ],
            line: 1)
        do {
            _ = try ConfigState.validateFile(n)
            Issue.record("accepted")
        } catch let error as ConfigError {
            #expect(error.path == "tenants.acme.bogus" && error.line == 3)
            #expect(error.message.hasPrefix("unknown key (expected one of: audit, auth_passthrough"))
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func quotedNumbersAreNotIntegers() {
        let n = ConfigNode.mapping(
            [
                (
                    key: "defaults",
                    value: .mapping(
                        [
                            (
                                key: "rate_limit",
                                value: .mapping(
                                    [
                                        (
                                            key: "requests_per_minute", value: .scalar("60", quoted: true, line: 4),
                                            line: 4
                                        )
                                    ], line: 3), line: 3
                            )
                        ], line: 2), line: 2
                )
            ], line: 1)
        #expect(throws: ConfigError.self) { try ConfigState.validateFile(n) }
    }
}

@Suite struct ConfigStateTests {
    let base =
        #"{"backends":{"demo":{"provider":"mock"}},"models":{"m":{"backend":"demo"},"n":{"backend":"demo"}},"tenants":{"acme":{"name":"Acme","models":["m"],"rate_limit":{"requests_per_minute":5,"tokens_per_minute":7}}}}"#

    @Test func mergeIsKeyByKeyAndIdempotent() throws {
        let first = ConfigState().merging(try ConfigState.validateFile(node(base)), prune: false)
        let patch = try ConfigState.validateFile(
            node(#"{"tenants":{"acme":{"rate_limit":{"requests_per_minute":9}}}}"#))
        let second = first.merging(patch, prune: false)
        #expect(second.tenants["acme"]?["rate_limit"]?["requests_per_minute"]?.intValue == 9)
        #expect(second.tenants["acme"]?["rate_limit"]?["tokens_per_minute"]?.intValue == 7)
        #expect(second.tenants["acme"]?["name"]?.stringValue == "Acme")
        #expect(second.merging(patch, prune: false) == second)
    }

    @Test func nullDeletesAndPruneRemovesUnnamed() throws {
        let first = ConfigState().merging(try ConfigState.validateFile(node(base)), prune: false)
        let deleted = first.merging(try ConfigState.validateFile(node(#"{"tenants":{"acme":null}}"#)), prune: false)
        #expect(deleted.tenants["acme"] == nil)
        #expect(deleted.models.count == 2)
        let pruned = first.merging(
            try ConfigState.validateFile(node(#"{"backends":{"demo":{"provider":"mock"}}}"#)), prune: true)
        #expect(pruned.models.isEmpty && pruned.tenants.isEmpty && pruned.backends.count == 1)
    }

    @Test func documentRoundTrips() throws {
        let state = ConfigState().merging(try ConfigState.validateFile(node(base)), prune: false)
        let again = ConfigState().merging(try ConfigState.validateFile(ConfigNode(json: state.document())), prune: true)
        #expect(again == state)
    }

    @Test func crossReferencesAreChecked() throws {
        var state = ConfigState().merging(try ConfigState.validateFile(node(base)), prune: false)
        state.tenants["acme"] = try JSONParser.parse(#"{"models":["ghost"]}"#)
        #expect(throws: ConfigError.self) { try GatewayConfig(state: state, keys: [], version: 1) }
        state.tenants["acme"] = try JSONParser.parse(#"{"models":["m"]}"#)
        state.models["bad"] = try JSONParser.parse(#"{"backend":"nowhere"}"#)
        #expect(throws: ConfigError.self) { try GatewayConfig(state: state, keys: [], version: 1) }
        state.models["bad"] = nil
        state.backends["o"] = try JSONParser.parse(#"{"provider":"openai","base_url":"ftp://x"}"#)
        #expect(throws: ConfigError.self) { try GatewayConfig(state: state, keys: [], version: 1) }
    }

    @Test func tenantInheritsDefaultsKeyByKey() throws {
        var state = ConfigState().merging(try ConfigState.validateFile(node(base)), prune: false)
        state.settings["defaults"] = try JSONParser.parse(
            #"{"rate_limit":{"requests_per_minute":60,"tokens_per_minute":100},"features":{"streaming":false}}"#)
        let config = try GatewayConfig(state: state, keys: [], version: 1)
        let acme = try #require(config.tenants["acme"])
        #expect(acme.effective["rate_limit"]?["requests_per_minute"]?.intValue == 5)
        #expect(acme.effective["rate_limit"]?["tokens_per_minute"]?.intValue == 7)
        #expect(acme.feature("streaming", subject: "u") == false)
        #expect(acme.defaultModel == "m")
    }
}

@Suite struct RemoteImageTests {
    @Test(arguments: [
        ("https://api.openai.com/v1", true), ("https://my-resource.openai.azure.com/openai", true),
        ("https://user:pw@api.example.com:8443/v1", true), ("http://api.openai.com/v1", false),
        ("https://127.0.0.1/v1", false), ("https://10.0.0.5:8000/v1", false), ("https://[::1]:8000/v1", false),
        ("https://vllm/v1", false), ("https://gpu.internal/v1", false), ("https://box.local", false),
        ("https://localhost:11434", false),
    ])
    func onlyHostedHTTPSEndpointsFetchImageURLsByDefault(url: String, hosted: Bool) {
        #expect(BackendConfig.looksHosted(url) == hosted)
    }
}
