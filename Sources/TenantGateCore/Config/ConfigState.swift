/// The stored configuration as validated JSON parts: what `config import` merges into and `export` writes.
public struct ConfigState: Sendable, Equatable {
    /// Top-level settings: defaults, global_budget, resolution, default_tenant, jwt.
    public var settings: [String: JSONValue]
    /// Backends by name.
    public var backends: [String: JSONValue]
    /// Catalog models by name.
    public var models: [String: JSONValue]
    /// Tenants by id.
    public var tenants: [String: JSONValue]

    /// The names of the top-level settings.
    public static let settingKeys = ["defaults", "global_budget", "resolution", "default_tenant", "jwt"]

    /// Creates a state.
    public init(
        settings: [String: JSONValue] = [:], backends: [String: JSONValue] = [:], models: [String: JSONValue] = [:],
        tenants: [String: JSONValue] = [:]
    ) {
        self.settings = settings
        self.backends = backends
        self.models = models
        self.tenants = tenants
    }

    /// Validates a parsed file against the schema.
    public static func validateFile(_ node: ConfigNode) throws(ConfigError) -> JSONValue {
        if case .scalar(let text, false, _) = node, text.isEmpty || text == "null" { return .object([]) }
        let file = try ConfigSchema.file.validate(node, path: "")
        // RFC 8725 §3.8–3.9: a token must be bound to who issued it and to this gateway, or a token signed
        // with the same key for another service would be accepted here.
        if let jwt = file["jwt"] {
            for field in ["issuer", "audience"] where jwt[field] == nil {
                throw ConfigError(
                    path: "jwt.\(field)",
                    message: "is required (RFC 8725: bind tokens to their issuer and to this gateway)", line: node.line)
            }
        }
        return file
    }

    /// Upserts a validated file: named entries are created or updated key by key (a `null` tenant is deleted);
    /// with `prune`, entries the file does not name are removed and named ones replaced whole.
    public func merging(_ file: JSONValue, prune: Bool) -> ConfigState {
        var next = prune ? ConfigState() : self
        for (key, value) in file.objectValue ?? [] {
            switch key {
            case "backends": next.backends = ConfigState.upsert(next.backends, value, prune: prune)
            case "models": next.models = ConfigState.upsert(next.models, value, prune: prune)
            case "tenants": next.tenants = ConfigState.upsert(next.tenants, value, prune: prune)
            default:
                if prune {
                    next.settings[key] = value
                } else {
                    next.settings[key] = ConfigState.deepMerge(next.settings[key], value)
                }
            }
        }
        if prune {
            for key in ConfigState.settingKeys where file[key] == nil { next.settings[key] = nil }
        }
        return next
    }

    private static func upsert(_ current: [String: JSONValue], _ value: JSONValue, prune: Bool) -> [String: JSONValue] {
        var out = current
        for (name, entry) in value.objectValue ?? [] {
            if entry == .null {
                out[name] = nil
            } else {
                out[name] = prune ? entry : deepMerge(out[name], entry)
            }
        }
        return out
    }

    /// Objects merge key by key, recursively; anything else is replaced.
    public static func deepMerge(_ base: JSONValue?, _ over: JSONValue) -> JSONValue {
        guard let base, case .object(let baseMembers) = base, case .object(let overMembers) = over else { return over }
        var result = JSONValue.object(baseMembers)
        for (k, v) in overMembers {
            result = result.setting(k, v == .null ? .null : deepMerge(result[k], v))
        }
        return result
    }

    /// The state without tenant `id` (and without it as `default_tenant`, which would name nobody).
    public func removingTenant(_ id: String) -> ConfigState {
        var next = self
        next.tenants[id] = nil
        if next.settings["default_tenant"]?.stringValue == id { next.settings["default_tenant"] = nil }
        return next
    }

    /// The whole state as a configuration document (sorted, stable).
    public func document() -> JSONValue {
        var members: [(String, JSONValue)] = []
        for key in ConfigState.settingKeys {
            if let v = settings[key] { members.append((key, v)) }
        }
        func sorted(_ d: [String: JSONValue]) -> JSONValue { .object(d.keys.sorted().map { ($0, d[$0] ?? .null) }) }
        members.append(("backends", sorted(backends)))
        members.append(("models", sorted(models)))
        members.append(("tenants", sorted(tenants)))
        return .object(members)
    }
}
