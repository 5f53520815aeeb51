import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// Resolves the model against the tenant's allow-list, its backend and the fallback chain, and checks
/// the client's completion cap against the model's.
struct ModelStage: Stage {
    let name = "model"

    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        let requested: String?
        switch call.input {
        case .chat(let chat, _): requested = chat.model
        case .embeddings(let embed): requested = embed.model
        case .countTokens(let messages): requested = messages.chat.model
        case .none: return
        }
        let (name, model, backend) = try ModelSelection.resolve(requested, tenant: call.tenant, config: call.config)
        var chain = [(name: name, model: model, backend: backend)]
        if case .chat(let chat, let native) = call.input {
            try chat.checkCap(for: model)
            // A BYOK client's key only ever goes to the backend of the model it asked for, so fallbacks on
            // other backends are skipped for it.
            chain = call.tenant.chain(for: name).compactMap { candidate in
                guard let m = call.config.models[candidate], let b = call.config.backends[m.backend],
                    call.principal.passthrough == nil || m.backend == model.backend
                else { return nil }
                return (candidate, m, b)
            }
            // A self-hosted server would fetch a client's image URL from inside the operator's network.
            let remote = chat.hasRemoteMedia || native.map { ChatRequest.hasURLSource($0.original) } == true
            if remote, let closed = chain.first(where: { !$0.backend.allowRemoteImages }) {
                throw GatewayError.invalidRequest(
                    "Model '\(closed.name)' does not fetch media by URL (its backend is self-hosted): send images inline as data: URLs.",
                    param: "messages")
            }
        }
        if case .embeddings = call.input, !Provider.of(backend.provider).offersEmbeddings {
            // Refused before anything is reserved or sent.
            throw GatewayError.invalidRequest("Model '\(name)' does not offer embeddings.", param: "model")
        }
        if call.endpoint == .countTokens { call.served.model = name }
        if call.endpoint != .chat && call.endpoint != .messages { call.served.backend = backend.name }
        call.target = Target(name: name, model: model, backend: backend, chain: chain)
    }
}
