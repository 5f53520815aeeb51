import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// The key and the headers of every upstream call.
enum UpstreamHeaders {
    /// The key for `backend`: BYOK, else the tenant's managed key, else the backend's `api_key_env`. A
    /// managed key that is stored but cannot be opened refuses the call: it never falls back to the
    /// operator's key (that would move the tenant's traffic onto the operator's account).
    static func upstreamKey(backend: BackendConfig, principal: Principal) throws(GatewayError) -> String? {
        if let byok = principal.passthrough { return byok.value }
        if principal.tenant.unavailableUpstreamKeys.contains(backend.name) {
            throw GatewayError.upstreamKeyUnavailable(backend: backend.name)
        }
        if let managed = principal.tenant.upstreamKeys[backend.name] { return managed.value }
        guard let env = backend.apiKeyEnv else { return nil }  // a keyless backend (vLLM, Ollama)
        guard let key = Posix.env(env), !key.isEmpty else {
            throw GatewayError.upstreamKeyMissing(backend: backend.name, variable: env)
        }
        return key
    }

    /// Headers for an upstream call: content type, the backend's key (from its environment variable,
    /// never the tenant's gateway key), the request id and the trace context.
    static func upstreamHeaders(
        backend: BackendConfig, principal: Principal, accept: String, requestID: String, trace: TraceContext,
        spanID: String
    ) throws(GatewayError) -> [String] {
        var headers = ["Content-Type: application/json", "Accept: \(accept)"]
        // Order: the client's own key (BYOK), the tenant's managed key, the backend's environment key.
        let key = try upstreamKey(backend: backend, principal: principal)
        // A key with a control character or a non-ASCII byte would inject or corrupt a header line.
        if let key, !Bounds.isPrintableASCII(key) { throw GatewayError.upstreamKeyUnavailable(backend: backend.name) }
        if backend.provider == .anthropic {
            headers.append("anthropic-version: \(backend.anthropicVersion)")
            if let key { headers.append("x-api-key: \(key)") }
        } else if let key {
            headers.append("Authorization: Bearer \(key)")
        }
        if !requestID.isEmpty, requestID.utf8.count <= 128, Bounds.isPrintableASCII(requestID) {
            headers.append("X-Request-ID: \(requestID)")
        }
        headers.append("traceparent: \(trace.traceparent(spanID: spanID))")
        return headers
    }
}
