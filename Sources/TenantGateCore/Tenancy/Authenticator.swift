/// Hashing and comparison the authenticator needs; implemented over OpenSSL by the system layer.
public protocol KeyHasher: Sendable {
    /// SHA-256 of the key's UTF-8 bytes.
    func hash(_ key: String) -> [UInt8]
    /// Compares in time independent of where the bytes differ.
    func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool
}

/// What the request offers for tenant resolution and authentication.
public struct ResolutionInput: Sendable {
    /// `<id>` of `/tenant/<id>/`, as nginx passed it.
    public var pathTenant: String?
    /// The `X-Tenant-ID` header.
    public var headerTenant: String?
    /// `Authorization: Bearer …` or `x-api-key`.
    public var credential: String?
    /// `X-Provider-Key`: a BYOK tenant's client's own provider key.
    public var providerKey: String?

    /// Creates an input.
    public init(pathTenant: String?, headerTenant: String?, credential: String?, providerKey: String? = nil) {
        self.pathTenant = pathTenant
        self.headerTenant = headerTenant
        self.credential = credential
        self.providerKey = providerKey
    }
}

/// The outcome: the tenant and the key that authenticated the request.
public struct Principal: Sendable {
    public let tenant: TenantConfig
    /// The gateway key, or for a JWT a record with id `jwt` and no secret.
    public let key: APIKeyRecord
    /// The JWT's `sub`, when a JWT authenticated the request.
    public var subject: String? = nil
    /// BYOK: the client's own provider key (`X-Provider-Key`), forwarded upstream instead of a managed one.
    /// Only for tenants with `auth_passthrough`, and only ever sent to the backend of the model asked for.
    public var passthrough: Secret? = nil

    /// The BYOK key, required for model calls of an `auth_passthrough` tenant (nil for other tenants).
    public func requireProviderKey() throws(GatewayError) -> Secret? {
        guard tenant.authPassthrough else { return nil }
        guard let passthrough else { throw GatewayError.missingProviderKey }
        return passthrough
    }
}

/// A configured JWT check: settings plus the verifier that holds the key.
public struct JWTCheck: Sendable {
    public let settings: JWTSettings
    public let verifier: any JWTSignatureVerifier

    /// Creates a check.
    public init(settings: JWTSettings, verifier: any JWTSignatureVerifier) {
        self.settings = settings
        self.verifier = verifier
    }
}

/// Resolves the tenant in the configured order and authenticates the credential against it.
public struct Authenticator: Sendable {
    private let hasher: any KeyHasher

    /// Creates an authenticator.
    public init(hasher: any KeyHasher) { self.hasher = hasher }

    /// Validates ids, finds the key, resolves the tenant and checks they agree.
    public func authenticate(
        _ input: ResolutionInput, config: GatewayConfig, jwt: JWTCheck? = nil, now: Int64
    ) throws(GatewayError) -> Principal {
        let pathID = try input.pathTenant.map(Authenticator.tenantID)
        let headerID = try input.headerTenant.map(Authenticator.tenantID)
        guard let credential = input.credential, !credential.isEmpty else { throw GatewayError.missingAPIKey }
        var subject: String?
        var jwtTenant: TenantID?
        let key: APIKeyRecord
        if !credential.hasPrefix("tg_") && JWT.looksLikeJWT(credential) {
            guard let jwt else { throw GatewayError.invalidToken("JWT authentication is not configured") }
            let claims = try JWT.verify(credential, settings: jwt.settings, verifier: jwt.verifier, now: now)
            guard let tid = TenantID(claims.tenant) else { throw GatewayError.invalidToken("invalid tenant claim") }
            jwtTenant = tid
            subject = claims.subject
            key = APIKeyRecord(id: "jwt", tenant: tid, lookupPrefix: "", hash: [])
        } else {
            key = try findKey(credential, config: config)
            try key.checkUsable(now: now)
        }

        var resolved: TenantID?
        var claimed: [TenantID] = []
        for source in config.resolution {
            let candidate: TenantID?
            switch source {
            case .path: candidate = pathID
            case .header: candidate = headerID
            case .apiKey: candidate = jwtTenant == nil ? key.tenant : nil
            case .jwt: candidate = jwtTenant
            }
            if let candidate {
                claimed.append(candidate)
                if resolved == nil { resolved = candidate }
            }
        }
        guard let tenantID = resolved ?? config.defaultTenant else { throw GatewayError.tenantNotFound }
        guard let tenant = config.tenants[tenantID.rawValue] else { throw GatewayError.tenantNotFound }
        // Every source that named a tenant must agree, and the key must belong to it.
        guard key.tenant == tenantID, claimed.allSatisfy({ $0 == tenantID }) else { throw GatewayError.tenantMismatch }
        var principal = Principal(tenant: tenant.narrowed(to: key.models), key: key, subject: subject)
        // BYOK rides beside the gateway credential, never instead of it: a provider key alone reaches nothing.
        if tenant.authPassthrough, let provided = input.providerKey, !provided.isEmpty {
            guard provided.utf8.count <= 1024, Bounds.isPrintableASCII(provided), !provided.contains(" ") else {
                throw GatewayError.invalidRequest(
                    "X-Provider-Key must be printable ASCII without spaces, at most 1024 bytes.", param: nil)
            }
            principal.passthrough = Secret(provided)
        }
        return principal
    }

    private static func tenantID(_ raw: String) throws(GatewayError) -> TenantID {
        guard let id = TenantID(raw) else { throw GatewayError.invalidTenantID }
        return id
    }

    private func findKey(_ credential: String, config: GatewayConfig) throws(GatewayError) -> APIKeyRecord {
        guard credential.hasPrefix("tg_"), credential.utf8.count >= APIKeyRecord.prefixLength,
            credential.utf8.count <= 256
        else {
            if credential.split(separator: ".").count == 3 {
                throw GatewayError.invalidToken("JWT authentication is not configured")
            }
            throw GatewayError.invalidAPIKey
        }
        let prefix = String(credential.prefix(APIKeyRecord.prefixLength))
        let digest = hasher.hash(credential)
        var match: APIKeyRecord?
        for record in config.keys[prefix] ?? [] where hasher.constantTimeEqual(record.hash, digest) {
            match = record
        }
        guard let match else { throw GatewayError.invalidAPIKey }
        return match
    }
}
