import Testing

@testable import TenantGateCore
@testable import TenantGateHTTP
@testable import TenantGateRuntime
import TenantGateServing
@testable import TenantGateSystem

/// A front end's request, scripted.
final class ScriptedConnection: FrontEndConnection {
    let values: [String: String]
    let body: [UInt8]
    var written: [UInt8] = []
    var clientGone = false

    init(_ values: [String: String], body: [UInt8] = []) {
        self.values = values
        self.body = body
    }

    func params() -> [String: String] { values }
    func readBody(limit: Int, expected: Int?) -> BodyRead {
        if let expected, expected > limit { return .tooLarge }
        return body.count > limit ? .tooLarge : .body(body)
    }
    func write(_ bytes: [UInt8]) -> Bool {
        written += bytes
        return true
    }
    func flush() -> Bool { true }
}

@Suite struct FrontEndAdapterTests {
    /// `Authorization: Bearer <token>` (the scheme in any case, then one space; the token trimmed of
    /// blanks), else `x-api-key`; any other Authorization gives the empty credential (refused later).
    @Test(
        arguments: [
            ("Bearer tg_abc", nil, "tg_abc"), ("bearer  tg_abc \t", nil, "tg_abc"), ("BEARER tg_abc", nil, "tg_abc"),
            ("Bearer", nil, ""), ("Bearer\ttg_abc", nil, ""), ("Bearerx tg_abc", nil, ""), ("Basic dXNlcg==", nil, ""),
            (" Bearer tg_abc", nil, ""), ("Bearer tg_é", nil, "tg_é"), (nil, " tg_key\t", "tg_key"),
            ("Bearer tg_a", "tg_b", "tg_a"),
        ] as [(String?, String?, String?)])
    func theCredentialComesFromBearerOrTheAPIKeyHeader(_ auth: String?, _ apiKey: String?, _ expected: String?) {
        var headers: [String: String] = [:]
        headers["authorization"] = auth
        headers["x-api-key"] = apiKey
        #expect(Request(method: "POST", path: "/v1/chat/completions", headers: headers).credential == expected)
    }

    @Test func trimmingDropsOnlyTheGivenASCIIAtTheEnds() {
        #expect(" \t\r\nab c\n ".trimmingASCII() == "ab c")
        #expect("xxaxbxx".trimmingASCII("x") == "axb")
        #expect("\u{A0}é é\u{A0}".trimmingASCII() == "\u{A0}é é\u{A0}")
        #expect("  ".trimmingASCII() == "")
        #expect("~a~".trimmingASCII("~") == "a")
        #expect("\u{7F}a\u{7F}".trimmingASCII("\u{7F}") == "a")
    }

    @Test func nginxParamsBecomeTheRequest() {
        let connection = ScriptedConnection(
            [
                "REQUEST_METHOD": "POST", "TG_ROUTE": "api", "TG_TENANT": "acme", "TG_PATH": "/v1/chat/completions",
                "QUERY_STRING": "a=1", "HTTP_AUTHORIZATION": "Bearer k", "HTTP_X_TENANT_ID": "acme",
                "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "2", "REQUEST_ID": "abc",
                "REMOTE_ADDR": "10.0.0.1",
            ], body: Array("{}".utf8))
        let (request, tooLarge) = FastCGIAdapter.makeRequest(connection, maxBody: 100)
        #expect(!tooLarge && request.route == .api && request.pathTenant == "acme")
        #expect(request.path == "/v1/chat/completions" && request.query == "a=1" && request.body == Array("{}".utf8))
        #expect(request.headers["authorization"] == "Bearer k" && request.headers["x-tenant-id"] == "acme")
        #expect(request.headers["content-type"] == "application/json" && request.requestID == "abc")
        #expect(request.prefix == "")
    }

    @Test func apacheRedirectedRoutingParamsCountTheSame() {
        let connection = ScriptedConnection([
            "REQUEST_METHOD": "GET", "REDIRECT_TG_ROUTE": "admin", "REDIRECT_TG_PATH": "/admin/login",
            "UNIQUE_ID": "u-1", "SCRIPT_NAME": "/llm/tenantgate.fcgi",
        ])
        let (request, _) = FastCGIAdapter.makeRequest(connection, maxBody: 100)
        #expect(request.route == .admin && request.path == "/admin/login" && request.requestID == "u-1")
    }

    @Test func withoutRoutingParamsOnlyTheTenantAPIIsReachedAndIdsAreMade() {
        let connection = ScriptedConnection(["REQUEST_METHOD": "GET", "SCRIPT_NAME": "/llm/tenantgate.fcgi"])
        let (request, _) = FastCGIAdapter.makeRequest(connection, maxBody: 100)
        #expect(request.route == .api && request.path == "/llm/tenantgate.fcgi")
        #expect(request.requestID.utf8.count == 32)
        let other = FastCGIAdapter.makeRequest(connection, maxBody: 100).0
        #expect(other.requestID != request.requestID)
    }

    @Test func aBodyShorterThanItsContentLengthIsMarked() {
        let cut = ScriptedConnection(["REQUEST_METHOD": "POST", "CONTENT_LENGTH": "10"], body: Array("{}".utf8))
        #expect(FastCGIAdapter.makeRequest(cut, maxBody: 100).0.bodyIncomplete)
        let whole = ScriptedConnection(["REQUEST_METHOD": "POST", "CONTENT_LENGTH": "2"], body: Array("{}".utf8))
        #expect(!FastCGIAdapter.makeRequest(whole, maxBody: 100).0.bodyIncomplete)
    }

    @Test func bodiesOverTheLimitAreReported() {
        let big = ScriptedConnection(["REQUEST_METHOD": "POST", "CONTENT_LENGTH": "500"])
        #expect(FastCGIAdapter.makeRequest(big, maxBody: 100).tooLarge)
        let chunked = ScriptedConnection(["REQUEST_METHOD": "POST"], body: [UInt8](repeating: 1, count: 101))
        #expect(FastCGIAdapter.makeRequest(chunked, maxBody: 100).tooLarge)
    }

    @Test func onlyWellFormedPrefixesAreTaken() {
        for (value, taken) in [
            ("/llm", true), ("/a/b-c_d.e", true), ("/", false), ("llm", false), ("/llm/", false), ("/../x", false),
            ("/a//b", false), ("/a b", false), ("/\"x", false), ("/" + String(repeating: "a", count: 70), false),
        ] {
            let connection = ScriptedConnection(["REQUEST_METHOD": "GET", "TG_PREFIX": value])
            #expect((FastCGIAdapter.makeRequest(connection, maxBody: 10).0.prefix == value) == taken, "\(value)")
        }
        #expect("a/admin b/admin".replacingAll("/admin", with: "/llm/admin") == "a/llm/admin b/llm/admin")
        #expect("x".replacingAll("", with: "y") == "x" && "aaa".replacingAll("aa", with: "b") == "ba")
    }

    @Test func theSinkWritesACGIHead() {
        let connection = ScriptedConnection([:])
        let sink = FastCGISink(connection)
        sink.json(201, .object([("ok", .bool(true))]), headers: [("X-A", "1\r\nInjected: yes")])
        // A whole answer is held until the request is done (its settlement written).
        #expect(connection.written.isEmpty)
        sink.release()
        let text = String(decoding: connection.written, as: UTF8.self)
        #expect(text.hasPrefix("Status: 201 Created\r\n"))
        #expect(text.contains("X-A: 1Injected: yes\r\n") && text.hasSuffix("{\"ok\":true}"))
    }

    @Test func aFailedSettlementReplacesWhatTheClientHasNotSeen() {
        // Nothing sent yet: the whole answer becomes the error.
        let plain = ScriptedConnection([:])
        let sink = FastCGISink(plain)
        sink.json(200, .object([("answer", .string("secret"))]))
        sink.replaceEnd(status: 503, body: Array("{\"e\":1}".utf8), tail: [])
        sink.release()
        let text = String(decoding: plain.written, as: UTF8.self)
        #expect(text.hasPrefix("Status: 503 Service Unavailable\r\n") && text.hasSuffix("{\"e\":1}"))
        #expect(!text.contains("secret") && !text.contains("200"))
        // A stream already under way: its held end becomes the error tail.
        let streamed = ScriptedConnection([:])
        let relay = FastCGISink(streamed)
        relay.head(status: 200, headers: [])
        relay.body(Array("data: 1\n\n".utf8))
        relay.flush()
        relay.last(Array("data: [DONE]\n\n".utf8))
        #expect(!String(decoding: streamed.written, as: UTF8.self).contains("[DONE]"))
        relay.replaceEnd(status: 503, body: [], tail: Array("data: {\"error\":1}\n\n".utf8))
        relay.release()
        let events = String(decoding: streamed.written, as: UTF8.self)
        #expect(events.hasSuffix("data: 1\n\ndata: {\"error\":1}\n\n") && !events.contains("[DONE]"))
    }
}
