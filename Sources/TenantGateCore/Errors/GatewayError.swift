/// Every error a client can see, each mapped to its HTTP status, OpenAI error type and code in one place.
public enum GatewayError: Error, Equatable, Sendable {
    case invalidJSON(String)
    case invalidRequest(String, param: String? = nil)
    case invalidTenantID
    case systemPromptLocked
    case unknownPrompt(String)
    case missingAPIKey
    case invalidAPIKey
    /// A gateway key past its expiry (or a rotated key's old secret past its grace).
    case keyExpired
    /// A gateway key its tenant or the operator revoked.
    case keyRevoked
    case invalidToken(String)
    /// A BYOK (`auth_passthrough`) tenant's model call without `X-Provider-Key`.
    case missingProviderKey
    case tenantMismatch
    case featureDisabled(String)
    /// A tenant guardrail policy refused the request (its name, and its message if it has one).
    case policyBlocked(policy: String, message: String?)
    case modelNotAllowed(String)
    case tenantNotFound
    case notFound
    /// A named thing of the tenant's (a collection, a document) that does not exist for it.
    case missing(String)
    /// A name already taken.
    case conflict(String)
    /// A per-tenant storage quota would be exceeded.
    case quotaExceeded(String)
    /// The tenant's whole stored data (`limits.storage_mb`) would be exceeded.
    case storageQuotaExceeded(String)
    case methodNotAllowed
    case requestTooLarge(limit: Int)
    case unsupportedMediaType
    case rateLimited(limit: String, retryAfter: Int)
    case budgetExceeded(scope: String, budget: String, resetsAt: Int64)
    /// A budget has less left than the request's worst case, said in full (`detail`: the worst case, what
    /// remains, when it resets, what to change).
    case budgetShort(scope: String, budget: String, detail: String)
    /// The tenant's (`scope` "tenant") or the whole pool's ("pool") model calls in flight are at their cap.
    case concurrencyLimited(scope: String, limit: Int)
    case upstreamError(String)
    case circuitOpen(retryAfter: Int)
    case upstreamTimeout
    /// The tenant's managed upstream key for a backend is stored but cannot be opened (master key missing,
    /// wrong or the sealed row damaged): refused rather than served on the operator's key.
    case upstreamKeyUnavailable(backend: String)
    /// The backend's key comes from an environment variable that is not set where the gateway runs:
    /// refused rather than sent without a key.
    case upstreamKeyMissing(backend: String, variable: String)
    /// Too many admin logins are being checked at once on this worker.
    case loginBusy
    case serviceUnavailable(String)
    case internalError

    /// HTTP status code.
    public var status: Int {
        switch self {
        case .invalidJSON, .invalidRequest, .invalidTenantID, .systemPromptLocked, .unknownPrompt: return 400
        case .missingAPIKey, .invalidAPIKey, .keyExpired, .keyRevoked, .invalidToken, .missingProviderKey: return 401
        case .tenantMismatch, .featureDisabled, .modelNotAllowed, .policyBlocked: return 403
        case .tenantNotFound, .notFound, .missing: return 404
        case .conflict: return 409
        case .quotaExceeded: return 403
        case .methodNotAllowed: return 405
        case .requestTooLarge: return 413
        case .rateLimited, .budgetExceeded, .budgetShort, .concurrencyLimited, .storageQuotaExceeded: return 429
        case .unsupportedMediaType: return 415
        case .upstreamError: return 502
        case .serviceUnavailable, .circuitOpen, .upstreamKeyUnavailable, .upstreamKeyMissing, .loginBusy: return 503
        case .upstreamTimeout: return 504
        case .internalError: return 500
        }
    }

    /// OpenAI error `type`.
    public var type: String {
        switch self {
        case .invalidJSON, .invalidRequest, .invalidTenantID, .systemPromptLocked, .unknownPrompt, .requestTooLarge,
            .unsupportedMediaType,
            .methodNotAllowed, .notFound, .tenantNotFound, .modelNotAllowed, .missing, .conflict, .quotaExceeded:
            return "invalid_request_error"
        case .missingAPIKey, .invalidAPIKey, .keyExpired, .keyRevoked, .invalidToken, .missingProviderKey:
            return "authentication_error"
        case .tenantMismatch, .featureDisabled: return "permission_error"
        case .policyBlocked: return "policy_error"
        case .rateLimited(let limit, _): return limit
        case .budgetExceeded(let scope, _, _), .budgetShort(let scope, _, _): return "\(scope)_budget_exceeded"
        case .concurrencyLimited(let scope, _): return scope == "pool" ? "pool_concurrency" : "concurrency"
        case .upstreamError, .upstreamTimeout, .serviceUnavailable, .circuitOpen, .upstreamKeyUnavailable,
            .upstreamKeyMissing:
            return "upstream_error"
        case .loginBusy: return "server_error"
        case .internalError: return "server_error"
        case .storageQuotaExceeded: return "storage_quota_exceeded"
        }
    }

    /// Machine-readable `code`.
    public var code: String {
        switch self {
        case .invalidJSON: return "invalid_json"
        case .invalidRequest: return "invalid_request"
        case .invalidTenantID: return "invalid_tenant_id"
        case .systemPromptLocked: return "system_prompt_locked"
        case .unknownPrompt: return "unknown_prompt"
        case .missingAPIKey: return "missing_api_key"
        case .invalidAPIKey: return "invalid_api_key"
        case .keyExpired: return "key_expired"
        case .keyRevoked: return "key_revoked"
        case .invalidToken: return "invalid_token"
        case .missingProviderKey: return "missing_provider_key"
        case .upstreamKeyUnavailable: return "upstream_key_unavailable"
        case .upstreamKeyMissing: return "upstream_key_missing"
        case .loginBusy: return "login_busy"
        case .tenantMismatch: return "tenant_mismatch"
        case .featureDisabled: return "feature_disabled"
        case .policyBlocked: return "policy_blocked"
        case .modelNotAllowed: return "model_not_allowed"
        case .tenantNotFound: return "tenant_not_found"
        case .notFound, .missing: return "not_found"
        case .conflict: return "already_exists"
        case .quotaExceeded: return "quota_exceeded"
        case .storageQuotaExceeded: return "storage_quota_exceeded"
        case .methodNotAllowed: return "method_not_allowed"
        case .requestTooLarge: return "request_too_large"
        case .unsupportedMediaType: return "unsupported_media_type"
        case .rateLimited: return "rate_limit_exceeded"
        case .budgetExceeded, .budgetShort: return "budget_exceeded"
        case .concurrencyLimited: return "concurrency_limit_exceeded"
        case .upstreamError: return "upstream_error"
        case .circuitOpen: return "circuit_open"
        case .upstreamTimeout: return "upstream_timeout"
        case .serviceUnavailable: return "service_unavailable"
        case .internalError: return "internal_error"
        }
    }

    /// Human-readable message (never contains secrets or prompt text).
    public var message: String {
        switch self {
        case .invalidJSON(let why): return "Request body is not valid JSON: \(why)."
        case .invalidRequest(let why, _): return why
        case .invalidTenantID: return "Tenant id must match [a-z0-9][a-z0-9_-]{0,62}."
        case .systemPromptLocked:
            return "This tenant's system prompt is locked: requests may not carry system messages."
        case .unknownPrompt(let name): return "Unknown prompt template '\(name)'."
        case .missingAPIKey: return "No API key provided. Use 'Authorization: Bearer <key>' or 'x-api-key'."
        case .invalidAPIKey: return "Invalid API key."
        case .keyExpired: return "This API key has expired; ask for a new one."
        case .keyRevoked: return "This API key was revoked."
        case .invalidToken(let why): return "Invalid token: \(why)."
        case .missingProviderKey:
            return "This tenant uses its clients' own provider keys: send yours in the X-Provider-Key header."
        case .upstreamKeyUnavailable(let backend):
            return
                "The tenant's stored key for backend '\(backend)' cannot be opened (master key missing or wrong); the operator has been alerted."
        case .upstreamKeyMissing(let backend, let variable):
            return
                "Backend '\(backend)' has no key: \(variable) is not set where the gateway runs; the operator must set it (nothing was sent)."
        case .loginBusy: return "Too many logins are being checked right now; try again in a moment."
        case .tenantMismatch: return "The credential does not belong to this tenant."
        case .featureDisabled(let flag): return "Feature '\(flag)' is disabled for this tenant."
        case .policyBlocked(let policy, let message):
            return "Refused by policy '\(policy)'" + (message.map { ": \($0)" } ?? ".")
        case .modelNotAllowed(let model): return "Model '\(model)' is not available to this tenant."
        case .tenantNotFound: return "Unknown tenant."
        case .notFound: return "Not found."
        case .missing(let what): return "\(what) not found."
        case .conflict(let why), .quotaExceeded(let why), .storageQuotaExceeded(let why): return why
        case .methodNotAllowed: return "Method not allowed."
        case .requestTooLarge(let limit): return "Request body exceeds \(limit) bytes."
        case .unsupportedMediaType: return "Content-Type must be application/json."
        case .rateLimited(let limit, let retryAfter):
            return "Rate limit of \(limit) per minute exceeded; retry after \(retryAfter) s."
        case .budgetExceeded(let scope, let budget, let resetsAt):
            let (y, m, d) = CivilDate.from(days: Int(resetsAt / 86_400))
            let date = "\(y)-\(m < 10 ? "0" : "")\(m)-\(d < 10 ? "0" : "")\(d)"
            return
                "The \(scope == "global" ? "global" : "tenant's") \(budget) budget is exhausted; it resets at \(date)T00:00:00Z."
        case .budgetShort(_, _, let detail): return detail
        case .concurrencyLimited(let scope, let limit):
            return scope == "pool"
                ? "The gateway is at capacity (\(limit) model calls in flight); retry shortly."
                : "This tenant already has \(limit) requests in flight (limits.max_concurrent); retry when one ends."
        case .upstreamError(let why): return "Upstream error: \(why)."
        case .circuitOpen(let retryAfter):
            return "The backend is failing for this tenant (circuit open); retry after \(retryAfter) s."
        case .upstreamTimeout: return "The upstream did not answer in time."
        case .serviceUnavailable(let why): return "Service unavailable: \(why)."
        case .internalError: return "Internal error."
        }
    }

    /// Headers that belong with this error (`Retry-After`).
    public var headers: [(String, String)] {
        switch self {
        case .rateLimited(_, let retryAfter), .circuitOpen(let retryAfter): return [("Retry-After", String(retryAfter))]
        case .loginBusy, .concurrencyLimited: return [("Retry-After", "1")]
        default: return []
        }
    }

    /// The gateway error for a limiter refusal.
    public init(_ refusal: LimitRefusal) {
        switch refusal {
        case .rate(let limit, let retryAfter): self = .rateLimited(limit: limit, retryAfter: retryAfter)
        case .budget(let scope, let budget, let resetsAt):
            self = .budgetExceeded(scope: scope, budget: budget, resetsAt: resetsAt)
        }
    }

    /// The offending request parameter, if any.
    public var param: String? {
        if case .invalidRequest(_, let param) = self { return param }
        return nil
    }

    /// The OpenAI-shaped error body.
    public var body: JSONValue {
        .object([
            (
                "error",
                .object([
                    ("message", .string(message)),
                    ("type", .string(type)),
                    ("code", .string(code)),
                    ("param", param.map { .string($0) } ?? .null),
                ])
            )
        ])
    }
}
