/// Which provider protocol a backend speaks.
public enum ProviderKind: String, Sendable {
    case openai, anthropic, mock
}

/// A backend: where requests for its models go.
public struct BackendConfig: Sendable, Equatable {
    public let name: String
    public let provider: ProviderKind
    /// Base URL without a trailing slash (e.g. `https://api.openai.com/v1`).
    public let baseURL: String
    /// The environment variable that holds the backend's key.
    public let apiKeyEnv: String?
    /// The whole call, streaming included.
    public let timeoutMs: Int
    public let connectTimeoutMs: Int
    /// Until the upstream's response head arrives (a model that has not started answering).
    public let firstByteTimeoutMs: Int
    /// `anthropic-version` sent to Anthropic backends.
    public let anthropicVersion: String
    /// Retries after the first attempt (connect errors, timeouts, 429 and 5xx, before any byte was sent).
    public let maxRetries: Int
    /// Base of the jittered exponential backoff.
    public let retryBackoffMs: Int
    /// Retrying stops once this much time has passed since the first attempt.
    public let retryBudgetMs: Int
    /// `responses: native`: an OpenAI backend that serves the Responses API itself gets such requests as
    /// they are (else they are translated to Chat Completions).
    public var responsesNative = false
    /// Whether requests with image URLs may go to it (`allow_remote_images`). By default only a hosted
    /// provider's HTTPS endpoint fetches them: a server on loopback, a private or bare IP address, a
    /// single-label or `.local`/`.internal`/`.lan` host, or plain HTTP, is self-hosted and would fetch a
    /// client's URL from inside the operator's network.
    public var allowRemoteImages = true

    /// Whether `baseURL` looks like a hosted provider's public endpoint (see `allowRemoteImages`).
    public static func looksHosted(_ baseURL: String) -> Bool {
        let lower = baseURL.lowercased()
        guard lower.hasPrefix("https://") else { return false }
        var host = String(lower.dropFirst(8).prefix { $0 != "/" && $0 != "?" && $0 != "#" })
        if let at = host.lastIndex(of: "@") { host = String(host[host.index(after: at)...]) }
        if host.hasPrefix("[") { return false }  // an IPv6 literal
        host = String(host.prefix { $0 != ":" })
        guard host.contains("."), !host.hasSuffix(".local"), !host.hasSuffix(".internal"), !host.hasSuffix(".lan"),
            !host.hasSuffix(".localhost"), host != "localhost"
        else { return false }
        // A dotted-quad IPv4 literal is an address, not a provider's name.
        return !host.split(separator: ".").allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isNumber) }
    }
}

/// A tenant's circuit breaker per backend: `errors` failures within `within_s` open it for `cooldown_s`.
public struct CircuitSettings: Sendable, Equatable {
    public let errors: Int
    public let windowMs: Int64
    public let cooldownMs: Int64
}

/// A catalog model alias.
public struct ModelConfig: Sendable, Equatable {
    public let name: String
    public let backend: String
    public let upstreamModel: String
    /// USD per million input tokens.
    public let inputPerMTok: Double
    /// USD per million output tokens.
    public let outputPerMTok: Double
    /// USD per million prompt tokens read from the provider's cache (default: the input price).
    public let cachedInputPerMTok: Double
    /// USD per million prompt tokens written to the provider's cache (default: the input price).
    public let cacheWritePerMTok: Double
    /// The model's completion cap (catalog `max_tokens`): larger requests are refused, and it is what is
    /// sent upstream when the client gives none.
    public let maxTokens: Int?
    /// Prompt tokens reserved per image (catalog `image_tokens`, default `ModelConfig.defaultImageTokens`).
    public let imageTokens: Int
    /// The body field that carries the cap when the client gave none (`max_tokens` or `max_completion_tokens`).
    public let maxTokensField: String

    /// Covers one image on Claude models and on GPT-4o / GPT-4.1 class models at high detail; models that
    /// bill more per image (e.g. gpt-4o-mini, about 37k tokens) need `image_tokens` in the catalog.
    public static let defaultImageTokens = 2_500

    /// Creates a catalog entry.
    public init(
        name: String, backend: String, upstreamModel: String, inputPerMTok: Double, outputPerMTok: Double,
        cachedInputPerMTok: Double, cacheWritePerMTok: Double, maxTokens: Int?,
        imageTokens: Int = ModelConfig.defaultImageTokens, maxTokensField: String = "max_tokens"
    ) {
        self.name = name
        self.backend = backend
        self.upstreamModel = upstreamModel
        self.inputPerMTok = inputPerMTok
        self.outputPerMTok = outputPerMTok
        self.cachedInputPerMTok = cachedInputPerMTok
        self.cacheWritePerMTok = cacheWritePerMTok
        self.maxTokens = maxTokens
        self.imageTokens = imageTokens
        self.maxTokensField = maxTokensField
    }
}

/// How a tenant's system prompt combines with the client's.
public enum PromptMode: String, Sendable {
    case prepend, replace, locked
}

/// One tenant's effective settings (defaults merged in).
public struct TenantConfig: Sendable {
    public let id: TenantID
    public let name: String
    /// Allowed models; the first is the default.
    public private(set) var models: [String]
    public let fallbacks: [String: [String]]
    public let systemPrompt: String?
    public let promptMode: PromptMode
    /// Templates by name (`default` is `system_prompt`), compiled and versioned.
    public let prompts: [String: ServedPrompt]
    /// The tenant's own template variables.
    public let variables: [String: String]
    /// Effective rate limits and budgets (with the global budget).
    public let limits: Limits
    /// The circuit breaker, if configured (in `defaults` or the tenant).
    public let circuit: CircuitSettings?
    /// Managed upstream keys by backend (decrypted in the worker's memory only).
    public let upstreamKeys: [String: Secret]
    /// Backends whose stored key could not be opened: calls to them are refused (fail closed).
    public let unavailableUpstreamKeys: Set<String>
    /// BYOK: the client's own provider key (`X-Provider-Key`) is forwarded beside its gateway credential.
    public let authPassthrough: Bool
    /// `limits.max_concurrent`: model calls in flight at once across the pool (nil: the pool's default share).
    public let maxConcurrent: Int?
    /// The effective settings document (defaults deep-merged with the tenant's own keys).
    public let effective: JSONValue
    /// Guardrail policies (defaults' rules, then the tenant's, by name).
    public var policies = PolicySet.none

    /// The default model, if any.
    public var defaultModel: String? { models.first }

    /// `limits.storage_mb` in bytes: everything the tenant stores (cache, stored responses, documents,
    /// audit trail) together; 1,024 MiB unless configured.
    public var storageQuotaBytes: Int64 {
        Int64(effective["limits"]?["storage_mb"]?.intValue ?? TenantConfig.defaultStorageMB) << 20
    }

    /// The default `limits.storage_mb`.
    public static let defaultStorageMB = 1024

    /// `requested` and then its fallbacks, each still on the tenant's allow-list (a fallback the tenant may
    /// not use is skipped, whatever the configuration says).
    public func chain(for requested: String) -> [String] {
        [requested] + (fallbacks[requested] ?? []).filter { $0 != requested && models.contains($0) }
    }

    /// Whether `flag` is on for `subject` (end user or key id); see `FeatureFlags`.
    public func feature(_ flag: String, subject: String) -> Bool {
        FeatureFlags.isOn(flag, tenant: self, subject: subject)
    }

    /// The tenant as a key restricted to `allowed` sees it: only those of its models, in the tenant's order
    /// (the first of them is the default). A key's list can only narrow the tenant's, never widen it.
    public func narrowed(to allowed: [String]?) -> TenantConfig {
        guard let allowed else { return self }
        var copy = self
        copy.models = models.filter { allowed.contains($0) }
        return copy
    }
}

/// Where a tenant may be read from, in the configured order.
public enum ResolutionSource: String, Sendable, CaseIterable {
    case path, header, apiKey = "api_key", jwt
}

/// A gateway-issued API key as held in memory: only its hash.
public struct APIKeyRecord: Sendable, Equatable {
    /// Public key id (shown in lists, logged).
    public let id: String
    public let tenant: TenantID
    /// The first characters of the key, used to find the record before comparing hashes.
    public let lookupPrefix: String
    /// SHA-256 of the whole key.
    public let hash: [UInt8]
    /// The key's own model allow-list (nil: the tenant's); it only narrows the tenant's.
    public var models: [String]?
    /// Epoch seconds from which the key is refused (`key_expired`); nil: never.
    public var expiresAt: Int64?
    /// Epoch seconds when the key was revoked: it is refused (`key_revoked`).
    public var revokedAt: Int64?

    /// Creates a record.
    public init(
        id: String, tenant: TenantID, lookupPrefix: String, hash: [UInt8], models: [String]? = nil,
        expiresAt: Int64? = nil, revokedAt: Int64? = nil
    ) {
        self.id = id
        self.tenant = tenant
        self.lookupPrefix = lookupPrefix
        self.hash = hash
        self.models = models
        self.expiresAt = expiresAt
        self.revokedAt = revokedAt
    }

    /// Refuses the key if it is revoked or expired at `now` (epoch seconds): the codes say which.
    public func checkUsable(now: Int64) throws(GatewayError) {
        if revokedAt != nil { throw GatewayError.keyRevoked }
        if let expiresAt, now >= expiresAt { throw GatewayError.keyExpired }
    }

    /// How many characters of a key form its lookup prefix (`tg_` plus 9).
    public static let prefixLength = 12
}

/// The `jwt:` settings; key material (secret, public key) is loaded by the worker, not stored here.
public struct JWTConfig: Sendable, Equatable {
    public let algorithm: JWTAlgorithm
    /// Environment variable holding the HS256 secret.
    public let secretEnv: String?
    /// PEM public key file for RS256 / ES256.
    public let publicKeyFile: String?
    public let tenantClaim: String
    /// Required `iss` (nil only for configurations stored before it was required).
    public let issuer: String?
    /// Required in `aud` (a string, or one of an array).
    public let audience: String?
}

/// An immutable snapshot of everything the request path needs; replaced whole when the config changes.
public struct GatewayConfig: Sendable {
    /// The store's config version this snapshot was built from.
    public let version: Int64
    public let resolution: [ResolutionSource]
    public let defaultTenant: TenantID?
    public let backends: [String: BackendConfig]
    public let models: [String: ModelConfig]
    public let tenants: [String: TenantConfig]
    /// Active keys by lookup prefix.
    public let keys: [String: [APIKeyRecord]]
    /// JWT authentication, if configured.
    public let jwt: JWTConfig?

    /// Builds and cross-checks a snapshot from the stored state.
    public init(
        state: ConfigState, keys: [APIKeyRecord], version: Int64, promptVersions: [String: [String: Int]] = [:],
        upstreamKeys: [String: [String: String]] = [:], unavailableUpstreamKeys: [String: Set<String>] = [:]
    ) throws(ConfigError) {
        self.version = version
        var backends: [String: BackendConfig] = [:]
        for (name, json) in state.backends {
            let path = "backends.\(name)"
            guard let providerText = json["provider"]?.stringValue, let provider = ProviderKind(rawValue: providerText)
            else { throw ConfigError(path: "\(path).provider", message: "is required", line: nil) }
            var baseURL = json["base_url"]?.stringValue ?? ""
            if provider != .mock {
                guard baseURL.hasPrefix("http://") || baseURL.hasPrefix("https://") else {
                    throw ConfigError(
                        path: "\(path).base_url", message: "must be an http:// or https:// URL", line: nil)
                }
            }
            while baseURL.hasSuffix("/") { baseURL.removeLast() }
            let timeout = json["timeout_ms"]?.intValue ?? 60_000
            backends[name] = BackendConfig(
                name: name, provider: provider, baseURL: baseURL, apiKeyEnv: json["api_key_env"]?.stringValue,
                timeoutMs: timeout, connectTimeoutMs: json["connect_timeout_ms"]?.intValue ?? 5_000,
                firstByteTimeoutMs: min(timeout, json["first_byte_timeout_ms"]?.intValue ?? 30_000),
                anthropicVersion: json["anthropic_version"]?.stringValue ?? "2023-06-01",
                maxRetries: json["max_retries"]?.intValue ?? 2,
                retryBackoffMs: json["retry_backoff_ms"]?.intValue ?? 100,
                retryBudgetMs: json["retry_budget_ms"]?.intValue ?? 5_000)
            backends[name]?.responsesNative = provider == .openai && json["responses"]?.stringValue == "native"
            backends[name]?.allowRemoteImages =
                json["allow_remote_images"]?.boolValue ?? (provider == .mock || BackendConfig.looksHosted(baseURL))
        }
        var models: [String: ModelConfig] = [:]
        for (name, json) in state.models {
            guard let backend = json["backend"]?.stringValue else {
                throw ConfigError(path: "models.\(name).backend", message: "is required", line: nil)
            }
            guard backends[backend] != nil else {
                throw ConfigError(path: "models.\(name).backend", message: "unknown backend '\(backend)'", line: nil)
            }
            models[name] = ModelConfig(
                name: name, backend: backend, upstreamModel: json["upstream_model"]?.stringValue ?? name,
                inputPerMTok: json["input_per_mtok"]?.doubleValue ?? 0,
                outputPerMTok: json["output_per_mtok"]?.doubleValue ?? 0,
                cachedInputPerMTok: json["cached_input_per_mtok"]?.doubleValue ?? json["input_per_mtok"]?.doubleValue
                    ?? 0,
                cacheWritePerMTok: json["cache_write_per_mtok"]?.doubleValue ?? json["input_per_mtok"]?.doubleValue
                    ?? 0,
                maxTokens: json["max_tokens"]?.intValue,
                imageTokens: json["image_tokens"]?.intValue ?? ModelConfig.defaultImageTokens,
                maxTokensField: json["max_tokens_field"]?.stringValue ?? "max_tokens")
        }
        let defaults = state.settings["defaults"] ?? .object([])
        var tenants: [String: TenantConfig] = [:]
        for (id, json) in state.tenants {
            guard let tid = TenantID(id) else {
                throw ConfigError(path: "tenants.\(id)", message: "invalid tenant id", line: nil)
            }
            for (backend, _) in json["upstream_keys"]?.objectValue ?? [] where backends[backend] == nil {
                throw ConfigError(
                    path: "tenants.\(id).upstream_keys.\(backend)", message: "unknown backend '\(backend)'", line: nil)
            }
            let effective = ConfigState.deepMerge(defaults, json)
            let allowed = (json["models"]?.arrayValue ?? []).compactMap(\.stringValue)
            for (i, m) in allowed.enumerated() where models[m] == nil {
                throw ConfigError(path: "tenants.\(id).models[\(i)]", message: "unknown model '\(m)'", line: nil)
            }
            var fallbacks: [String: [String]] = [:]
            for (from, chain) in json["fallbacks"]?.objectValue ?? [] {
                let list = (chain.arrayValue ?? []).compactMap(\.stringValue)
                for m in [from] + list where models[m] == nil {
                    throw ConfigError(
                        path: "tenants.\(id).fallbacks.\(from)", message: "unknown model '\(m)'", line: nil)
                }
                fallbacks[from] = list
            }
            var variables: [String: String] = [:]
            for (name, value) in json["variables"]?.objectValue ?? [] { variables[name] = value.stringValue }
            var prompts: [String: ServedPrompt] = [:]
            var sources: [(String, String, String)] = []
            if let text = json["system_prompt"]?.stringValue { sources.append(("default", text, "system_prompt")) }
            for (name, value) in json["prompts"]?.objectValue ?? [] {
                if let text = value.stringValue { sources.append((name, text, "prompts.\(name)")) }
            }
            for (name, text, key) in sources {
                do {
                    let template = try PromptTemplate(text, variables: Set(variables.keys))
                    prompts[name] = ServedPrompt(
                        name: name, version: promptVersions[id]?[name] ?? 0, template: template)
                } catch {
                    throw ConfigError(path: "tenants.\(id).\(key)", message: error.message, line: nil)
                }
            }
            tenants[id] = TenantConfig(
                id: tid, name: json["name"]?.stringValue ?? id, models: allowed, fallbacks: fallbacks,
                systemPrompt: json["system_prompt"]?.stringValue,
                promptMode: PromptMode(rawValue: json["prompt_mode"]?.stringValue ?? "prepend") ?? .prepend,
                prompts: prompts, variables: variables,
                limits: Limits(tenant: effective, global: state.settings["global_budget"]),
                circuit: effective["circuit_breaker"].map {
                    CircuitSettings(
                        errors: $0["errors"]?.intValue ?? 10, windowMs: Int64($0["within_s"]?.intValue ?? 60) * 1000,
                        cooldownMs: Int64($0["cooldown_s"]?.intValue ?? 300) * 1000)
                }, upstreamKeys: (upstreamKeys[id] ?? [:]).mapValues(Secret.init),
                unavailableUpstreamKeys: unavailableUpstreamKeys[id] ?? [],
                authPassthrough: json["auth_passthrough"]?.boolValue ?? false,
                maxConcurrent: effective["limits"]?["max_concurrent"]?.intValue, effective: effective)
            tenants[id]?.policies = try PolicySet.parse(
                defaults: defaults["policies"], tenant: json["policies"],
                holdBack: effective["policy_hold_back"]?.intValue, path: "tenants.\(id)")
        }
        let order = (state.settings["resolution"]?.arrayValue ?? []).compactMap {
            $0.stringValue.flatMap(ResolutionSource.init(rawValue:))
        }
        resolution = order.isEmpty ? [.path, .header, .apiKey, .jwt] : order
        if let name = state.settings["default_tenant"]?.stringValue {
            guard let tid = TenantID(name), tenants[name] != nil else {
                throw ConfigError(path: "default_tenant", message: "unknown tenant '\(name)'", line: nil)
            }
            defaultTenant = tid
        } else {
            defaultTenant = nil
        }
        if let json = state.settings["jwt"] {
            let algorithm = JWTAlgorithm(rawValue: json["algorithm"]?.stringValue ?? "HS256") ?? .hs256
            let secretEnv = json["secret_env"]?.stringValue
            let keyFile = json["public_key_file"]?.stringValue
            if algorithm == .hs256 && secretEnv == nil {
                throw ConfigError(path: "jwt.secret_env", message: "is required for HS256", line: nil)
            }
            if algorithm != .hs256 && keyFile == nil {
                throw ConfigError(
                    path: "jwt.public_key_file", message: "is required for \(algorithm.rawValue)", line: nil)
            }
            jwt = JWTConfig(
                algorithm: algorithm, secretEnv: secretEnv, publicKeyFile: keyFile,
                tenantClaim: json["tenant_claim"]?.stringValue ?? "tenant_id", issuer: json["issuer"]?.stringValue,
                audience: json["audience"]?.stringValue)
        } else {
            jwt = nil
        }
        var byPrefix: [String: [APIKeyRecord]] = [:]
        for key in keys where tenants[key.tenant.rawValue] != nil {
            byPrefix[key.lookupPrefix, default: []].append(key)
        }
        self.backends = backends
        self.models = models
        self.tenants = tenants
        self.keys = byPrefix
        unavailableUpstreamKeyCount = tenants.values.reduce(0) { $0 + $1.unavailableUpstreamKeys.count }
    }

    /// How many stored upstream keys could not be opened (`/readyz` reports them).
    public let unavailableUpstreamKeyCount: Int
}
