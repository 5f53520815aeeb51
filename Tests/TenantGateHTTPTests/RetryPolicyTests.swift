import Testing

@testable import TenantGateCore
@testable import TenantGateHTTP
import TenantGateServing
@testable import TenantGateSystem

@Suite struct RetryPolicyTests {
    let retryable = RetryableUpstream(error: .upstreamTimeout, retryAfterMs: nil)

    @Test func retriesUpToTheCountWithDoublingJitteredBackoffThenRethrows() {
        let clock = FakeClock()
        let policy = RetryPolicy(maxRetries: 3, backoffMs: 100, budgetMs: 100_000)
        var attempts = 0
        var retries = 0
        #expect(throws: RetryableUpstream.self) {
            try policy.run(clock: clock, canRetry: { true }, onRetry: { retries += 1 }) {
                attempts += 1
                throw retryable
            }
        }
        #expect(attempts == 4)
        #expect(retries == 3)
        // Low jitter: half of 100, 200, 400.
        #expect(clock.slept == [50, 100, 200])
        clock.highJitter = true
        clock.slept = []
        _ = try? policy.run(clock: clock, canRetry: { true }, onRetry: {}) { throw retryable }
        #expect(clock.slept == [100, 200, 400])
    }

    @Test func stopsAtTheFirstSuccess() throws {
        let clock = FakeClock()
        var attempts = 0
        try RetryPolicy(maxRetries: 5, backoffMs: 10, budgetMs: 10_000).run(
            clock: clock, canRetry: { true }, onRetry: {}
        ) {
            attempts += 1
            if attempts < 3 { throw retryable }
        }
        #expect(attempts == 3)
        #expect(clock.slept.count == 2)
    }

    @Test func honoursTheUpstreamsRetryAfterAndTheTimeBudget() {
        let clock = FakeClock()
        let policy = RetryPolicy(maxRetries: 5, backoffMs: 10, budgetMs: 2_500)
        var attempts = 0
        #expect(throws: RetryableUpstream.self) {
            try policy.run(clock: clock, canRetry: { true }, onRetry: {}) {
                attempts += 1
                throw RetryableUpstream(error: .upstreamError("busy"), retryAfterMs: 1_000)
            }
        }
        // 1 s, 1 s, and a third wait would pass the 2.5 s budget.
        #expect(clock.slept == [1_000, 1_000])
        #expect(attempts == 3)
    }

    @Test func neverRetriesOnceTheClientHasBytesOrForFinalErrors() {
        let clock = FakeClock()
        let policy = RetryPolicy(maxRetries: 5, backoffMs: 10, budgetMs: 10_000)
        var attempts = 0
        #expect(throws: RetryableUpstream.self) {
            try policy.run(clock: clock, canRetry: { false }, onRetry: {}) {
                attempts += 1
                throw retryable
            }
        }
        #expect(attempts == 1)
        #expect(throws: GatewayError.self) {
            try policy.run(clock: clock, canRetry: { true }, onRetry: {}) {
                attempts += 1
                throw GatewayError.invalidRequest("no")
            }
        }
        #expect(attempts == 2)
        #expect(clock.slept.isEmpty)
    }

    @Test(arguments: [0, 1, 10, 62, Int.max / 2, Int.max])
    func delayNeverTrapsOnAnyBackoffOrCountAndRespectsTheBudget(_ value: Int) throws {
        let policy = RetryPolicy(maxRetries: 3, backoffMs: value, budgetMs: 1)
        let clock = FakeClock()
        clock.highJitter = true
        let delay = policy.delay(afterTries: value, retryAfterMs: value, clock: clock)
        // Never below the upstream's Retry-After nor the backoff's lower half, saturating instead of trapping.
        let base = value.saturatingMultiply(1 << min(value, 10))
        #expect(delay >= value && delay >= base / 2)
        #expect(delay <= max(value, (base / 2).saturatingAdd(max(1, base / 2))))
        // A retry that would end past the 1 ms budget is not waited for: the failure comes back at once.
        var attempts = 0
        #expect(throws: RetryableUpstream.self) {
            try policy.run(clock: clock, canRetry: { true }, onRetry: {}) {
                attempts += 1
                throw RetryableUpstream(error: .upstreamTimeout, retryAfterMs: value)
            }
        }
        #expect(clock.slept.allSatisfy { $0 <= 1 })
        #expect(value > 1 ? attempts == 1 : attempts >= 1)
    }
}

@Suite struct UpstreamClientTests {
    let principal: Principal
    let backend: BackendConfig

    init() throws {
        let config = try gatewayConfig(routedConfig)
        let tenant = try #require(config.tenants["acme"])
        principal = Principal(
            tenant: tenant, key: APIKeyRecord(id: "k1", tenant: tenant.id, lookupPrefix: "x", hash: []))
        backend = try #require(config.backends["one"])
    }

    func client(_ steps: [ScriptedTransport.Step]) -> (UpstreamClient, ScriptedTransport) {
        let transport = ScriptedTransport(steps)
        let trace = TraceContext(header: nil, newTraceID: String(repeating: "a", count: 32))
        let client = UpstreamClient(
            transport: transport, principal: principal, requestID: "req-1", trace: trace,
            ids: IDGenerator(seed: [1, 2, 3]))
        return (client, transport)
    }

    @Test func aProviderHeaderReplacesTheTransportsOfTheSameName() throws {
        let (client, _) = self.client([])
        let request = ProviderRequest(
            url: "http://x/v1/messages", body: .object([]),
            headers: [("Accept", "text/plain"), ("anthropic-beta", "b1")])
        let outgoing = try client.outgoing(request, backend: backend, stream: false)
        #expect(outgoing.headers.filter { $0.lowercased().hasPrefix("accept:") } == ["Accept: text/plain"])
        #expect(outgoing.headers.contains("anthropic-beta: b1"))
        #expect(outgoing.headers.contains("X-Request-ID: req-1"))
        #expect(outgoing.headers.contains { $0.hasPrefix("traceparent: 00-" + String(repeating: "a", count: 32)) })
        #expect(outgoing.totalTimeoutMs == backend.timeoutMs)
    }

    @Test func failuresMapToRetryableOrFinalErrors() throws {
        let (client, _) = self.client([
            .fail(CurlError(code: 28, message: "timeout")),
            .fail(CurlError(code: 7, message: "refused")),
            .answer(status: 503, headers: ["retry-after": "7"], body: Array("busy".utf8)),
            .answer(status: 400, headers: [:], body: Array(#"{"error":{"message":"bad temperature"}}"#.utf8)),
            .answer(status: 200, headers: [:], body: Array("[1]".utf8)),
            .answer(status: 200, headers: [:], body: [UInt8](repeating: 0x20, count: 64)),
        ])
        let outgoing = try client.outgoing(
            ProviderRequest(url: "http://x", body: .null), backend: backend, stream: false)
        #expect(throws: RetryableUpstream.self) { try client.fetch(outgoing, limit: 100) }
        #expect(throws: RetryableUpstream.self) { try client.fetch(outgoing, limit: 100) }
        do {
            _ = try client.fetch(outgoing, limit: 100)
            Issue.record("a 503 was accepted")
        } catch let failure as RetryableUpstream {
            #expect(failure.retryAfterMs == 7_000)
            #expect(failure.error.status == 502)
        }
        do {
            _ = try client.fetch(outgoing, limit: 100)
            Issue.record("a 400 was accepted")
        } catch let error as GatewayError {
            #expect(error.status == 400)
            #expect(error.message.contains("bad temperature"))
        }
        #expect(throws: GatewayError.self) { try client.fetchJSON(outgoing, limit: 100) }
        // Larger than the limit: never kept whole.
        #expect(throws: GatewayError.self) { try client.fetch(outgoing, limit: 10) }
    }
}
