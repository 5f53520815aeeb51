import COpenSSL

/// Verifies JWT signatures with OpenSSL: HMAC-SHA256 with a secret, or RSA / P-256 ECDSA with a PEM
/// public key. The key type must match the configured algorithm, so an HS256 token "signed" with the
/// RSA public key (algorithm confusion) can never verify.
public final class JWTKey: @unchecked Sendable {  // immutable after init
    /// `HS256`, `RS256` or `ES256`.
    public let algorithm: String
    private let secret: [UInt8]
    private let key: OpaquePointer?

    /// HS256 with `secret`.
    public init(secret: [UInt8]) {
        algorithm = "HS256"
        self.secret = secret
        key = nil
    }

    /// RS256 or ES256 with a PEM `SubjectPublicKeyInfo`; throws if the key does not fit the algorithm.
    public init(algorithm: String, publicKeyPEM: String) throws {
        self.algorithm = algorithm
        secret = []
        let bytes = Array(publicKeyPEM.utf8)
        // The BIO reads the array only inside this closure; the parsed key is owned by us afterwards.
        let parsed: OpaquePointer? = bytes.withUnsafeBytes { buf in
            guard let bio = BIO_new_mem_buf(buf.baseAddress, Int32(buf.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PUBKEY(bio, nil, nil, nil)
        }
        guard let parsed else { throw OpenSSLError(operation: "PEM public key") }
        let type = EVP_PKEY_get_base_id(parsed)
        guard (algorithm == "RS256" && type == EVP_PKEY_RSA) || (algorithm == "ES256" && type == EVP_PKEY_EC) else {
            EVP_PKEY_free(parsed)
            throw OpenSSLError(operation: "public key type for \(algorithm)")
        }
        key = parsed
    }

    deinit { if let key { EVP_PKEY_free(key) } }

    /// Whether `signature` signs `signingInput` with this key under `algorithm` (which must be the key's).
    public func verify(_ algorithm: String, signingInput: [UInt8], signature: [UInt8]) -> Bool {
        guard algorithm == self.algorithm else { return false }
        switch algorithm {
        case "HS256":
            guard !secret.isEmpty else { return false }
            return Crypto.constantTimeEqual(Crypto.hmacSHA256(key: secret, message: signingInput), signature)
        case "RS256":
            return digestVerify(signingInput, signature)
        case "ES256":
            guard signature.count == 64 else { return false }
            var der = [UInt8](repeating: 0, count: 80)
            // Both buffers are alive for the call; the shim writes at most 80 bytes.
            let n = signature.withUnsafeBufferPointer { raw in
                der.withUnsafeMutableBufferPointer { tg_ecdsa_raw_to_der(raw.baseAddress, $0.baseAddress, 80) }
            }
            guard n > 0 else { return false }
            return digestVerify(signingInput, Array(der[0..<Int(n)]))
        default:
            return false
        }
    }

    private func digestVerify(_ data: [UInt8], _ signature: [UInt8]) -> Bool {
        guard let key, let ctx = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestVerifyInit(ctx, nil, EVP_sha256(), nil, key) == 1 else { return false }
        // Buffers are alive for the call; OpenSSL only reads them.
        return EVP_DigestVerify(ctx, signature, signature.count, data, data.count) == 1
    }
}
