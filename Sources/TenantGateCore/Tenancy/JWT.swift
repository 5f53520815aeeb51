/// The JWT algorithms the gateway accepts; anything else (including `none`) is refused.
public enum JWTAlgorithm: String, Sendable {
    case hs256 = "HS256"
    case rs256 = "RS256"
    case es256 = "ES256"
}

/// Signature checks the JWT verifier needs; implemented over OpenSSL by the system layer.
public protocol JWTSignatureVerifier: Sendable {
    /// Whether `signature` signs `signingInput` under the configured key for `algorithm`.
    func verify(_ algorithm: JWTAlgorithm, signingInput: [UInt8], signature: [UInt8]) -> Bool
}

/// JWT settings from the configuration (`jwt:`), with the key material already loaded.
public struct JWTSettings: Sendable {
    /// The one algorithm tokens must use (no algorithm switching: prevents confusion attacks).
    public let algorithm: JWTAlgorithm
    /// The claim that names the tenant (default `tenant_id`).
    public let tenantClaim: String
    /// Seconds of clock skew allowed for `exp`, `nbf` and `iat`.
    public let leewaySeconds: Int64
    /// The `iss` every token must carry, when configured.
    public let issuer: String?
    /// The value `aud` must be (or contain), when configured.
    public let audience: String?

    /// Creates settings.
    public init(
        algorithm: JWTAlgorithm, tenantClaim: String, leewaySeconds: Int64 = 30, issuer: String? = nil,
        audience: String? = nil
    ) {
        self.algorithm = algorithm
        self.tenantClaim = tenantClaim
        self.leewaySeconds = leewaySeconds
        self.issuer = issuer
        self.audience = audience
    }
}

/// The claims of a verified token.
public struct JWTClaims: Sendable, Equatable {
    public let tenant: String
    public let subject: String
    public let expiresAt: Int64
}

/// Decodes and verifies compact JWS tokens (`header.payload.signature`).
public enum JWT {
    /// Whether `credential` looks like a JWT (three base64url parts).
    public static func looksLikeJWT(_ credential: String) -> Bool {
        let parts = credential.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 3 && parts[0].first == "e"
    }

    /// Verifies signature, algorithm and time claims; returns the tenant and subject.
    public static func verify(
        _ token: String, settings: JWTSettings, verifier: any JWTSignatureVerifier, now: Int64
    ) throws(GatewayError) -> JWTClaims {
        guard token.utf8.count <= 8192 else { throw GatewayError.invalidToken("token too long") }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let headerBytes = base64URLDecode(parts[0]),
            let payloadBytes = base64URLDecode(parts[1]), let signature = base64URLDecode(parts[2])
        else { throw GatewayError.invalidToken("malformed token") }
        guard let header = try? JSONParser.parse(headerBytes), let payload = try? JSONParser.parse(payloadBytes),
            case .object = header, case .object = payload
        else { throw GatewayError.invalidToken("malformed token") }
        guard let alg = header["alg"]?.stringValue else { throw GatewayError.invalidToken("missing alg") }
        guard alg == settings.algorithm.rawValue else {
            throw GatewayError.invalidToken("algorithm \(alg.prefix(16)) is not accepted")
        }
        if header["crit"] != nil { throw GatewayError.invalidToken("unsupported critical header") }
        let signingInput = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
        guard !signature.isEmpty,
            verifier.verify(settings.algorithm, signingInput: signingInput, signature: signature)
        else { throw GatewayError.invalidToken("bad signature") }
        guard let exp = payload["exp"]?.intValue.map(Int64.init) else { throw GatewayError.invalidToken("missing exp") }
        // Claims are client-controlled numbers: compared with saturating sums (exp near Int64.max must not trap).
        let leeway = max(0, settings.leewaySeconds)
        guard now < exp.saturatingAdd(leeway) else { throw GatewayError.invalidToken("token expired") }
        if let nbf = payload["nbf"] {
            guard let v = nbf.intValue.map(Int64.init), now.saturatingAdd(leeway) >= v else {
                throw GatewayError.invalidToken("token not yet valid")
            }
        }
        if let iat = payload["iat"] {
            guard let v = iat.intValue.map(Int64.init), v <= now.saturatingAdd(leeway) else {
                throw GatewayError.invalidToken("token issued in the future")
            }
        }
        if let issuer = settings.issuer, payload["iss"]?.stringValue != issuer {
            throw GatewayError.invalidToken("wrong or missing issuer")
        }
        if let audience = settings.audience {
            let listed: [String]
            switch payload["aud"] {
            case .string(let one)?: listed = [one]
            case .array(let many)?: listed = many.compactMap(\.stringValue)
            default: listed = []
            }
            guard listed.contains(audience) else { throw GatewayError.invalidToken("wrong or missing audience") }
        }
        guard let tenant = payload[settings.tenantClaim]?.stringValue else {
            throw GatewayError.invalidToken("missing \(settings.tenantClaim) claim")
        }
        guard let subject = payload["sub"]?.stringValue, !subject.isEmpty, subject.utf8.count <= 256 else {
            throw GatewayError.invalidToken("missing sub claim")
        }
        return JWTClaims(tenant: tenant, subject: subject, expiresAt: exp)
    }

    /// Decodes unpadded base64url; nil on any other character.
    public static func base64URLDecode<S: StringProtocol>(_ text: S) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count * 3 / 4)
        var buffer: UInt32 = 0
        var bits = 0
        for c in text.utf8 {
            let v: UInt8
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = c - UInt8(ascii: "A")
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = c - UInt8(ascii: "a") + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = c - UInt8(ascii: "0") + 52
            case UInt8(ascii: "-"): v = 62
            case UInt8(ascii: "_"): v = 63
            default: return nil
            }
            buffer = buffer << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((buffer >> UInt32(bits)) & 0xFF))
            }
        }
        if bits >= 6 { return nil }  // a single leftover character cannot encode a byte
        return out
    }

    /// Encodes unpadded base64url.
    public static func base64URLEncode(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            let chunk = bytes[i..<min(i + 3, bytes.count)]
            var n: UInt32 = 0
            for (k, b) in chunk.enumerated() { n |= UInt32(b) << UInt32(16 - 8 * k) }
            for k in 0..<(chunk.count + 1) { out.append(alphabet[Int((n >> UInt32(18 - 6 * k)) & 63)]) }
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}
