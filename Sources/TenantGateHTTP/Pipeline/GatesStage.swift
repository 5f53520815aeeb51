import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// Feature flags and the endpoint's gates for the call's subject.
struct GatesStage: Stage {
    let name = "gates"

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        let tenant = call.tenant
        let subject = call.subject
        let beta = call.request.headers["anthropic-beta"] != nil
        switch call.input {
        case .chat(let chat, let messages):
            if call.endpoint == .responses && !tenant.feature("responses_api", subject: subject) {
                throw GatewayError.featureDisabled("responses_api")
            }
            if let messages {
                guard tenant.feature("messages_api", subject: subject) else {
                    throw GatewayError.featureDisabled("messages_api")
                }
                try messages.checkGates(tenant: tenant, subject: subject, beta: beta)
            }
            if chat.stream && !tenant.feature("streaming", subject: subject) {
                throw GatewayError.featureDisabled("streaming")
            }
            if chat.usesTools && !tenant.feature("tools", subject: subject) {
                throw GatewayError.featureDisabled("tools")
            }
        case .embeddings:
            guard tenant.feature("embeddings", subject: subject) else {
                throw GatewayError.featureDisabled("embeddings")
            }
        case .countTokens(let messages):
            guard tenant.feature("messages_api", subject: subject) else {
                throw GatewayError.featureDisabled("messages_api")
            }
            try messages.checkGates(tenant: tenant, subject: subject, beta: beta)
        case .none: return
        }
    }
}
