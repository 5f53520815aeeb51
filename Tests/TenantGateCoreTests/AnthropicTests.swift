import Testing

@testable import TenantGateCore

private func json(_ text: String) throws -> JSONValue { try JSONParser.parse(text) }
private func chatRequest(_ text: String) throws -> ChatRequest { try ChatRequest.parse(Array(text.utf8)) }

/// The SSE data of a recorded Anthropic stream (shape as documented for the Messages API), with a tool call.
private let recordedStream = [
    #"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":0,"cache_read_input_tokens":100,"output_tokens":2}}}"#,
    #"{"type":"ping"}"#,
    #"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    #"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay, let me check"}}"#,
    #"{"type":"content_block_stop","index":0}"#,
    #"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1","name":"get_weather","input":{}}}"#,
    #"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
    #"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}"#,
    #"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"San Francisco, CA\"}"}}"#,
    #"{"type":"content_block_stop","index":1}"#,
    #"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
    #"{"type":"message_stop"}"#,
]

@Suite struct AnthropicRequestTests {
    @Test func translatesSystemToolsAndTurns() throws {
        let request = try chatRequest(
            #"""
            {"model":"c","temperature":1.5,"top_p":0.9,"stop":"END","user":"u-1","parallel_tool_calls":false,
             "tools":[{"type":"function","function":{"name":"get_weather","description":"d","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],
             "tool_choice":{"type":"function","function":{"name":"get_weather"}},
             "messages":[
              {"role":"system","content":"Be brief."},
              {"role":"developer","content":[{"type":"text","text":"Use metric."}]},
              {"role":"user","content":[{"type":"text","text":"Weather?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBOR"}}]},
              {"role":"assistant","content":"","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},{"id":"call_2","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},
              {"role":"tool","tool_call_id":"call_1","content":"21C"},
              {"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"3C"}]},
              {"role":"user","content":"Thanks"}]}
            """#)
        let body = try AnthropicRequest.body(request, upstreamModel: "claude-x", maxTokens: 321)
        #expect(body["model"]?.stringValue == "claude-x")
        #expect(body["max_tokens"]?.intValue == 321)
        #expect(body["system"]?.stringValue == "Be brief.\n\nUse metric.")
        #expect(body["temperature"]?.doubleValue == 1)
        #expect(body["top_p"]?.doubleValue == 0.9)
        #expect(body["stop_sequences"] == .array([.string("END")]))
        #expect(body["metadata"]?["user_id"]?.stringValue == "u-1")
        #expect(body["stream"] == nil)
        #expect(
            body["tools"]
                == (try json(
                    #"[{"name":"get_weather","description":"d","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}]"#
                )))
        #expect(
            body["tool_choice"] == (try json(#"{"type":"tool","name":"get_weather","disable_parallel_tool_use":true}"#))
        )
        let messages = try #require(body["messages"]?.arrayValue)
        #expect(messages.map { $0["role"]?.stringValue } == ["user", "assistant", "user"])
        #expect(
            messages[0]["content"]
                == (try json(
                    #"[{"type":"text","text":"Weather?"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBOR"}}]"#
                )))
        #expect(
            messages[1]["content"]
                == (try json(
                    #"[{"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}},{"type":"tool_use","id":"call_2","name":"get_weather","input":{"city":"Oslo"}}]"#
                )))
        // Both tool results and the next user text share one user turn.
        #expect(
            messages[2]["content"]
                == (try json(
                    #"[{"type":"tool_result","tool_use_id":"call_1","content":"21C"},{"type":"tool_result","tool_use_id":"call_2","content":"3C"},{"type":"text","text":"Thanks"}]"#
                )))
    }

    @Test func maxTokensComesFromTheRequestThenTheCatalogThenTheDefault() throws {
        func model(_ cap: Int?) -> ModelConfig {
            ModelConfig(
                name: "m", backend: "b", upstreamModel: "m", inputPerMTok: 1, outputPerMTok: 1, cachedInputPerMTok: 1,
                cacheWritePerMTok: 1, maxTokens: cap)
        }
        let asked = try chatRequest(
            #"{"max_completion_tokens":7,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#)
        let body = try AnthropicRequest.body(asked, upstreamModel: "m", maxTokens: asked.completionCap(for: model(99)))
        #expect(body["max_tokens"]?.intValue == 7)
        #expect(body["stream"] == .bool(true))
        let plain = try chatRequest(#"{"messages":[{"role":"user","content":"hi"}]}"#)
        #expect(plain.completionCap(for: model(99)) == 99)
        #expect(plain.completionCap(for: model(nil)) == 4096)
        // A fallback with a lower cap is sent its own cap, never more.
        #expect(asked.completionCap(for: model(5)) == 5)
    }

    @Test func refusesWhatAnthropicCannotDo() throws {
        let many = try chatRequest(#"{"n":2,"messages":[{"role":"user","content":"hi"}]}"#)
        #expect(throws: GatewayError.self) {
            try AnthropicRequest.body(many, upstreamModel: "m", maxTokens: 10)
        }
        let audio = try chatRequest(
            #"{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#)
        #expect(throws: GatewayError.self) {
            try AnthropicRequest.body(audio, upstreamModel: "m", maxTokens: 10)
        }
    }

    @Test func urlAcceptsBaseWithOrWithoutVersion() {
        #expect(AnthropicRequest.url(baseURL: "https://api.anthropic.com") == "https://api.anthropic.com/v1/messages")
        #expect(AnthropicRequest.url(baseURL: "http://h/v1") == "http://h/v1/messages")
    }
}

@Suite struct AnthropicResponseTests {
    @Test func messageBecomesACompletion() throws {
        let message = try json(
            #"""
            {"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5",
             "content":[{"type":"thinking","thinking":"hmm","signature":"x"},{"type":"text","text":"Let me check."},
                        {"type":"tool_use","id":"toolu_01","name":"get_weather","input":{"location":"SF"}}],
             "stop_reason":"tool_use","stop_sequence":null,
             "usage":{"input_tokens":100,"cache_creation_input_tokens":20,"cache_read_input_tokens":30,"output_tokens":40}}
            """#)
        let (completion, usage) = AnthropicResponse.completion(message, id: "chatcmpl-1", model: "sonnet", created: 5)
        #expect(usage == Usage(promptTokens: 150, completionTokens: 40, cachedTokens: 30, cacheWriteTokens: 20))
        let choice = try #require(completion["choices"]?.arrayValue?.first)
        #expect(choice["finish_reason"]?.stringValue == "tool_calls")
        #expect(choice["message"]?["content"]?.stringValue == "Let me check.")
        let call = try #require(choice["message"]?["tool_calls"]?.arrayValue?.first)
        #expect(call["id"]?.stringValue == "toolu_01")
        #expect(call["function"]?["arguments"]?.stringValue == #"{"location":"SF"}"#)
        #expect(completion["usage"]?["prompt_tokens"]?.intValue == 150)
        #expect(completion["usage"]?["prompt_tokens_details"]?["cached_tokens"]?.intValue == 30)
        #expect(completion["model"]?.stringValue == "sonnet")
    }

    @Test(arguments: [
        ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
        ("refusal", "content_filter"), ("pause_turn", "stop"),
    ])
    func stopReasonsMap(_ anthropic: String, _ openAI: String) {
        #expect(AnthropicResponse.finishReason(anthropic) == openAI)
    }

    @Test func recordedStreamBecomesChunks() throws {
        var translator = AnthropicStreamTranslator(id: "chatcmpl-1", model: "sonnet", created: 5)
        var chunks: [JSONValue] = []
        for data in recordedStream { chunks += translator.feed(try json(data)) }
        #expect(translator.finished)
        #expect(translator.usage == Usage(promptTokens: 572, completionTokens: 89, cachedTokens: 100))
        #expect(chunks.first?["choices"]?.arrayValue?.first?["delta"]?["role"]?.stringValue == "assistant")
        let deltas = chunks.compactMap { $0["choices"]?.arrayValue?.first?["delta"] }
        #expect(deltas.compactMap { $0["content"]?.stringValue }.joined() == "Okay, let me check")
        let calls = deltas.flatMap { $0["tool_calls"]?.arrayValue ?? [] }
        #expect(calls.first?["id"]?.stringValue == "toolu_01T1")
        #expect(calls.first?["function"]?["name"]?.stringValue == "get_weather")
        #expect(calls.allSatisfy { $0["index"]?.intValue == 0 })
        let arguments = calls.compactMap { $0["function"]?["arguments"]?.stringValue }.joined()
        #expect(try json(arguments) == json(#"{"location": "San Francisco, CA"}"#))
        #expect(chunks.last?["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue == "tool_calls")
        #expect(chunks.allSatisfy { $0["id"]?.stringValue == "chatcmpl-1" && $0["model"]?.stringValue == "sonnet" })
    }

    @Test func streamErrorEventIsReported() throws {
        var translator = AnthropicStreamTranslator(id: "c", model: "m", created: 0)
        _ = translator.feed(try json(#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#))
        #expect(translator.errorMessage == "Overloaded")
        #expect(!translator.finished)
    }
}

@Suite struct MessagesAPITests {
    @Test func requestBecomesAChatRequest() throws {
        let parsed = try MessagesAPI.parse(
            Array(
                #"""
                {"model":"sonnet","max_tokens":100,"stream":true,"temperature":0.5,"top_k":5,"stop_sequences":["X"],
                 "system":[{"type":"text","text":"Sys one."},{"type":"text","text":"Sys two."}],
                 "metadata":{"user_id":"end-7"},
                 "tools":[{"name":"calc","description":"adds","input_schema":{"type":"object"}}],
                 "tool_choice":{"type":"any","disable_parallel_tool_use":true},
                 "messages":[
                  {"role":"user","content":"What is 2+2?"},
                  {"role":"assistant","content":[{"type":"thinking","thinking":"..."},{"type":"text","text":"Calling."},{"type":"tool_use","id":"tu_1","name":"calc","input":{"a":2,"b":2}}]},
                  {"role":"user","content":[{"type":"tool_result","tool_use_id":"tu_1","content":[{"type":"text","text":"4"}]},{"type":"text","text":"And 3+3?"},{"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"/9j"}}]}]}
                """#.utf8))
        #expect(parsed.nativeOnly.isEmpty)
        let request = parsed.chat
        #expect(request.model == "sonnet")
        #expect(request.maxTokens == 100)
        #expect(request.stream && request.includeUsage)
        #expect(request.user == "end-7")
        #expect(request.usesTools)
        let body = request.body
        #expect(body["tool_choice"]?.stringValue == "required")
        #expect(body["parallel_tool_calls"] == .bool(false))
        #expect(body["stop"] == .array([.string("X")]))
        #expect(body["top_k"] == nil)
        let roles = request.messages.map { $0["role"]?.stringValue ?? "" }
        #expect(roles == ["system", "user", "assistant", "tool", "user"])
        #expect(request.messages[0]["content"]?.stringValue == "Sys one.\n\nSys two.")
        #expect(request.messages[2]["content"]?.stringValue == "Calling.")
        #expect(
            request.messages[2]["tool_calls"]?.arrayValue?.first?["function"]?["arguments"]?.stringValue
                == #"{"a":2,"b":2}"#)
        #expect(request.messages[3]["tool_call_id"]?.stringValue == "tu_1")
        #expect(request.messages[3]["content"]?.stringValue == "4")
        #expect(
            request.messages[4]["content"]?.arrayValue?.last?["image_url"]?["url"]?.stringValue
                == "data:image/jpeg;base64,/9j")
    }

    @Test(arguments: [
        #"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        #"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#,
        #"{"model":"m","max_tokens":"5","messages":[{"role":"user","content":"x"}]}"#,
        #"{"model":"m","max_tokens":5}"#,
        #"{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"x"}]}"#,
        #"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":42}]}"#,
        #"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text"}]}]}"#,
        #"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_use","id":"a","name":"b"}]}]}"#,
        #"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file"}}]}]}"#,
        #"{"model":"m","max_tokens":5,"system":42,"messages":[{"role":"user","content":"x"}]}"#,
        #"{"model":"m","max_tokens":5,"stream":"yes","messages":[{"role":"user","content":"x"}]}"#,
        #"{"model":"m","max_tokens":5,"tool_choice":{"type":"maybe"},"messages":[{"role":"user","content":"x"}]}"#,
        #"{"model":7,"max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#,
        #"[1]"#,
    ])
    func malformedRequestsAreRefused(_ text: String) {
        #expect(throws: GatewayError.self) { try MessagesAPI.parse(Array(text.utf8)) }
    }

    @Test func nativeOnlyBlocksAreKeptForAnthropicBackends() throws {
        let parsed = try MessagesAPI.parse(
            Array(
                #"{"model":"m","max_tokens":5,"system":"Mine.","metadata":{"prompt":"sales","user_id":"u"},"messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","data":"x","media_type":"text/plain"}},{"type":"text","text":"sum"}]}]}"#
                    .utf8))
        #expect(parsed.nativeOnly == ["document"])
        let native = MessagesAPI.nativeBody(parsed.original, upstreamModel: "claude-x", system: nil)
        #expect(native["model"]?.stringValue == "claude-x")
        #expect(native["system"]?.stringValue == "Mine.")
        #expect(native["metadata"] == .object([("user_id", .string("u"))]))
        #expect(native["messages"] == parsed.original["messages"])
        let prompted = MessagesAPI.nativeBody(parsed.original, upstreamModel: "c", system: "Tenant.\n\nMine.")
        #expect(prompted["system"]?.stringValue == "Tenant.\n\nMine.")
    }

    @Test func completionBecomesAMessage() throws {
        let completion = try json(
            #"""
            {"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"finish_reason":"length",
             "message":{"role":"assistant","content":"Hi","tool_calls":[{"id":"call_9","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]}}],
             "usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":2}}}
            """#)
        let message = MessagesAPI.message(fromCompletion: completion, id: "msg_1", model: "fast", usage: nil)
        #expect(
            message
                == (try json(
                    #"""
                    {"id":"msg_1","type":"message","role":"assistant","model":"fast",
                     "content":[{"type":"text","text":"Hi"},{"type":"tool_use","id":"call_9","name":"f","input":{"x":1}}],
                     "stop_reason":"max_tokens","stop_sequence":null,
                     "usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":2,"output_tokens":3}}
                    """#)))
    }

    @Test func errorsUseAnthropicShape() {
        let body = MessagesAPI.errorBody(.missingAPIKey)
        #expect(body["type"]?.stringValue == "error")
        #expect(body["error"]?["type"]?.stringValue == "authentication_error")
        #expect(MessagesAPI.errorType(.rateLimited(limit: "requests", retryAfter: 1)) == "rate_limit_error")
        #expect(MessagesAPI.errorType(.circuitOpen(retryAfter: 1)) == "overloaded_error")
        #expect(MessagesAPI.errorType(.invalidJSON("x")) == "invalid_request_error")
        #expect(MessagesAPI.errorType(.modelNotAllowed("m")) == "permission_error")
    }

    @Test func chunksBecomeAnthropicEvents() throws {
        var stream = MessagesStream(id: "msg_1", model: "fast", inputEstimate: 9)
        var bytes: [UInt8] = []
        let chunks = [
            #"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            #"{"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#,
            #"{"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}"#,
            #"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":null}]}"#,
            #"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"x\":"}}]},"finish_reason":null}]}"#,
            #"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]},"finish_reason":null}]}"#,
            #"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            #"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#,
        ]
        for chunk in chunks { bytes += stream.feed(try json(chunk)) }
        bytes += stream.finish(usage: Usage(promptTokens: 12, completionTokens: 7))
        var parser = SSEParser()
        let parsed = parser.feed(bytes)
        let events = try #require(parsed)
        #expect(
            events.map { $0.event ?? "" } == [
                "message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta",
                "content_block_stop", "content_block_start", "content_block_delta", "content_block_delta",
                "content_block_stop", "message_delta", "message_stop",
            ])
        let data = try events.map { try json($0.data) }
        #expect(data[0]["message"]?["usage"]?["input_tokens"]?.intValue == 9)
        #expect(data[6]["content_block"]?["type"]?.stringValue == "tool_use")
        #expect(data[6]["index"]?.intValue == 1)
        #expect(data[8]["delta"]?["partial_json"]?.stringValue == "1}")
        #expect(data[10]["delta"]?["stop_reason"]?.stringValue == "tool_use")
        #expect(data[10]["usage"]?["output_tokens"]?.intValue == 7)
        #expect(data[10]["usage"]?["input_tokens"]?.intValue == 12)
    }
}
