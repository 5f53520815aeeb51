import TenantGateCore
import TenantGateSystem

/// The response cache's keys for a call, in one place: the lookup, the semantic scope, and the entry a
/// fallback's answer is kept under.
enum CacheKeys {
    /// Who may share the call's entries under `scope` (a BYOK caller only with the same provider key);
    /// nil when the call may not use the cache (scope `user` without an end user).
    static func partition(_ call: ModelCall, scope: CacheScope) -> String? {
        var partition: String
        switch scope {
        case .tenant: partition = "tenant"
        case .key: partition = "key:" + (call.principal.subject.map { "jwt:" + $0 } ?? call.principal.key.id)
        case .user:
            guard let user = call.endUser else { return nil }
            partition = "user:" + user
        }
        // An answer paid with a caller's own provider key is that key's: never served to another one.
        if let byok = call.principal.passthrough { partition += "|byok:" + Crypto.sha256Hex(byok.value) }
        return partition
    }

    /// The key of `chat` answered by catalog model `name` on `backend`.
    static func key(
        _ call: ModelCall, chat: ChatRequest, messages: MessagesRequest?, name: String, model: ModelConfig,
        backend: BackendConfig, partition: String
    ) -> [UInt8] {
        let headers = ["anthropic-version", "anthropic-beta"].map {
            $0 + ":" + (UpstreamClient.headerValue(call.request.headers[$0]) ?? "")
        }
        let input = ResponseCache.KeyInput(
            tenant: call.tenant.id.rawValue, partition: partition, api: call.api == .anthropic ? "anthropic" : "openai",
            model: name, backend: backend.name, upstreamModel: model.upstreamModel + "|" + model.maxTokensField,
            completionCap: chat.completionCap(for: model), headers: headers, nativeSystem: call.nativeSystem)
        return Crypto.sha256(ResponseCache.keyMaterial(input, chat: chat, messages: messages))
    }
}
