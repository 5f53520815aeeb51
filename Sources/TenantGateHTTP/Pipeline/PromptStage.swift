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
