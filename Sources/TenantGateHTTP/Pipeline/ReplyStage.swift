import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// Sends a whole answer (streams were relayed as they came) and records the status.
struct ReplyStage: Stage {
    let name = "reply"
    var runsWhenAnswered: Bool { true }

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        guard var reply = call.reply else { return }
        call.status = reply.status
        if let retrieval = call.retrieval, retrieval.sourcesField, reply.status == 200,
            let answer = try? JSONParser.parse(reply.body), case .object = answer
        {
            // The chunks the answer was given, beside it (SDKs keep unknown fields; a tenant can turn it off).
            reply.body = answer.setting("tenantgate", .object([("sources", retrieval.sources)])).bytes
        }
        // A whole Responses API answer is kept (after egress policies) before the client has it.
        if reply.status == 200, let keeper = ResponsesKeeper(call, services: services),
            let response = try? JSONParser.parse(reply.body)
        {
            keeper.keep(response)
        }
        services.sink.send(reply.status, reply.body, headers: call.answerHeaders)
    }
}
