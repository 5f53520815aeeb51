import Testing

@testable import TenantGateCore

struct FakeHasher: KeyHasher {
    func hash(_ key: String) -> [UInt8] { Array(key.utf8.reversed()) }
    func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool { a == b }
}

func makeConfig(resolution: [String] = [], defaultTenant: String? = nil) throws -> GatewayConfig {
    var state = ConfigState()
    state.backends["demo"] = try JSONParser.parse(#"{"provider":"mock"}"#)
    state.models["m"] = try JSONParser.parse(#"{"backend":"demo"}"#)
    state.tenants["acme"] = try JSONParser.parse(#"{"models":["m"]}"#)
    state.tenants["globex"] = try JSONParser.parse(#"{"models":["m"]}"#)
    if !resolution.isEmpty { state.settings["resolution"] = .array(resolution.map { .string($0) }) }
    if let defaultTenant { state.settings["default_tenant"] = .string(defaultTenant) }
    let keys = [
        APIKeyRecord(
            id: "k1", tenant: TenantID("acme")!, lookupPrefix: "tg_acmeacme",
            hash: FakeHasher().hash("tg_acmeacme_secret")),
        APIKeyRecord(
            id: "k2", tenant: TenantID("globex")!, lookupPrefix: "tg_globexgl",
            hash: FakeHasher().hash("tg_globexgl_secret")),
    ]
    return try GatewayConfig(
        state: state,
        keys: keys.map {
            APIKeyRecord(
                id: $0.id, tenant: $0.tenant, lookupPrefix: String("\($0.lookupPrefix)_secret".prefix(12)),
                hash: $0.hash)
        }, version: 1)
}

@Suite struct TenantIDTests {
    @Test(arguments: ["a", "acme", "a-b_c", "0", String(repeating: "a", count: 63)])
    func accepts(_ id: String) { #expect(TenantID(id) != nil) }

    @Test(arguments: [
        "", "A", "-a", "_a", "a b", "a/b", "a.b", "ä", String(repeating: "a", count: 64), "a'--", "a\u{0}", "ＡＣＭＥ",
    ])
    func rejects(_ id: String) { #expect(TenantID(id) == nil) }
}

@Suite struct AuthenticatorTests {
    let auth = Authenticator(hasher: FakeHasher())
    let acmeKey = "tg_acmeacme_secret"

    @Test func keyOwnerResolvesTenant() throws {
        let p = try auth.authenticate(
            ResolutionInput(pathTenant: nil, headerTenant: nil, credential: acmeKey), config: makeConfig(), now: 0)
        #expect(p.tenant.id.rawValue == "acme")
        #expect(p.key.id == "k1")
    }

    @Test func pathAndHeaderMustAgreeWithKey() throws {
        let config = try makeConfig()
        #expect(throws: GatewayError.tenantMismatch) {
            try auth.authenticate(
                ResolutionInput(pathTenant: "globex", headerTenant: nil, credential: acmeKey), config: config, now: 0)
        }
        #expect(throws: GatewayError.tenantMismatch) {
            try auth.authenticate(
                ResolutionInput(pathTenant: "acme", headerTenant: "globex", credential: acmeKey), config: config, now: 0
            )
        }
        #expect(throws: GatewayError.tenantNotFound) {
            try auth.authenticate(
                ResolutionInput(pathTenant: "nobody", headerTenant: nil, credential: acmeKey), config: config, now: 0)
        }
    }

    @Test func validatesIdsBeforeAnything() throws {
        #expect(throws: GatewayError.invalidTenantID) {
            try auth.authenticate(
                ResolutionInput(pathTenant: "Bad!", headerTenant: nil, credential: nil), config: makeConfig(), now: 0)
        }
        #expect(throws: GatewayError.invalidTenantID) {
            try auth.authenticate(
                ResolutionInput(pathTenant: nil, headerTenant: "x y", credential: acmeKey), config: makeConfig(), now: 0
            )
        }
    }

    @Test(
        arguments: [
            (nil, GatewayError.missingAPIKey), ("", .missingAPIKey), ("tg_acmeacme_wrong", .invalidAPIKey),
            ("sk-foo", .invalidAPIKey), ("tg_short", .invalidAPIKey),
            ("aaa.bbb.ccc", .invalidToken("JWT authentication is not configured")),
        ] as [(String?, GatewayError)])
    func credentialFailures(_ credential: String?, _ expected: GatewayError) throws {
        #expect(throws: expected) {
            try auth.authenticate(
                ResolutionInput(pathTenant: "acme", headerTenant: nil, credential: credential), config: makeConfig(),
                now: 0)
        }
    }

    @Test func resolutionOrderIsConfigurable() throws {
        // With only api_key in the order, a path naming another tenant is ignored rather than compared.
        let config = try makeConfig(resolution: ["api_key"])
        let p = try auth.authenticate(
            ResolutionInput(pathTenant: "globex", headerTenant: nil, credential: acmeKey), config: config, now: 0)
        #expect(p.tenant.id.rawValue == "acme")
    }
}

@Suite struct GatewayErrorTests {
    @Test(
        arguments: [
            (GatewayError.invalidJSON("x"), 400, "invalid_json"), (.invalidTenantID, 400, "invalid_tenant_id"),
            (.missingAPIKey, 401, "missing_api_key"), (.invalidAPIKey, 401, "invalid_api_key"),
            (.tenantMismatch, 403, "tenant_mismatch"), (.featureDisabled("streaming"), 403, "feature_disabled"),
            (.modelNotAllowed("m"), 403, "model_not_allowed"), (.tenantNotFound, 404, "tenant_not_found"),
            (.requestTooLarge(limit: 1), 413, "request_too_large"), (.upstreamError("x"), 502, "upstream_error"),
            (.upstreamTimeout, 504, "upstream_timeout"),
        ] as [(GatewayError, Int, String)])
    func mapsStatusAndCode(_ error: GatewayError, _ status: Int, _ code: String) throws {
        #expect(error.status == status)
        #expect(error.code == code)
        let body = error.body
        #expect(body["error"]?["code"]?.stringValue == code)
        #expect(body["error"]?["type"]?.stringValue == error.type)
        #expect(body["error"]?["param"] != nil)
        #expect(body["error"]?["message"]?.stringValue?.isEmpty == false)
    }
}

@Suite struct ChatRequestTests {
    @Test func parsesFields() throws {
        let r = try ChatRequest.parse(
            Array(
                #"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":5,"user":"u1"}"#
                    .utf8))
        #expect(r.model == "m" && r.stream && r.includeUsage && r.maxTokens == 5 && r.user == "u1")
    }

    @Test(arguments: [
        #"{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
        #"{"messages":[{"role":"user","content":"x"}],"stream_options":true}"#,
        #"{"messages":[{"role":"user","content":"x"}],"user":5}"#,
        #"{"messages":[{"content":"x"}]}"#,
        #"{"messages":[5]}"#,
        #"{"model":"","messages":[{"role":"user","content":"x"}]}"#,
        #"{"messages":[{"role":"user","content":"x"}],"max_tokens":1.5}"#,
    ])
    func refusesWrongTypes(_ body: String) {
        #expect(throws: GatewayError.self) { try ChatRequest.parse(Array(body.utf8)) }
    }
}

@Suite struct MockProviderTests {
    @Test func deterministicReplyAndUsage() throws {
        let r = try ChatRequest.parse(Array(#"{"messages":[{"role":"user","content":"one two three"}]}"#.utf8))
        let a = MockProvider.replyText(for: r)
        #expect(a == MockProvider.replyText(for: r))
        #expect(a.contains("3 words"))
        let usage = MockProvider.usage(for: r, reply: a)
        #expect(usage.promptTokens == TokenEstimate.prompt(["one two three"]))
        #expect(usage.completionTokens == TokenEstimate.text(a))
        let chunks = MockProvider.chunks(a)
        #expect(chunks.joined() == a)
        #expect(chunks.count >= 4)
    }
}

@Suite struct EmbeddingsRequestTests {
    @Test func acceptsEveryInputShape() throws {
        #expect(try EmbeddingsRequest.parse(Array(#"{"input":"héllo"}"#.utf8)).tokenBound == 6)
        let r = try EmbeddingsRequest.parse(Array(#"{"model":"m","input":["ab","c"],"user":"u"}"#.utf8))
        #expect(r.texts == ["ab", "c"] && r.model == "m" && r.user == "u")
        #expect(try EmbeddingsRequest.parse(Array(#"{"input":[[1,2,3],[4]]}"#.utf8)).tokenBound == 4)
    }

    @Test(arguments: [#"{}"#, #"{"input":""}"#, #"{"input":[]}"#, #"{"input":[[]]}"#, #"{"input":[null]}"#, #"[1]"#])
    func refuses(_ body: String) {
        #expect(throws: GatewayError.self) { try EmbeddingsRequest.parse(Array(body.utf8)) }
    }
}

@Suite struct KeySettingsTests {
    let auth = Authenticator(hasher: FakeHasher())

    /// Tenant `acme` (models m, n) with one key of the given settings, secret `tg_acmeacme_secret`.
    func config(models: [String]? = nil, expiresAt: Int64? = nil, revokedAt: Int64? = nil) throws -> GatewayConfig {
        var state = ConfigState()
        state.backends["demo"] = try JSONParser.parse(#"{"provider":"mock"}"#)
        state.models["m"] = try JSONParser.parse(#"{"backend":"demo"}"#)
        state.models["n"] = try JSONParser.parse(#"{"backend":"demo"}"#)
        state.tenants["acme"] = try JSONParser.parse(#"{"models":["m","n"]}"#)
        let key = APIKeyRecord(
            id: "k1", tenant: try #require(TenantID("acme")), lookupPrefix: "tg_acmeacme_",
            hash: FakeHasher().hash("tg_acmeacme_secret"), models: models, expiresAt: expiresAt, revokedAt: revokedAt)
        return try GatewayConfig(state: state, keys: [key], version: 1)
    }

    func authenticate(_ config: GatewayConfig, now: Int64) throws -> Principal {
        try auth.authenticate(
            ResolutionInput(pathTenant: "acme", headerTenant: nil, credential: "tg_acmeacme_secret"), config: config,
            now: now)
    }

    @Test func aKeysModelsNarrowTheTenantsAndNeverWidenThem() throws {
        #expect(try authenticate(config(), now: 0).tenant.models == ["m", "n"])
        #expect(try authenticate(config(models: ["n"]), now: 0).tenant.models == ["n"])
        #expect(try authenticate(config(models: ["n"]), now: 0).tenant.defaultModel == "n")
        // A model the tenant does not have stays out, whatever the key lists.
        #expect(try authenticate(config(models: ["n", "x"]), now: 0).tenant.models == ["n"])
        #expect(try authenticate(config(models: []), now: 0).tenant.models.isEmpty)
    }

    @Test func aKeyIsRefusedFromTheSecondItExpires() throws {
        let config = try config(expiresAt: 1_000)
        #expect(try authenticate(config, now: 999).key.id == "k1")
        #expect(throws: GatewayError.keyExpired) { try authenticate(config, now: 1_000) }
        #expect(throws: GatewayError.keyExpired) { try authenticate(config, now: 5_000) }
    }

    @Test func aRevokedKeyIsRefusedAsRevokedWhateverItsExpiry() throws {
        #expect(throws: GatewayError.keyRevoked) { try authenticate(config(revokedAt: 10), now: 0) }
        #expect(throws: GatewayError.keyRevoked) {
            try authenticate(config(expiresAt: 5, revokedAt: 10), now: 100)
        }
        #expect(GatewayError.keyRevoked.status == 401 && GatewayError.keyExpired.status == 401)
        #expect(GatewayError.keyRevoked.code == "key_revoked" && GatewayError.keyExpired.code == "key_expired")
    }

    @Test func onlyTheHolderOfTheSecretLearnsWhyItIsRefused() throws {
        // Same lookup prefix as the revoked key, another secret: just invalid.
        #expect(throws: GatewayError.invalidAPIKey) {
            try auth.authenticate(
                ResolutionInput(pathTenant: "acme", headerTenant: nil, credential: "tg_acmeacme_guessed"),
                config: config(revokedAt: 10), now: 100)
        }
        #expect(throws: GatewayError.invalidAPIKey) {
            try auth.authenticate(
                ResolutionInput(pathTenant: "acme", headerTenant: nil, credential: "tg_acmeacme_guessed"),
                config: config(expiresAt: 10), now: 100)
        }
    }
}
