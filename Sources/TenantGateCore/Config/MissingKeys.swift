/// A backend whose key comes from an environment variable (`api_key_env`) that is not set, while some
/// tenant would call it on that key (it has a model there, no stored key of its own for the backend and
/// does not bring its own): its calls are refused (`503 upstream_key_missing`), never sent keyless.
public struct MissingBackendKey: Sendable, Equatable {
    public let backend: String
    /// The variable that is not set.
    public let variable: String
    /// The tenants that would call the backend on it, sorted.
    public let tenants: [String]
}

extension GatewayConfig {
    /// The backends whose `api_key_env` is unset (`env` reads the environment) and that some tenant needs.
    public func missingBackendKeys(env: (String) -> String?) -> [MissingBackendKey] {
        var out: [MissingBackendKey] = []
        for backend in backends.values.sorted(by: { $0.name < $1.name }) {
            guard let variable = backend.apiKeyEnv, (env(variable) ?? "").isEmpty else { continue }
            let tenants = self.tenants.values.filter { tenant in
                !tenant.authPassthrough && tenant.upstreamKeys[backend.name] == nil
                    && !tenant.unavailableUpstreamKeys.contains(backend.name)
                    && tenant.models.contains { models[$0]?.backend == backend.name }
            }.map(\.id.rawValue).sorted()
            if !tenants.isEmpty {
                out.append(MissingBackendKey(backend: backend.name, variable: variable, tenants: tenants))
            }
        }
        return out
    }
}
