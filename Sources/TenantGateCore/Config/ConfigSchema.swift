/// A declarative description of the configuration file; validates a `ConfigNode` into typed JSON.
public indirect enum ConfigSchema: Sendable {
    case string(maxLength: Int)
    case integer(min: Int, max: Int)
    case number(min: Double, max: Double)
    case boolean
    case oneOf([String])
    /// A boolean, or a rollout percentage 0–100.
    case flag
    case list(ConfigSchema, maxCount: Int)
    /// Fixed keys; any other key is refused.
    case object([String: ConfigSchema])
    /// Free keys matching `keyPattern` (a description), each validated by the value schema.
    case map(ConfigSchema, keys: KeyRule)
    /// `null` or the wrapped schema.
    case nullable(ConfigSchema)

    /// How the keys of a `map` are checked.
    public enum KeyRule: Sendable {
        case tenantID
        case name
    }

    /// Validates `node` at `path`, returning the typed JSON value.
    public func validate(_ node: ConfigNode, path: String) throws(ConfigError) -> JSONValue {
        switch self {
        case .nullable(let inner):
            if case .scalar(let text, false, _) = node, text == "null" || text == "~" || text.isEmpty { return .null }
            return try inner.validate(node, path: path)
        case .string(let maxLength):
            guard case .scalar(let text, let quoted, let line) = node else { throw wrongType(node, path, "a string") }
            if !quoted && (text == "null" || text == "~") { throw wrongType(node, path, "a string") }
            guard text.utf8.count <= maxLength else {
                throw ConfigError(path: path, message: "longer than \(maxLength) bytes", line: line)
            }
            return .string(text)
        case .integer(let min, let max):
            guard case .scalar(let text, false, let line) = node, let value = Int(text) else {
                throw wrongType(node, path, "an integer")
            }
            guard value >= min && value <= max else {
                throw ConfigError(path: path, message: "must be between \(min) and \(max), got \(value)", line: line)
            }
            return .int(value)
        case .number(let min, let max):
            guard case .scalar(let text, false, let line) = node, let value = Double(text), value.isFinite,
                text.first.map({ $0.isNumber || $0 == "-" }) == true
            else { throw wrongType(node, path, "a number") }
            guard value >= min && value <= max else {
                throw ConfigError(path: path, message: "must be between \(min) and \(max), got \(text)", line: line)
            }
            return .number(text)
        case .boolean:
            guard case .scalar(let text, false, _) = node, text == "true" || text == "false" else {
                throw wrongType(node, path, "true or false")
            }
            return .bool(text == "true")
        case .flag:
            if case .scalar(let text, false, let line) = node {
                if text == "true" || text == "false" { return .bool(text == "true") }
                if let pct = Int(text) {
                    guard (0...100).contains(pct) else {
                        throw ConfigError(
                            path: path, message: "rollout percentage must be 0-100, got \(pct)", line: line)
                    }
                    return .int(pct)
                }
            }
            throw wrongType(node, path, "true, false or a percentage 0-100")
        case .oneOf(let options):
            guard case .scalar(let text, _, let line) = node else {
                throw wrongType(node, path, options.joined(separator: " | "))
            }
            guard options.contains(text) else {
                throw ConfigError(
                    path: path, message: "must be one of \(options.joined(separator: ", ")), got '\(text)'", line: line)
            }
            return .string(text)
        case .list(let element, let maxCount):
            guard case .sequence(let items, let line) = node else { throw wrongType(node, path, "a list") }
            guard items.count <= maxCount else {
                throw ConfigError(path: path, message: "more than \(maxCount) entries", line: line)
            }
            var out: [JSONValue] = []
            for (i, item) in items.enumerated() { out.append(try element.validate(item, path: "\(path)[\(i)]")) }
            return .array(out)
        case .object(let fields):
            guard case .mapping(let pairs, _) = node else { throw wrongType(node, path, "a mapping") }
            var out: [(String, JSONValue)] = []
            var seen = Set<String>()
            for pair in pairs {
                let sub = path.isEmpty ? pair.key : "\(path).\(pair.key)"
                guard let schema = fields[pair.key] else {
                    let known = fields.keys.sorted().joined(separator: ", ")
                    throw ConfigError(path: sub, message: "unknown key (expected one of: \(known))", line: pair.line)
                }
                guard seen.insert(pair.key).inserted else {
                    throw ConfigError(path: sub, message: "duplicate key", line: pair.line)
                }
                out.append((pair.key, try schema.validate(pair.value, path: sub)))
            }
            return .object(out)
        case .map(let valueSchema, let rule):
            guard case .mapping(let pairs, _) = node else { throw wrongType(node, path, "a mapping") }
            var out: [(String, JSONValue)] = []
            var seen = Set<String>()
            for pair in pairs {
                let sub = path.isEmpty ? pair.key : "\(path).\(pair.key)"
                switch rule {
                case .tenantID:
                    guard TenantID(pair.key) != nil else {
                        throw ConfigError(
                            path: sub, message: "tenant id must match [a-z0-9][a-z0-9_-]{0,62}", line: pair.line)
                    }
                case .name:
                    guard ConfigSchema.isName(pair.key) else {
                        throw ConfigError(
                            path: sub, message: "name must be 1-128 characters of A-Z a-z 0-9 . _ : / -",
                            line: pair.line)
                    }
                }
                guard seen.insert(pair.key).inserted else {
                    throw ConfigError(path: sub, message: "duplicate key", line: pair.line)
                }
                out.append((pair.key, try valueSchema.validate(pair.value, path: sub)))
            }
            return .object(out)
        }
    }

    /// Names of backends, models, flags and variables: 1–128 of `A-Za-z0-9._:/-`.
    public static func isName(_ s: String) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 128 else { return false }
        return s.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "-")
                || b == UInt8(ascii: ":") || b == UInt8(ascii: "/")
        }
    }

    private func wrongType(_ node: ConfigNode, _ path: String, _ expected: String) -> ConfigError {
        let got: String
        switch node {
        case .scalar(let text, _, _): got = "'\(text.prefix(40))'"
        case .mapping: got = "a mapping"
        case .sequence: got = "a list"
        }
        return ConfigError(path: path, message: "expected \(expected), got \(got)", line: node.line)
    }
}

extension ConfigSchema {
    static let modelName = ConfigSchema.string(maxLength: 128)
    static let money = ConfigSchema.number(min: 0, max: 1e9)
    static let count = ConfigSchema.integer(min: 0, max: 1_000_000_000_000)

    /// `rate_limit`.
    public static let rateLimit = ConfigSchema.object([
        "requests_per_minute": count, "tokens_per_minute": count,
    ])
    /// `budget` (tenant) and `global_budget`.
    public static let budget = ConfigSchema.object([
        "daily_usd": money, "monthly_usd": money, "daily_tokens": count, "monthly_tokens": count,
        "enforcement": .oneOf(["hard", "soft"]), "when_short": .oneOf(["fit", "refuse"]),
    ])
    /// `features`.
    public static let features = ConfigSchema.map(.flag, keys: .name)

    /// Settings a tenant may override from `defaults`.
    static let inheritable: [String: ConfigSchema] = [
        "rate_limit": rateLimit,
        "budget": budget,
        "features": features,
        "circuit_breaker": .object([
            "errors": .integer(min: 1, max: 1_000_000), "within_s": .integer(min: 1, max: 86_400),
            "cooldown_s": .integer(min: 1, max: 86_400),
        ]),
        "audit": .object([
            "retention_days": .integer(min: 1, max: 3650), "capture_requests": .boolean, "capture_bodies": .boolean,
        ]),
        "cache": .object([
            "ttl_s": .integer(min: 0, max: 31_536_000), "semantic_threshold": .number(min: 0.9, max: 1),
            "max_entries": .integer(min: 1, max: 10_000_000), "max_bytes": .integer(min: 4096, max: 1 << 40),
            "any_temperature": .boolean, "embedding_model": .string(maxLength: 256),
            "scope": .oneOf(["tenant", "key", "user"]),
        ]),
        "limits": .object([
            "max_concurrent": .integer(min: 1, max: 1_000_000), "storage_mb": .integer(min: 1, max: 1 << 30),
        ]),
        "documents": .object([
            "max_bytes": .integer(min: 1024, max: 1 << 40), "max_documents": .integer(min: 1, max: 100_000_000),
            "max_collections": .integer(min: 1, max: 100_000), "chunk_tokens": .integer(min: 64, max: 8192),
            "overlap_tokens": .integer(min: 0, max: 2048), "embedding_model": .string(maxLength: 256),
        ]),
        "responses": .object([
            "max_stored": .integer(min: 1, max: 10_000_000), "retention_days": .integer(min: 1, max: 3650),
        ]),
        "retrieval": .object([
            "collection": .string(maxLength: 64), "k": .integer(min: 1, max: 20),
            "max_context_tokens": .integer(min: 1, max: 100_000), "mode": .oneOf(SearchMode.allCases.map(\.rawValue)),
            "template": .string(maxLength: 8192), "sources_field": .boolean,
        ]),
        "policies": .list(policy, maxCount: 64),
        "policy_hold_back": .integer(min: 0, max: 8192),
    ]

    /// One guardrail rule, or `{preset: <name>}` (semantics are checked when the snapshot is built).
    static let policy: ConfigSchema = .object([
        "preset": .string(maxLength: 64), "name": .string(maxLength: 100),
        "phase": .oneOf(PolicyPhase.allCases.map(\.rawValue)), "detector": .string(maxLength: 64),
        "pattern": .string(maxLength: 1024), "keywords": .list(.string(maxLength: 200), maxCount: 500),
        "threshold": .number(min: 0, max: 1), "action": .oneOf(PolicyAction.allCases.map(\.rawValue)),
        "mode": .oneOf(PolicyMode.allCases.map(\.rawValue)), "message": .string(maxLength: 1000),
        "replacement": .string(maxLength: 200), "on_error": .oneOf(["open", "closed"]),
    ])

    /// One tenant.
    public static let tenant: ConfigSchema = {
        var fields = inheritable
        fields["name"] = .string(maxLength: 200)
        fields["models"] = .list(modelName, maxCount: 500)
        fields["fallbacks"] = .map(.list(modelName, maxCount: 10), keys: .name)
        fields["system_prompt"] = .nullable(.string(maxLength: PromptTemplate.maxBytes))
        fields["prompt_mode"] = .oneOf(["prepend", "replace", "locked"])
        fields["prompts"] = .map(.string(maxLength: PromptTemplate.maxBytes), keys: .name)
        fields["variables"] = .map(.string(maxLength: 4096), keys: .name)
        fields["upstream_keys"] = .map(.nullable(.string(maxLength: 4096)), keys: .name)
        fields["auth_passthrough"] = .boolean
        return .object(fields)
    }()

    /// One backend.
    public static let backend = ConfigSchema.object([
        "provider": .oneOf(["openai", "anthropic", "mock"]),
        "base_url": .string(maxLength: 2048),
        "api_key_env": .string(maxLength: 256),
        "timeout_ms": .integer(min: 100, max: 3_600_000),
        "connect_timeout_ms": .integer(min: 10, max: 600_000),
        "max_retries": .integer(min: 0, max: 10),
        "retry_backoff_ms": .integer(min: 1, max: 60_000),
        "retry_budget_ms": .integer(min: 0, max: 600_000),
        "first_byte_timeout_ms": .integer(min: 100, max: 3_600_000),
        "anthropic_version": .string(maxLength: 64),
        "responses": .oneOf(["native", "translate"]),
        "allow_remote_images": .boolean,
    ])

    /// One catalog model.
    public static let model = ConfigSchema.object([
        "backend": .string(maxLength: 128),
        "upstream_model": .string(maxLength: 256),
        "input_per_mtok": money, "output_per_mtok": money, "cached_input_per_mtok": money,
        "cache_write_per_mtok": money,
        "max_tokens": .integer(min: 1, max: Bounds.maxCompletionTokens),
        "image_tokens": .integer(min: 0, max: 1_000_000),
        "max_tokens_field": .oneOf(["max_tokens", "max_completion_tokens"]),
    ])

    /// The whole configuration file.
    public static let file = ConfigSchema.object([
        "defaults": .object(inheritable),
        "global_budget": budget,
        "resolution": .list(.oneOf(["path", "header", "api_key", "jwt"]), maxCount: 4),
        "default_tenant": .nullable(.string(maxLength: 63)),
        "jwt": .object([
            "algorithm": .oneOf(["HS256", "RS256", "ES256"]), "secret_env": .string(maxLength: 256),
            "public_key_file": .string(maxLength: 4096), "tenant_claim": .string(maxLength: 128),
            "issuer": .string(maxLength: 512), "audience": .string(maxLength: 512),
        ]),
        "backends": .map(backend, keys: .name),
        "models": .map(model, keys: .name),
        "tenants": .map(.nullable(tenant), keys: .tenantID),
    ])
}
