import Testing

@testable import TenantGateCore

@Suite struct ResponsesAPITests {
    func parse(_ json: String) throws -> ResponsesRequest { try ResponsesAPI.parse(Array(json.utf8)) }

    @Test func inputItemsBecomeChatMessages() throws {
        let request = try parse(
            #"""
            {"model":"m","instructions":"Be brief.","max_output_tokens":5,"input":[
              {"role":"user","content":[{"type":"input_text","text":"hi"},{"type":"input_image","image_url":"data:image/png;base64,AA"}]},
              {"type":"function_call","call_id":"c1","name":"f","arguments":"{}"},
              {"type":"function_call","call_id":"c2","name":"g","arguments":"{}"},
              {"type":"function_call_output","call_id":"c1","output":"one"},
              {"type":"function_call_output","call_id":"c2","output":[{"type":"input_text","text":"two"}]},
              {"type":"message","role":"assistant","content":[{"type":"output_text","text":"done"}]}
            ],"tools":[{"type":"function","name":"f","parameters":{"type":"object"}}],
            "tool_choice":{"type":"function","name":"f"},"text":{"format":{"type":"json_object"}}}
            """#)
        let chat = try request.chat()
        #expect(chat.maxTokens == 5)
        let roles = chat.messages.map { $0["role"]?.stringValue ?? "" }
        #expect(roles == ["system", "user", "assistant", "tool", "tool", "assistant"])
        #expect(chat.messages[2]["tool_calls"]?.arrayValue?.count == 2)
        #expect(chat.messages[4]["content"]?.stringValue == "two")
        #expect(
            chat.messages[1]["content"]?.arrayValue?[1]["image_url"]?["url"]?.stringValue == "data:image/png;base64,AA")
        #expect(chat.body["tools"]?.arrayValue?[0]["function"]?["name"]?.stringValue == "f")
        #expect(chat.body["tool_choice"]?["function"]?["name"]?.stringValue == "f")
        #expect(chat.body["response_format"]?["type"]?.stringValue == "json_object")
        #expect(request.inputItems.count == 6 && request.inputItems.allSatisfy { $0["id"] != nil && $0["type"] != nil })
        #expect(request.store && !request.stream)
    }

    @Test func previousTurnsComeBetweenInstructionsAndInput() throws {
        let request = try parse(#"{"model":"m","instructions":"I","input":"now","previous_response_id":"resp_x"}"#)
        let earlier: [JSONValue] = [
            .object([("role", .string("user")), ("content", .string("before"))]),
            .object([("role", .string("assistant")), ("content", .string("answer"))]),
        ]
        let chat = try request.chat(previous: earlier)
        #expect(chat.messages.map { $0["content"]?.stringValue ?? "" } == ["I", "before", "answer", "now"])
        #expect(request.previousResponseID == "resp_x")
    }

    @Test func badRequestsAreRefused() {
        for bad in [
            #"{"model":"m"}"#, #"{"model":"m","input":[]}"#, #"{"model":"m","input":[{"type":"x"}]}"#,
            #"{"model":"m","input":"x","tools":[{"type":"file_search"}]}"#, #"{"model":"m","input":"x","zzz":1}"#,
            #"{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]}"#,
            #"{"model":"m","input":"x","stream":"yes"}"#, #"{"model":"m","input":"x","max_output_tokens":0}"#,
            #"{"model":"m","input":"x","background":true}"#, "[1]",
        ] {
            #expect(throws: GatewayError.self, "\(bad)") { try ResponsesAPI.parse(Array(bad.utf8)).chat() }
        }
        // A tool output must answer a call of the conversation.
        #expect(throws: GatewayError.self) {
            try parse(#"{"model":"m","input":[{"type":"function_call_output","call_id":"c9","output":"x"}]}"#).chat()
        }
    }

    @Test func answersBecomeOutputItems() throws {
        let completion = try JSONParser.parse(
            #"{"choices":[{"finish_reason":"length","message":{"role":"assistant","content":"Hi","tool_calls":[{"id":"c1","function":{"name":"f","arguments":"{}"}}]}}]}"#
        )
        let request = try JSONParser.parse(#"{"input":"x","metadata":{"a":"b"}}"#)
        let response = ResponsesAPI.response(
            fromCompletion: completion, id: "resp_" + String(repeating: "a", count: 48), request: request,
            model: "m", createdAt: 5, usage: Usage(promptTokens: 3, completionTokens: 2))
        #expect(response["status"]?.stringValue == "incomplete")
        #expect(response["incomplete_details"]?["reason"]?.stringValue == "max_output_tokens")
        let output = response["output"]?.arrayValue ?? []
        #expect(output.map { $0["type"]?.stringValue ?? "" } == ["message", "function_call"])
        #expect(
            output[0]["content"]?.arrayValue?[0]["text"]?.stringValue == "Hi"
                && output[1]["call_id"]?.stringValue == "c1")
        #expect(response["usage"]?["total_tokens"]?.intValue == 5 && response["metadata"]?["a"]?.stringValue == "b")
        let turn = ResponsesAPI.conversation(
            input: [.object([("role", .string("user")), ("content", .string("x"))])], output: output)
        #expect(
            turn.count == 2 && turn[1]["content"]?.stringValue == "Hi" && turn[1]["tool_calls"]?.arrayValue?.count == 1)
    }

    @Test func streamEventsComeInOrderWithSequenceNumbers() throws {
        var stream = ResponsesStream(
            id: "resp_" + String(repeating: "b", count: 48), request: .object([]), model: "m", createdAt: 1)
        func chunk(_ json: String) throws -> JSONValue { try JSONParser.parse(json) }
        var bytes = stream.feed(try chunk(#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#))
        bytes += stream.feed(try chunk(#"{"choices":[{"delta":{"content":"He"}}]}"#))
        bytes += stream.feed(try chunk(#"{"choices":[{"delta":{"content":"llo"}}]}"#))
        bytes += stream.feed(
            try chunk(
                #"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"f","arguments":"{\"a\""}}]}}]}"#
            ))
        bytes += stream.feed(
            try chunk(
                #"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"finish_reason":"tool_calls"}]}"#
            ))
        var stored: JSONValue?
        bytes += stream.finish(usage: Usage(promptTokens: 1, completionTokens: 2)) { stored = $0 }
        let events = String(decoding: bytes, as: UTF8.self).split(separator: "\n").filter { $0.hasPrefix("data: ") }
            .compactMap { try? JSONParser.parse(String($0.dropFirst(6))) }
        #expect(
            events.map { $0["type"]?.stringValue ?? "" } == [
                "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
                "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
                "response.content_part.done", "response.output_item.done", "response.output_item.added",
                "response.function_call_arguments.delta", "response.function_call_arguments.delta",
                "response.function_call_arguments.done", "response.output_item.done", "response.completed",
            ])
        #expect(events.map { $0["sequence_number"]?.intValue ?? -1 } == Array(0..<events.count))
        #expect(events[12]["arguments"]?.stringValue == #"{"a":1}"#)
        let final = try #require(stored)
        #expect(final["output"]?.arrayValue?.count == 2 && final["usage"]?["output_tokens"]?.intValue == 2)
        #expect(events.last?["response"] == final)
    }
}

@Suite struct ResponsesNativeTests {
    @Test func theBodyIsTheClientsWithTheConversationExpanded() throws {
        let request = try ResponsesAPI.parse(
            Array(
                #"{"model":"m","input":"now","previous_response_id":"resp_x","metadata":{"prompt":"p","k":"v"}}"#.utf8))
        let previous: [JSONValue] = [
            .object([("role", .string("user")), ("content", .string("before"))]),
            try JSONParser.parse(
                #"{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]}"#
            ),
            .object([("role", .string("tool")), ("tool_call_id", .string("c1")), ("content", .string("out"))]),
        ]
        let body = ResponsesNative.body(request, previous: previous, upstreamModel: "up-1")
        #expect(body["model"]?.stringValue == "up-1" && body["store"] == .bool(false))
        #expect(body["previous_response_id"] == nil && body["metadata"] == .object([("k", .string("v"))]))
        let types = (body["input"]?.arrayValue ?? []).map { $0["type"]?.stringValue ?? $0["role"]?.stringValue ?? "" }
        #expect(types == ["message", "function_call", "function_call_output", "user"])
    }

    @Test func streamEventsKeepTheirShapeWithTheGatewaysID() throws {
        let final = Box()
        var decoder = ResponsesNativeDecoder(
            id: "resp_ours", model: "catalog", request: .object([("store", .bool(true))]),
            beforeFinal: { response in final.value = response })
        let delta = decoder.decode(
            SSEEvent(
                event: "response.output_text.delta",
                data: #"{"type":"response.output_text.delta","delta":"hi","sequence_number":3}"#))
        #expect(String(decoding: frameBytes(delta), as: UTF8.self).contains(#""delta":"hi""#))
        _ = decoder.decode(
            SSEEvent(
                event: "response.completed",
                data:
                    #"{"type":"response.completed","sequence_number":4,"response":{"id":"resp_up","model":"up","output":[],"usage":{"input_tokens":5,"output_tokens":2}}}"#
            ))
        #expect(decoder.ended && decoder.usage == Usage(promptTokens: 5, completionTokens: 2))
        #expect(final.value?["id"]?.stringValue == "resp_ours")
        #expect(final.value?["model"]?.stringValue == "catalog")
    }

    func frameBytes(_ pieces: [StreamPiece]) -> [UInt8] {
        pieces.flatMap { piece -> [UInt8] in
            if case .frame(let bytes) = piece { return bytes }
            return []
        }
    }
}

/// What a closure saw (written and read on one thread in these tests).
final class Box: @unchecked Sendable {
    var value: JSONValue?
}
