import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// SHA-256 and constant-time comparison for the authenticator, over OpenSSL.
struct OpenSSLKeyHasher: KeyHasher {
    func hash(_ key: String) -> [UInt8] { Crypto.sha256(Array(key.utf8)) }
    func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool { Crypto.constantTimeEqual(a, b) }
}

/// JWT signature checks for the authenticator, over OpenSSL.
public struct OpenSSLJWTVerifier: JWTSignatureVerifier {
    let key: JWTKey

    public init(key: JWTKey) { self.key = key }

    public func verify(_ algorithm: JWTAlgorithm, signingInput: [UInt8], signature: [UInt8]) -> Bool {
        key.verify(algorithm.rawValue, signingInput: signingInput, signature: signature)
    }
}
