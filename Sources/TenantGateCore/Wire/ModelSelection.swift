/// Shared by every model endpoint: the `model` field of a body, and the tenant's choice of model.
public enum ModelSelection {
    /// The optional `model` field of a JSON object body: a non-empty string of at most 256 bytes.
    public static func requested(in json: JSONValue) throws(GatewayError) -> String? {
        guard case .object = json else { throw GatewayError.invalidRequest("Request body must be a JSON object.") }
        guard let m = json["model"], m != .null else { return nil }
        guard let s = m.stringValue, !s.isEmpty, s.utf8.count <= 256 else {
            throw GatewayError.invalidRequest("'model' must be a non-empty string.", param: "model")
        }
        return s
    }

    /// The model to serve (`requested`, else the tenant's default), checked against the allow-list.
    public static func resolve(_ requested: String?, tenant: TenantConfig, config: GatewayConfig) throws(GatewayError)
        -> (name: String, model: ModelConfig, backend: BackendConfig)
    {
        guard let name = requested ?? tenant.defaultModel else {
            throw GatewayError.invalidRequest("No model given and the tenant has no default model.", param: "model")
        }
        guard tenant.models.contains(name), let model = config.models[name],
            let backend = config.backends[model.backend]
        else { throw GatewayError.modelNotAllowed(name) }
        return (name, model, backend)
    }
}
