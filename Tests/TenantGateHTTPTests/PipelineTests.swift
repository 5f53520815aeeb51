import Foundation
import Testing

@testable import TenantGateCore
@testable import TenantGateHTTP
import TenantGateServing
@testable import TenantGateSystem

/// The catalog of the in-process pipeline tests: two OpenAI-shaped upstreams (scripted), priced models,
/// and one tenant per behaviour under test.
private let pipelineConfig = """
    {"backends": {
       "one": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "max_retries": 0},
       "two": {"provider": "openai", "base_url": "http://127.0.0.1:9/v2", "max_retries": 0}},
     "models": {
       "a": {"backend": "one", "upstream_model": "up-a", "input_per_mtok": 1, "output_per_mtok": 2},
       "b": {"backend": "two", "upstream_model": "up-b", "input_per_mtok": 2, "output_per_mtok": 4}},
     "tenants": {
       "acme": {"models": ["a", "b"], "fallbacks": {"a": ["b"]}},
       "globex": {"models": ["a"]},
       "paced": {"models": ["a"], "rate_limit": {"requests_per_minute": 1}},
       "frugal": {"models": ["a"], "budget": {"daily_tokens": 50, "enforcement": "hard", "when_short": "refuse"}},
       "cached": {"models": ["a"], "cache": {"ttl_s": 60, "any_temperature": true}},
       "guarded": {"models": ["a"], "rate_limit": {"requests_per_minute": 100}, "policies": [
          {"name": "no-word", "phase": "ingress", "keywords": ["forbidden-word"], "action": "block"},
          {"name": "mails", "phase": "ingress", "detector": "pii.email", "action": "redact"},
          {"name": "codes", "phase": "egress", "pattern": "ZX-[0-9]{4}", "action": "redact",
           "replacement": "[code]"}]}}}
    """

/// The gateway's request path in one process: the real router, pipeline, stages, lease book and
/// settlement, over the in-memory ports and a scripted upstream.
final class PipelineHarness {
    let store = MemoryStore()
    let transport: ScriptedTransport
    let gateway: Gateway
    let resources: ThreadResources
    private var count = 0

    init(_ steps: [ScriptedTransport.Step] = []) throws {
        let state = ConfigState().merging(
            try ConfigState.validateFile(ConfigNode(json: try JSONParser.parse(pipelineConfig))), prune: false)
        let keys = try ["acme", "globex", "paced", "frugal", "cached", "guarded"].map { tenant in
            APIKeyRecord(
                id: "key-\(tenant)", tenant: try #require(TenantID(tenant)),
                lookupPrefix: String(PipelineHarness.key(tenant).prefix(APIKeyRecord.prefixLength)),
                hash: Crypto.sha256(Array(PipelineHarness.key(tenant).utf8)))
        }
        let config = try GatewayConfig(state: state, keys: keys, version: 1)
        let transport = ScriptedTransport(steps)
        self.transport = transport
        let ports = StorePorts(
            accounting: store, circuits: store, cache: store, responses: store, documents: NoDocuments(),
            operations: store)
        let services = WorkerServices(
            store: ports, settlements: store, reservations: store, leases: LeaseBook(settlements: store))
        resources = ThreadResources(services, transport: { transport })
        let counters = try #require(SharedCounters())
        gateway = Gateway(
            configs: FixedConfig(config), log: AppLog(path: "/dev/null", level: "error"),
            options: GatewayOptions(maxBodyBytes: 1 << 20),
            concurrency: ConcurrencyGate(counters: counters, row: 0, poolSlots: 64))
    }

    static func key(_ tenant: String) -> String { "tg_\(tenant)_test_secret_0123456789" }

    /// Sends one request as `tenant` (its own key unless `key` is given) and returns what was written.
    func send(
        _ method: String, _ path: String, tenant: String, body: String = "", key: String? = nil,
        headers: [String: String] = [:]
    ) -> RecordingSink {
        count += 1
        var all = [
            "authorization": "Bearer \(key ?? PipelineHarness.key(tenant))", "content-type": "application/json",
        ]
        all.merge(headers) { $1 }
        let request = Request(
            method: method, path: path, headers: all, body: Array(body.utf8), pathTenant: tenant,
            requestID: "req-\(count)")
        // Like the front ends, the sink holds the response's end back until the request is settled.
        let sink = RecordingSink(holdingEnd: true)
        gateway.handle(request, tooLarge: false, sink: sink, resources: resources)
        return sink
    }

    func chat(_ tenant: String, _ content: String, model: String = "a", extra: String = "") -> RecordingSink {
        send(
            "POST", "/v1/chat/completions", tenant: tenant,
            body: #"{"model": "\#(model)", "messages": [{"role": "user", "content": "\#(content)"}]\#(extra)}"#)
    }

    /// What the upstream was sent, each request's JSON body.
    var sentBodies: [JSONValue] { transport.sent.compactMap { try? JSONParser.parse($0.body) } }
}

extension JSONValue {
    /// The element at `index` of an array (nil otherwise, or out of range).
    subscript(index: Int) -> JSONValue? {
        guard let array = arrayValue, array.indices.contains(index) else { return nil }
        return array[index]
    }
}

extension RecordingSink {
    var json: JSONValue? { try? JSONParser.parse(written) }
    func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
}

/// An OpenAI chat completion answering `content` with 5 prompt and 3 completion tokens.
func completion(_ content: String = "hello there") -> ScriptedTransport.Step {
    .answer(
        status: 200, headers: ["content-type": "application/json"],
        body: Array(
            #"""
            {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up",
             "choices": [{"index": 0, "message": {"role": "assistant", "content": "\#(content)"},
                          "finish_reason": "stop"}],
             "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
            """#.utf8))
}

@Suite struct PipelineTests {
    @Test func aChatCallIsAnsweredAndSettledExactly() throws {
        let h = try PipelineHarness([completion()])
        let sink = h.chat("acme", "hi")
        #expect(sink.status == 200)
        #expect(sink.json?["choices"]?[0]?["message"]?["content"]?.stringValue == "hello there")
        #expect(sink.header("x-tenant-id") == "acme")
        // The upstream got its own model name, and the completion cap the reservation was made for.
        #expect(h.sentBodies.first?["model"]?.stringValue == "up-a")
        let record = try #require(h.store.records.first)
        #expect(h.store.records.count == 1)
        #expect(record.tenant == "acme" && record.status == 200 && record.model == "a")
        #expect(record.usage.promptTokens == 5 && record.usage.completionTokens == 3)
        // $1 and $2 per million tokens: 5 × 1000 + 3 × 2000 nano-USD.
        #expect(record.costNano == 11_000)
        #expect(record.keyID == "key-acme" && record.endpoint == "chat")
        #expect(h.store.held("acme") == (0, 0))
        #expect(h.store.charged["acme"]?.tokens == 8 && h.store.charged["acme"]?.nano == 11_000)
    }

    @Test func aStreamIsRelayedAndItsUsageSettled() throws {
        let sse = """
            data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"up","choices":[{"index":0,"delta":{"role":"assistant","content":"str"},"finish_reason":null}]}

            data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"up","choices":[{"index":0,"delta":{"content":"eamed"},"finish_reason":"stop"}]}

            data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"up","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}

            data: [DONE]


            """
        let h = try PipelineHarness([
            .answer(status: 200, headers: ["content-type": "text/event-stream"], body: Array(sse.utf8))
        ])
        let sink = h.chat("acme", "hi", extra: #", "stream": true, "stream_options": {"include_usage": true}"#)
        #expect(sink.status == 200)
        #expect(sink.text.contains(#""content":"str""#) && sink.text.contains(#""content":"eamed""#))
        #expect(sink.text.hasSuffix("data: [DONE]\n\n"))
        let record = try #require(h.store.records.first)
        #expect(record.streamed)
        #expect(record.usage.promptTokens == 7 && record.usage.completionTokens == 2)
        #expect(record.costNano == 7 * 1000 + 2 * 2000)
        #expect(h.store.held("acme") == (0, 0))
    }

    @Test func aFailedModelFallsBackToTheNextAndIsChargedAtItsPrice() throws {
        let h = try PipelineHarness([.fail(CurlError(code: 7, message: "connection refused")), completion("from b")])
        let sink = h.chat("acme", "hi")
        #expect(sink.status == 200)
        #expect(sink.json?["choices"]?[0]?["message"]?["content"]?.stringValue == "from b")
        #expect(h.sentBodies.map { $0["model"]?.stringValue } == ["up-a", "up-b"])
        let record = try #require(h.store.records.first)
        #expect(record.fallbackUsed && record.model == "b" && record.backend == "two")
        #expect(record.costNano == 5 * 2000 + 3 * 4000)
    }

    @Test func everyModelFailingIsA502WithNothingCharged() throws {
        let h = try PipelineHarness([
            .fail(CurlError(code: 7, message: "refused")), .fail(CurlError(code: 7, message: "refused")),
        ])
        let sink = h.chat("acme", "hi")
        #expect(sink.status == 502)
        #expect(sink.json?["error"]?["code"]?.stringValue == "upstream_error")
        #expect(h.store.records.first?.status == 502)
        #expect(h.store.charged["acme"] == nil)
        #expect(h.store.held("acme") == (0, 0))
    }

    @Test func theRequestRateLimitRefusesWithoutCallingTheUpstream() throws {
        let h = try PipelineHarness([completion(), completion()])
        #expect(h.chat("paced", "one").status == 200)
        let refused = h.chat("paced", "two")
        #expect(refused.status == 429)
        #expect(refused.json?["error"]?["code"]?.stringValue == "rate_limit_exceeded")
        #expect(refused.header("retry-after") != nil)
        #expect(h.transport.sent.count == 1)
        #expect(h.store.records.last?.refusedLimit == "requests")
        // Another tenant is not touched by it.
        #expect(h.chat("globex", "three").status == 200)
    }

    @Test func aHardTokenBudgetRefusesTheWorstCaseBeforeTheCall() throws {
        let h = try PipelineHarness([completion()])
        // The worst case (its input plus a completion cap of 100) is over the 50 tokens of the budget.
        let refused = h.chat("frugal", "hi", extra: #", "max_tokens": 100"#)
        #expect(refused.status == 429)
        #expect(refused.json?["error"]?["code"]?.stringValue == "budget_exceeded")
        #expect(h.transport.sent.isEmpty)
        #expect(h.store.charged["frugal"] == nil && h.store.held("frugal") == (0, 0))
        // One that fits is served and charged.
        #expect(h.chat("frugal", "hi", extra: #", "max_tokens": 10"#).status == 200)
        #expect(h.store.charged["frugal"]?.tokens == 8)
    }

    @Test func aSecondIdenticalCallIsACacheHitThatCostsNothing() throws {
        let h = try PipelineHarness([completion("cached answer")])
        let first = h.chat("cached", "same question")
        #expect(first.status == 200 && first.header("x-tenantgate-cache") == "miss")
        #expect(h.store.cachedAnswers == 1)
        let second = h.chat("cached", "same question")
        #expect(second.status == 200 && second.header("x-tenantgate-cache") == "hit")
        #expect(second.json?["choices"]?[0]?["message"]?["content"]?.stringValue == "cached answer")
        #expect(h.transport.sent.count == 1)
        let hit = try #require(h.store.records.last)
        #expect(hit.cache == "hit" && hit.costNano == 0 && hit.savedNano == 11_000)
        #expect(h.store.records.count == 2 && h.store.charged["cached"]?.nano == 11_000)
    }

    @Test func anIngressBlockStopsTheCallAndIsRecorded() throws {
        let h = try PipelineHarness([completion()])
        let sink = h.chat("guarded", "say forbidden-word please")
        #expect(sink.status == 403)
        #expect(sink.json?["error"]?["code"]?.stringValue == "policy_blocked")
        #expect(h.transport.sent.isEmpty)
        let record = try #require(h.store.records.first)
        #expect(record.policyTriggers.map(\.policy) == ["no-word"])
        // Inspection is charged as one request of the window.
        #expect(record.chargesRequest)
        #expect(h.store.requestsInWindow("guarded") == 1)
    }

    @Test func redactionRewritesWhatGoesUpstreamAndWhatComesBack() throws {
        let h = try PipelineHarness([completion("your code is ZX-1234")])
        let sink = h.chat("guarded", "mail me at jane.doe@example.com")
        #expect(sink.status == 200)
        let sent = try #require(h.transport.sent.first)
        let upstream = String(decoding: sent.body, as: UTF8.self)
        #expect(!upstream.contains("jane.doe@example.com"))
        #expect(sink.json?["choices"]?[0]?["message"]?["content"]?.stringValue == "your code is [code]")
        #expect(Set(h.store.records.first?.policyTriggers.map(\.policy) ?? []) == ["mails", "codes"])
    }

    @Test func theMessagesAPIIsTranslatedBothWays() throws {
        let h = try PipelineHarness([completion("bonjour")])
        let sink = h.send(
            "POST", "/v1/messages", tenant: "acme",
            body: #"{"model": "a", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}"#,
            headers: ["anthropic-version": "2023-06-01"])
        #expect(sink.status == 200)
        #expect(sink.json?["type"]?.stringValue == "message")
        #expect(sink.json?["content"]?[0]?["text"]?.stringValue == "bonjour")
        #expect(sink.json?["usage"]?["input_tokens"]?.intValue == 5)
        #expect(h.sentBodies.first?["messages"]?[0]?["content"]?.stringValue == "hi")
        #expect(h.store.records.first?.endpoint == "messages")
    }

    @Test func aStoredResponseIsKeptForItsTenantOnly() throws {
        let h = try PipelineHarness([completion("kept")])
        let sink = h.send(
            "POST", "/v1/responses", tenant: "acme", body: #"{"model": "a", "input": "hi", "store": true}"#)
        #expect(sink.status == 200)
        let id = try #require(sink.json?["id"]?.stringValue)
        #expect(StoredResponse.isID(id))
        #expect(sink.json?["output"]?[0]?["content"]?[0]?["text"]?.stringValue == "kept")
        let again = h.send("GET", "/v1/responses/\(id)", tenant: "acme")
        #expect(again.status == 200 && again.json?["id"]?.stringValue == id)
        #expect(h.send("GET", "/v1/responses/\(id)", tenant: "globex").status == 404)
        #expect(h.store.records.first?.endpoint == "responses")
    }

    @Test func embeddingsAreRelayedAndCharged() throws {
        let answer = #"""
            {"object": "list", "model": "up", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
             "usage": {"prompt_tokens": 4, "total_tokens": 4}}
            """#
        let h = try PipelineHarness([
            .answer(status: 200, headers: ["content-type": "application/json"], body: Array(answer.utf8))
        ])
        let sink = h.send("POST", "/v1/embeddings", tenant: "acme", body: #"{"model": "a", "input": "embed me"}"#)
        #expect(sink.status == 200)
        #expect(sink.json?["data"]?[0]?["embedding"]?[1]?.doubleValue == 0.25)
        let record = try #require(h.store.records.first)
        #expect(record.endpoint == "embeddings" && record.usage.promptTokens == 4 && record.costNano == 4_000)
    }

    @Test func anotherTenantsKeyIsRefusedAndNothingIsRecorded() throws {
        let h = try PipelineHarness([completion()])
        let sink = h.chat("acme", "hi", model: "a")
        #expect(sink.status == 200)
        let forged = h.send(
            "POST", "/v1/chat/completions", tenant: "acme",
            body: #"{"model": "a", "messages": [{"role": "user", "content": "hi"}]}"#,
            key: PipelineHarness.key("globex"))
        #expect(forged.status == 403 && forged.json?["error"]?["code"]?.stringValue == "tenant_mismatch")
        #expect(h.transport.sent.count == 1 && h.store.records.count == 1)
    }

    @Test func anAnswerWhoseSettlementCannotBeWrittenIsNotServed() throws {
        let h = try PipelineHarness([completion("unrecorded"), completion("recorded")])
        h.store.failWrites(true)
        let sink = h.chat("acme", "hi")
        // The answer was held back, then replaced: the client is told it was not served.
        let replaced = try #require(sink.replaced)
        #expect(replaced.status == 503)
        #expect(String(decoding: replaced.body, as: UTF8.self).contains("could not be recorded"))
        #expect(!sink.text.contains("unrecorded"))
        // Its row was still handed over, and the next call, once the store takes writes, is served.
        #expect(h.store.records.count == 1)
        h.store.failWrites(false)
        let next = h.chat("acme", "hi")
        #expect(next.replaced == nil && next.text.contains("recorded"))
    }
}
