import Testing

@testable import TenantGateCore
@testable import TenantGateHTTP
import TenantGateServing

/// Holds every chunk back until the end, then releases them upper-cased (what a redacting guardrail does).
struct HoldAndShout: StreamFilter {
    var held: [StreamPiece] = []

    mutating func filter(_ piece: StreamPiece) -> [StreamPiece] {
        guard case .end = piece else {
            if case .chunk(let json, _) = piece,
                let text = json["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue
            {
                let loud = JSONValue.object([("content", .string(text.uppercased()))])
                held.append(.chunk(ChunkFactory(id: "c", model: "m", created: 1).delta(loud), raw: nil))
            }
            return []
        }
        defer { held = [] }
        return held + [.end]
    }
}

@Suite struct StreamRelayTests {
    let chunks = ChunkFactory(id: "chatcmpl-1", model: "m", created: 1)
    let usage = Usage(promptTokens: 3, completionTokens: 2)

    func writer(_ api: ClientAPI) -> ReplyWriter {
        ReplyWriter(api: api, includeUsage: false, completionID: "chatcmpl-1", model: "m", inputEstimate: 0)
    }

    func text(_ piece: String) -> StreamPiece {
        .chunk(chunks.delta(.object([("content", .string(piece))])), raw: nil)
    }

    @Test func piecesPassTheFiltersInOrderBeforeTheWriter() {
        let sink = RecordingSink()
        var relay = StreamRelay(writer: writer(.openAI), filters: [HoldAndShout()], sink: sink, headers: [("X-A", "1")])
        relay.open()
        let wrote1 = relay.write([text("hello "), text("world")], usage: usage, usageChunk: chunks.usage)
        #expect(wrote1)
        // Held back: nothing but the head went out.
        #expect(sink.written.isEmpty)
        let wrote2 = relay.write([.end], usage: usage, usageChunk: chunks.usage)
        #expect(wrote2)
        #expect(sink.text.contains("HELLO "))
        #expect(sink.text.contains("WORLD"))
        #expect(!sink.text.contains("hello"))
        #expect(sink.text.hasSuffix("data: [DONE]\n\n"))
        #expect(sink.status == 200)
        #expect(sink.headers.contains { $0 == ("Content-Type", "text/event-stream") })
        #expect(sink.headers.contains { $0 == ("X-A", "1") })
    }

    @Test func anAnthropicClientGetsMessagesEventsAndNativeFramesPassUntouched() {
        let sink = RecordingSink()
        var relay = StreamRelay(writer: writer(.anthropic), filters: [], sink: sink, headers: [])
        relay.open()
        _ = relay.write([text("hi"), .end], usage: usage, usageChunk: chunks.usage)
        #expect(sink.text.contains("event: content_block_delta"))
        #expect(sink.text.contains("event: message_stop"))
        let native = RecordingSink()
        var passthrough = StreamRelay(writer: writer(.anthropic), filters: [], sink: native, headers: [])
        let frame = SSEParser.frame(data: #"{"type":"ping"}"#, event: "ping")
        _ = passthrough.write([.frame(frame)], usage: nil, usageChunk: chunks.usage)
        #expect(native.written == frame)
    }

    @Test func aClientThatLeftStopsTheRelay() {
        let sink = RecordingSink()
        sink.goneAfterFlushes = 1
        var relay = StreamRelay(writer: writer(.openAI), filters: [], sink: sink, headers: [])
        relay.open()
        let wrote3 = relay.write([text("a")], usage: nil, usageChunk: chunks.usage)
        #expect(wrote3)
        let wrote4 = relay.write([text("b")], usage: nil, usageChunk: chunks.usage)
        #expect(!wrote4)
        #expect(relay.clientGone)
    }

    @Test func decodersTurnEachProvidersEventsIntoPieces() throws {
        let config = try gatewayConfig(routedConfig)
        let model = try #require(config.models["a"])
        let backend = try #require(config.backends["one"])
        let chat = try ChatRequest.parse(Array(#"{"messages":[{"role":"user","content":"x"}]}"#.utf8))
        var openAI = OpenAICompatibleProvider().streamDecoder(
            ProviderCall(chat: chat, model: model, backend: backend, completionID: "c", created: 1))
        let chunk =
            #"{"choices":[{"index":0,"delta":{"content":"abc"}}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#
        #expect(openAI.decode(SSEEvent(event: nil, data: chunk)).count == 1)
        #expect(openAI.decode(SSEEvent(event: nil, data: "not json")).isEmpty)
        #expect(openAI.decode(SSEEvent(event: nil, data: "[DONE]")) == [.end])
        #expect(openAI.ended && openAI.streamedTextBytes == 3 && openAI.usage?.completionTokens == 2)
        #expect(openAI.decode(SSEEvent(event: nil, data: chunk)).isEmpty)
        // An upstream's error event ends the stream as a failure (the gateway writes its own error event).
        var failing = OpenAICompatibleProvider().streamDecoder(
            ProviderCall(chat: chat, model: model, backend: backend, completionID: "c", created: 1))
        #expect(failing.decode(SSEEvent(event: nil, data: #"{"error":{"message":"model fell over"}}"#)).isEmpty)
        #expect(failing.failure == "model fell over")
    }
}
