import Testing

@testable import TenantGateCore
@testable import TenantGateHTTP
import TenantGateServing

@Suite struct ReplyWriterTests {
    let chunks = ChunkFactory(id: "chatcmpl-abc", model: "m", created: 1)
    let usage = Usage(promptTokens: 10, completionTokens: 2)

    private func events(_ bytes: [UInt8]) -> [SSEEvent] {
        var parser = SSEParser()
        return parser.feed(bytes) ?? []
    }

    @Test func openAIClientWithoutUsageOptionNeverSeesTheUsageChunk() {
        var writer = ReplyWriter(
            api: .openAI, includeUsage: false, completionID: "chatcmpl-abc", model: "m", inputEstimate: 0)
        let usageOnly = chunks.usage(usage)
        #expect(writer.chunk(usageOnly, raw: nil).isEmpty)
        let end = events(writer.done(usage: usage, usageChunk: chunks.usage))
        #expect(end.map(\.data) == ["[DONE]"])
    }

    @Test func openAIClientGetsTheUsageChunkOnceWhenAsked() {
        var asked = ReplyWriter(
            api: .openAI, includeUsage: true, completionID: "chatcmpl-abc", model: "m", inputEstimate: 0)
        // Translated streams have no usage chunk of their own: the writer adds it at the end…
        let end = events(asked.done(usage: usage, usageChunk: chunks.usage))
        #expect(end.count == 2 && end[1].data == "[DONE]")
        #expect((try? JSONParser.parse(end[0].data))?["usage"]?["total_tokens"]?.intValue == 12)
        // …but not when the upstream's own usage chunk was already passed through.
        var passed = ReplyWriter(
            api: .openAI, includeUsage: true, completionID: "chatcmpl-abc", model: "m", inputEstimate: 0)
        #expect(!passed.chunk(chunks.usage(usage), raw: nil).isEmpty)
        #expect(events(passed.done(usage: usage, usageChunk: chunks.usage)).map(\.data) == ["[DONE]"])
    }

    @Test func rawUpstreamBytesAreForwardedUnchanged() {
        var writer = ReplyWriter(
            api: .openAI, includeUsage: false, completionID: "chatcmpl-abc", model: "m", inputEstimate: 0)
        let raw = #"{"id":"x",  "choices":[{"index":0,"delta":{"content":"hi"}}]}"#
        let json = (try? JSONParser.parse(raw)) ?? .null
        #expect(events(writer.chunk(json, raw: raw)).first?.data == raw)
        #expect(writer.completion(json, raw: Array(raw.utf8), usage: nil) == Array(raw.utf8))
    }

    @Test func anthropicClientGetsMessagesEventsAndErrors() {
        var writer = ReplyWriter(
            api: .anthropic, includeUsage: false, completionID: "chatcmpl-abc", model: "m", inputEstimate: 3)
        var bytes = writer.chunk(chunks.delta(.object([("content", .string("Hi"))])), raw: nil)
        bytes += writer.done(usage: usage, usageChunk: chunks.usage)
        let names = events(bytes).map { $0.event ?? "" }
        #expect(
            names == [
                "message_start", "ping", "content_block_start", "content_block_delta", "content_block_stop",
                "message_delta", "message_stop",
            ])
        #expect(writer.messageID == "msg_abc")
        let failure = events(writer.failure(.upstreamTimeout))
        #expect(failure.first?.event == "error")
        #expect((try? JSONParser.parse(failure.first?.data ?? ""))?["error"]?["type"]?.stringValue == "api_error")
        let error = ReplyWriter.errorBody(.missingAPIKey, api: .anthropic)
        #expect(error["error"]?["type"]?.stringValue == "authentication_error")
        #expect(ReplyWriter.errorBody(.missingAPIKey, api: .openAI)["error"]?["code"]?.stringValue == "missing_api_key")
    }
}

@Suite struct RetryAfterTests {
    @Test(arguments: [
        ("-9223372036854775808", Int?.none), ("9223372036854775807", 600_000), ("99999999999999999999999", 600_000),
        ("-1", nil), ("1e9", nil), ("Wed, 21 Oct 2015 07:28:00 GMT", nil), ("", nil), ("0", 0), (" 7 ", 7_000),
        ("600", 600_000), ("601", 600_000),
    ])
    func upstreamRetryAfterIsBoundedAndNeverTraps(header: String, expected: Int?) {
        #expect(UpstreamClient.retryAfterMs(header) == expected)
    }
}
