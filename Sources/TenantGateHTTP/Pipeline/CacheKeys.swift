import TenantGateCore
import TenantGateSystem

/// The response cache's keys for a call, in one place: the lookup, the semantic scope, and the entry a
/// fallback's answer is kept under.
enum CacheKeys {
    /// Who may share the call's entries under `scope` (a BYOK caller only with the same provider key);
    /// nil when the call may not use the cache (scope `user` without an end user).
    /// JWT callers share the tenant's one JWT credential (key scope), or their verified subject (user
    /// scope); a key's end users are named within that key. Each part is length-prefixed.
    static func partition(_ call: ModelCall, scope: CacheScope) -> String? {
        var parts: [String]
        switch scope {
        case .tenant: parts = ["tenant"]
        case .key: parts = ["key", call.principal.key.id]
        case .user:
            if let subject = call.principal.subject {
                parts = ["user", "jwt", subject]
            } else {
                guard let user = call.endUser else { return nil }
                parts = ["user", "key", call.principal.key.id, user]
            }
        }
        // An answer paid with a caller's own provider key is that key's: never served to another one.
        if let byok = call.principal.passthrough { parts += ["byok", Crypto.sha256Hex(byok.value)] }
        return parts.map { "\($0.utf8.count):\($0)" }.joined()
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
