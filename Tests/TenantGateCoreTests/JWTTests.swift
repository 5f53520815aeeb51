import Testing

@testable import TenantGateCore

struct AcceptAll: JWTSignatureVerifier {
    func verify(_ algorithm: JWTAlgorithm, signingInput: [UInt8], signature: [UInt8]) -> Bool { signature == [1] }
}

func jwt(_ header: String, _ payload: String, sig: [UInt8] = [1]) -> String {
    JWT.base64URLEncode(Array(header.utf8)) + "." + JWT.base64URLEncode(Array(payload.utf8)) + "."
        + JWT.base64URLEncode(sig)
}

@Suite struct JWTTests {
    let settings = JWTSettings(algorithm: .hs256, tenantClaim: "tenant_id", leewaySeconds: 30)
    let header = #"{"alg":"HS256","typ":"JWT"}"#

    @Test func base64URLRoundTrips() {
        for n in 0..<20 {
            let bytes = (0..<n).map { UInt8(($0 * 37 + 11) & 0xFF) }
            #expect(JWT.base64URLDecode(JWT.base64URLEncode(bytes)) == bytes)
        }
        #expect(JWT.base64URLDecode("a+b/") == nil)
        #expect(JWT.base64URLDecode("a") == nil)
    }

    @Test func validClaims() throws {
        let t = jwt(header, #"{"tenant_id":"acme","sub":"u1","exp":1000}"#)
        #expect(
            try JWT.verify(t, settings: settings, verifier: AcceptAll(), now: 999)
                == JWTClaims(tenant: "acme", subject: "u1", expiresAt: 1000))
        // Leeway: 29 s after exp still passes, 30 s does not.
        _ = try JWT.verify(t, settings: settings, verifier: AcceptAll(), now: 1029)
        #expect(throws: GatewayError.invalidToken("token expired")) {
            try JWT.verify(t, settings: settings, verifier: AcceptAll(), now: 1030)
        }
    }

    @Test(arguments: [
        (#"{"alg":"none"}"#, #"{"tenant_id":"a","sub":"u","exp":9999}"#, "algorithm none is not accepted"),
        (#"{"alg":"RS256"}"#, #"{"tenant_id":"a","sub":"u","exp":9999}"#, "algorithm RS256 is not accepted"),
        (#"{"typ":"JWT"}"#, #"{"tenant_id":"a","sub":"u","exp":9999}"#, "missing alg"),
        (#"{"alg":"HS256"}"#, #"{"tenant_id":"a","exp":9999}"#, "missing sub claim"),
        (#"{"alg":"HS256"}"#, #"{"sub":"u","exp":9999}"#, "missing tenant_id claim"),
        (#"{"alg":"HS256"}"#, #"{"tenant_id":"a","sub":"u"}"#, "missing exp"),
        (#"{"alg":"HS256"}"#, #"{"tenant_id":"a","sub":"u","exp":9999,"nbf":5000}"#, "token not yet valid"),
        (#"{"alg":"HS256"}"#, #"{"tenant_id":"a","sub":"u","exp":9999,"iat":5000}"#, "token issued in the future"),
        (#"{"alg":"HS256","crit":["x"]}"#, #"{"tenant_id":"a","sub":"u","exp":9999}"#, "unsupported critical header"),
        (#"[1]"#, #"{}"#, "malformed token"),
    ])
    func refusals(_ header: String, _ payload: String, _ why: String) {
        #expect(throws: GatewayError.invalidToken(why)) {
            try JWT.verify(jwt(header, payload), settings: settings, verifier: AcceptAll(), now: 1000)
        }
    }

    @Test func badSignatureIsRefused() {
        #expect(throws: GatewayError.invalidToken("bad signature")) {
            try JWT.verify(
                jwt(header, #"{"tenant_id":"a","sub":"u","exp":9999}"#, sig: [2]), settings: settings,
                verifier: AcceptAll(), now: 1000)
        }
    }
}
