import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// Applies the tenant's prompt template (by header, `metadata.prompt` or default) to a chat call.
struct PromptStage: Stage {
    let name = "prompt"

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        guard case .chat(let chat, let messages) = call.input, let target = call.target else { return }
        let (applied, served) = try PromptTemplating.apply(
            chat, tenant: call.tenant, model: target.name, requested: call.request.headers["x-tenantgate-prompt"],
            epochSeconds: Posix.wallMicros() / 1_000_000, verifiedUser: call.principal.subject)
        call.input = .chat(applied, messages: messages)
        guard let served else { return }
        call.prompt = served
        if messages != nil {
            // A native Anthropic call carries the system prompt beside the messages.
            call.nativeSystem = applied.messages.filter {
                ["system", "developer"].contains($0["role"]?.stringValue ?? "")
            }.map { AnthropicRequest.plainText($0["content"]) }.joined(separator: "\n\n")
        }
    }
}

/// `count_tokens` on a backend that cannot count: TenantGate's documented estimate, free and unlogged.
struct EstimateStage: Stage {
    let name = "estimate"

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        guard case .countTokens(let messages) = call.input, let target = call.target,
            Provider.of(target.backend.provider).tokenCounting == nil
        else { return }
        let tools = messages.original["tools"].map { ($0.jsonString.utf8.count + 3) / 4 } ?? 0
        let estimate = TokenEstimate.prompt(messages.chat.promptText).saturatingAdd(tools)
        call.reply = PendingReply(body: JSONValue.object([("input_tokens", .int(estimate))]).bytes)
    }
}

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
