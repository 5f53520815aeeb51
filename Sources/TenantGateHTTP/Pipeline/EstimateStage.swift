import TenantGateCore
import TenantGateServing
import TenantGateSystem

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
