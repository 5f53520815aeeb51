import TenantGateCore
import TenantGateSystem

/// The response cache's stage: after the reservation (a hit still counts against the rate limits), before
/// the upstream. `ResponseCacheService` finds the hit; this stage answers with it in the client's API and
/// delivery (a stored stream can be a whole answer and back), charging no tokens. A miss leaves the key
/// for the service to keep the fresh answer under.
struct CacheStage: Stage {
    let name = "cache"

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        guard case .chat(let chat, let messages) = call.input, let target = call.target else { return }
        guard let hit = ResponseCacheService(services).lookup(chat, messages: messages, target: target, &call)
        else { return }
        call.served.model = target.name
        call.served.backend = target.backend.name
        // A hit is free; a semantic one costs its question's embedding.
        call.served.usage = Usage(promptTokens: call.cache?.embeddingTokens ?? 0, completionTokens: 0)
        call.served.costNano = call.cache?.embeddingNano ?? 0
        call.served.upstreamMs = 0
        let created = Int(Posix.wallMicros() / 1_000_000)
        let chunks = ChunkFactory(id: call.completionID, model: target.name, created: created)
        let writer = ReplyWriter.of(
            call, model: target.name, includeUsage: chat.includeUsage, inputEstimate: 0, services: services)
        let none = Usage(promptTokens: 0, completionTokens: 0)
        if call.streamed {
            var relay = StreamRelay(
                writer: writer, filters: AnswerFilters.of(call, services), sink: services.sink,
                headers: call.answerHeaders)
            relay.open()
            call.status = 200
            call.relayed = true
            _ = relay.write(ResponseCache.replay(hit.answer, chunks: chunks), usage: none, usageChunk: chunks.usage)
            call.policyTriggers.record(AnswerFilters.triggers(relay))
            if relay.clientGone {
                call.status = 499
                call.errorCode = "client_closed"
            }
            services.sink.flush()
        } else {
            let answer = hit.answer.setting("id", .string(call.completionID)).setting("created", .int(created))
                .setting("usage", none.openAI)
            call.reply = PendingReply(body: writer.completion(answer, raw: nil, usage: none))
        }
    }
}
