import Testing

@testable import TenantGateCore

@Suite struct ResponseCacheTests {
    func chat(_ json: String) throws -> ChatRequest { try ChatRequest.parse(Array(json.utf8)) }

    func material(
        _ tenant: String, _ json: String, model: String = "m", partition: String = "key:k1", upstream: String = "u",
        cap: Int = 4096, headers: [String] = []
    ) throws -> [UInt8] {
        ResponseCache.keyMaterial(
            ResponseCache.KeyInput(
                tenant: tenant, partition: partition, api: "openai", model: model, backend: "b",
                upstreamModel: upstream,
                completionCap: cap, headers: headers, nativeSystem: nil), chat: try chat(json), messages: nil)
    }

    @Test func theTenantAndEveryAnswerShapingFieldAreInTheKey() throws {
        let base = #"{"temperature":0,"messages":[{"role":"user","content":"hi"}]}"#
        let a = try material("a", base)
        #expect(a == (try material("a", base)))
        #expect(a != (try material("b", base)))
        #expect(a != (try material("a", base, model: "other")))
        for changed in [
            #"{"temperature":0,"messages":[{"role":"user","content":"hi!"}]}"#,
            #"{"temperature":0,"seed":1,"messages":[{"role":"user","content":"hi"}]}"#,
            #"{"temperature":0,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
            #"{"temperature":0,"stop":["x"],"messages":[{"role":"user","content":"hi"}]}"#,
            #"{"temperature":0,"response_format":{"type":"json_object"},"messages":[{"role":"user","content":"hi"}]}"#,
            #"{"temperature":0,"tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"hi"}]}"#,
            #"{"temperature":0,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}"#,
            // Whatever else goes upstream counts too: vLLM's and OpenAI's newer fields among them.
            #"{"temperature":0,"top_k":5,"messages":[{"role":"user","content":"hi"}]}"#,
            #"{"temperature":0,"min_p":0.1,"messages":[{"role":"user","content":"hi"}]}"#,
            #"{"temperature":0,"guided_json":{"type":"object"},"messages":[{"role":"user","content":"hi"}]}"#,
            #"{"temperature":0,"chat_template_kwargs":{"x":1},"messages":[{"role":"user","content":"hi"}]}"#,
            #"{"temperature":0,"verbosity":"low","messages":[{"role":"user","content":"hi"}]}"#,
            #"{"temperature":0,"prediction":{"type":"content","content":"x"},"messages":[{"role":"user","content":"hi"}]}"#,
            #"{"temperature":0,"web_search_options":{},"messages":[{"role":"user","content":"hi"}]}"#,
        ] {
            #expect(a != (try material("a", changed)), "\(changed)")
        }
        // Key order and streaming do not matter: a stream and a whole answer share the entry.
        #expect(a == (try material("a", #"{"messages":[{"content":"hi","role":"user"}],"temperature":0}"#)))
        #expect(
            a == (try material("a", #"{"stream":true,"temperature":0,"messages":[{"role":"user","content":"hi"}]}"#)))
        // Delivery and labels do not matter; who shares, what the upstream is asked and its headers do.
        #expect(
            a
                == (try material(
                    "a",
                    #"{"user":"u1","metadata":{"k":"v"},"temperature":0,"messages":[{"role":"user","content":"hi"}]}"#))
        )
        #expect(a != (try material("a", base, partition: "key:k2")))
        #expect(a != (try material("a", base, partition: "key:k1|byok:ab")))
        #expect(a != (try material("a", base, upstream: "u2")))
        #expect(a != (try material("a", base, cap: 50)))
        #expect(a != (try material("a", base, headers: ["anthropic-beta:x"])))
        // Length prefixes: moving bytes between fields changes the key.
        #expect((try material("ab", base)) != (try material("a", base, model: "bm")))
    }

    @Test func eligibility() throws {
        let tenant = try #require(
            try GatewayConfig(
                state: ConfigState().merging(
                    try ConfigState.validateFile(
                        ConfigNode(
                            json: try JSONParser.parse(
                                #"{"backends":{"d":{"provider":"mock"}},"models":{"m":{"backend":"d"}},"tenants":{"t":{"models":["m"],"cache":{"ttl_s":60}}}}"#
                            ))), prune: false), keys: [], version: 1
            ).tenants["t"])
        let settings = try #require(CacheSettings(tenant))
        func why(_ json: String, control: String? = nil) throws -> String? {
            ResponseCache.ineligibility(try chat(json), messages: nil, settings: settings, cacheControl: control)
        }
        #expect(try why(#"{"temperature":0,"messages":[{"role":"user","content":"hi"}]}"#) == nil)
        #expect(try why(#"{"messages":[{"role":"user","content":"hi"}]}"#) == "temperature")
        #expect(try why(#"{"temperature":0.2,"messages":[{"role":"user","content":"hi"}]}"#) == "temperature")
        #expect(try why(#"{"temperature":0,"n":2,"messages":[{"role":"user","content":"hi"}]}"#) == "n")
        #expect(
            try why(
                #"{"temperature":0,"messages":[{"role":"user","content":"hi"},{"role":"tool","content":"42","tool_call_id":"c"}]}"#
            )
                == "tool-results")
        #expect(
            try why(#"{"temperature":0,"messages":[{"role":"user","content":"hi"}]}"#, control: "No-Cache")
                == "no-store")
    }

    @Test func aStreamRecordedIsTheAnswerReplayed() throws {
        let chunks = ChunkFactory(id: "c", model: "m", created: 1)
        let answer = JSONValue.object([
            (
                "choices",
                .array([
                    .object([
                        ("index", .int(0)),
                        (
                            "message",
                            .object([
                                ("role", .string("assistant")), ("content", .string("Hello there")),
                                (
                                    "tool_calls",
                                    .array([
                                        .object([
                                            ("id", .string("call_1")), ("type", .string("function")),
                                            (
                                                "function",
                                                .object([("name", .string("f")), ("arguments", .string("{\"a\":1}"))])
                                            ),
                                        ])
                                    ])
                                ),
                            ])
                        ), ("finish_reason", .string("tool_calls")),
                    ])
                ])
            )
        ])
        #expect(ResponseCache.storable(answer))
        var recorder = StreamRecorder()
        for piece in ResponseCache.replay(answer, chunks: chunks) {
            if case .chunk(let json, _) = piece { recorder.record(json) }
        }
        let again = try #require(recorder.completion(model: "m"))
        #expect(again["choices"]?.arrayValue?.first?["message"] == answer["choices"]?.arrayValue?.first?["message"])
        #expect(again["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue == "tool_calls")
        // An unfinished stream is not an answer.
        var cut = StreamRecorder()
        cut.record(chunks.delta(.object([("content", .string("Hel"))])))
        #expect(cut.completion(model: "m") == nil)
    }

    func cosine(_ a: String, _ b: String) -> Double {
        let (x, y) = (MockProvider.embedding(a), MockProvider.embedding(b))
        return zip(x, y).reduce(0) { $0 + $1.0 * $1.1 }
    }

    @Test(
        arguments: [
            ("0.5", 0.95), ("0.99", 0.99), ("1", 1.0), ("1.5", 0.95), ("nan", 0.95), ("-inf", 0.95), ("x", 0.95),
        ] as [(String, Double)])
    func aRequestMayRaiseTheThresholdNeverLowerIt(_ header: String, _ expected: Double) {
        #expect(SemanticCache.threshold(tenant: 0.95, requested: header) == expected)
        #expect(SemanticCache.threshold(tenant: 0.95, requested: nil) == 0.95)
    }

    @Test func aRecordedStreamTooLargeToKeepIsNotKept() {
        var recorder = StreamRecorder()
        let chunks = ChunkFactory(id: "c", model: "m", created: 1)
        let piece = String(repeating: "x", count: 64 << 10)
        for _ in 0..<20 { recorder.record(chunks.delta(.object([("content", .string(piece))]))) }
        recorder.record(chunks.delta(.object([]), finish: "stop"))
        #expect(recorder.overflowed)
        #expect(recorder.completion(model: "m") == nil)
    }

    @Test func semanticSignaturesCatchWhatTheVectorsMiss() {
        let same = ("What is the capital of France?", "Capital of France, please?")
        #expect(SemanticCache.signature(same.0) == SemanticCache.signature(same.1))
        #expect(cosine(same.0, same.1) > 0.999)
        let pairs = [
            (
                "Is Paris safe for tourists at night in the summer months",
                "Is Paris not safe for tourists at night in the summer months"
            ),
            ("Flights from Paris to Rome in May", "Flights from Rome to Paris in May"),
            (
                "List 5 museums in Paris open late on Fridays for students with cards",
                "List 6 museums in Paris open late on Fridays for students with cards"
            ),
        ]
        for (a, b) in pairs {
            // Close enough in the mock embedding space to pass a 0.9 threshold…
            #expect(cosine(a, b) >= 0.85, "\(a)")
            // …and refused by the signature.
            #expect(SemanticCache.signature(a) != SemanticCache.signature(b), "\(a)")
        }
        #expect(SemanticCache.signature("I don't like it") == SemanticCache.signature("I do not like it"))
        #expect(
            SemanticCache.question(
                try! ChatRequest.parse(
                    Array(#"{"messages":[{"role":"system","content":"s"},{"role":"user","content":"q"}]}"#.utf8)))
                == "q")
        #expect(
            SemanticCache.question(
                try! ChatRequest.parse(
                    Array(
                        #"{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]}"#
                            .utf8))) == nil)
    }
}
