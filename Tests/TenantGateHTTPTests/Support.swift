import Foundation
import Testing

@testable import TenantGateCore
@testable import TenantGateHTTP
import TenantGateServing
@testable import TenantGateStore
@testable import TenantGateSystem

/// A migrated database in a fresh temporary file.
func temporaryDatabase() throws -> (path: String, db: SQLiteConnection) {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("tg-http-\(UUID().uuidString).db").path
    let db = try SQLiteConnection(path: path)
    try Migrations.migrate(db)
    return (path, db)
}

/// A configuration snapshot from a JSON config document.
func gatewayConfig(_ json: String) throws -> GatewayConfig {
    let state = ConfigState().merging(
        try ConfigState.validateFile(ConfigNode(json: try JSONParser.parse(json))), prune: false)
    return try GatewayConfig(state: state, keys: [], version: 1)
}

/// Two remote backends, a mock one, and tenant `acme` whose model `a` falls back to `b`, then `m`.
let routedConfig = """
    {"backends": {
       "one": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "max_retries": 2,
               "retry_backoff_ms": 100, "retry_budget_ms": 10000},
       "two": {"provider": "openai", "base_url": "http://127.0.0.1:9/v2", "max_retries": 0},
       "demo": {"provider": "mock"}},
     "models": {"a": {"backend": "one"}, "b": {"backend": "two"}, "m": {"backend": "demo"}},
     "tenants": {"acme": {"models": ["a", "b", "m"], "fallbacks": {"a": ["b", "m"]},
                          "circuit_breaker": {"errors": 2, "within_s": 60, "cooldown_s": 30}}}}
    """

/// A clock that never sleeps: it records the delays and moves its time forward by them.
final class FakeClock: RetryClock, @unchecked Sendable {  // used by one test thread
    var now: Int64 = 1_000
    var slept: [Int] = []
    /// The jitter: `true` takes the top of the range, else the bottom.
    var highJitter = false

    func nowMs() -> Int64 { now }
    func sleep(ms: Int) {
        slept.append(ms)
        now += Int64(ms)
    }
    func random(in range: ClosedRange<Int>) -> Int { highJitter ? range.upperBound : range.lowerBound }
}

/// A sink that keeps what was written; with `holdingEnd`, the response's last bytes are held back until
/// `release()` and a failed settlement replaces them (`replaced`), as the front ends do.
final class RecordingSink: ResponseSink {
    var status: Int?
    var headers: [(String, String)] = []
    var written: [UInt8] = []
    private let holdingEnd: Bool
    private var held: [UInt8] = []
    /// What a failed settlement put in place of the held end.
    var replaced: (status: Int, body: [UInt8])?

    init(holdingEnd: Bool = false) { self.holdingEnd = holdingEnd }

    func last(_ bytes: [UInt8]) {
        if holdingEnd { held += bytes } else { written += bytes }
    }
    func replaceEnd(status: Int, body: [UInt8], tail: [UInt8]) {
        replaced = (status, body)
        held = []
    }
    func release() {
        written += held
        held = []
    }
    var flushes = 0
    /// Flushes fail from this one on (the client left).
    var goneAfterFlushes = Int.max

    var headWritten: Bool { status != nil }
    func head(status: Int, headers: [(String, String)]) {
        guard self.status == nil else { return }
        self.status = status
        self.headers = headers
    }
    func body(_ bytes: [UInt8]) -> Bool {
        written += bytes
        return true
    }
    func flush() -> Bool {
        flushes += 1
        return flushes <= goneAfterFlushes
    }
    var text: String { String(decoding: written, as: UTF8.self) }
}

/// An upstream that answers from a script, one entry per call.
final class ScriptedTransport: UpstreamTransport {
    enum Step {
        case answer(status: Int, headers: [String: String], body: [UInt8])
        case fail(CurlError)
    }
    var steps: [Step]
    var sent: [OutgoingRequest] = []

    init(_ steps: [Step]) { self.steps = steps }

    func perform(_ request: OutgoingRequest, onData: @escaping (Int, [UInt8]) -> Bool) -> Result<
        ResponseHead, CurlError
    > {
        sent.append(request)
        guard !steps.isEmpty else { return .failure(CurlError(code: 7, message: "no script left")) }
        switch steps.removeFirst() {
        case .fail(let error): return .failure(error)
        case .answer(let status, let headers, let body):
            // libcurl ends a transfer whose write callback refused the data with CURLE_WRITE_ERROR.
            if !body.isEmpty, !onData(status, body) { return .failure(CurlError(code: 23, message: "write")) }
            return .success(ResponseHead(status: status, headers: headers))
        }
    }
}
