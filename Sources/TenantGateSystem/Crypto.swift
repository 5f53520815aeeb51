import COpenSSL

/// A failure inside OpenSSL (bad key length, tampered ciphertext, no randomness).
public struct OpenSSLError: Error, CustomStringConvertible, Sendable {
    /// What failed.
    public let operation: String
    public var description: String { "openssl: \(operation) failed" }
}

/// Hashes, MACs, randomness, constant-time comparison and AES-256-GCM over OpenSSL 3.
public enum Crypto {
    /// SHA-256 of `bytes`.
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        // Both buffers outlive the call; SHA256 writes exactly 32 bytes.
        bytes.withUnsafeBufferPointer { input in
            digest.withUnsafeMutableBufferPointer { out in
                _ = SHA256(input.baseAddress, input.count, out.baseAddress)
            }
        }
        return digest
    }

    /// SHA-256 of the UTF-8 bytes of `string`, as lowercase hex.
    public static func sha256Hex(_ string: String) -> String {
        hex(sha256(Array(string.utf8)))
    }

    /// HMAC-SHA256 of `message` under `key`.
    public static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 32
        // All buffers outlive the call; HMAC writes at most EVP_MAX_MD_SIZE (32 for SHA-256).
        key.withUnsafeBufferPointer { k in
            message.withUnsafeBufferPointer { m in
                out.withUnsafeMutableBufferPointer { o in
                    _ = HMAC(
                        EVP_sha256(), k.baseAddress, Int32(k.count), m.baseAddress, m.count, o.baseAddress, &length)
                }
            }
        }
        return out
    }

    /// `count` cryptographically secure random bytes.
    public static func randomBytes(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        // RAND_bytes fills exactly `count` bytes of the buffer.
        let ok = bytes.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        guard ok == 1 else { throw OpenSSLError(operation: "RAND_bytes") }
        return bytes
    }

    /// PBKDF2-HMAC-SHA256 of `password` with `salt`, `iterations` rounds, `length` bytes of output.
    public static func pbkdf2SHA256(password: [UInt8], salt: [UInt8], iterations: Int, length: Int = 32) throws
        -> [UInt8]
    {
        var out = [UInt8](repeating: 0, count: length)
        // Every buffer is passed with its own length; OpenSSL writes exactly `length` bytes.
        let ok = password.withUnsafeBufferPointer { pw in
            salt.withUnsafeBufferPointer { sa in
                out.withUnsafeMutableBufferPointer { o in
                    pw.withMemoryRebound(to: CChar.self) { pwc in
                        PKCS5_PBKDF2_HMAC(
                            pwc.baseAddress, Int32(pw.count), sa.baseAddress, Int32(sa.count), Int32(iterations),
                            EVP_sha256(), Int32(length), o.baseAddress)
                    }
                }
            }
        }
        guard ok == 1 else { throw OpenSSLError(operation: "PKCS5_PBKDF2_HMAC") }
        return out
    }

    /// Compares two byte strings in time that depends only on their lengths.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Lowercase hex of `bytes`.
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = hexDigits
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Bytes of a hex string, or nil if it is not hex.
    public static func unhex(_ string: String) -> [UInt8]? {
        let chars = Array(string.utf8)
        guard chars.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 97...102: return c - 87
            case 65...70: return c - 55
            default: return nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    /// AES-256-GCM encryption: returns nonce (12) ‖ ciphertext ‖ tag (16). `aad` is authenticated, not
    /// stored: `open` must be given the same bytes.
    public static func seal(_ plaintext: [UInt8], key: [UInt8], aad: [UInt8] = []) throws -> [UInt8] {
        guard key.count == 32 else { throw OpenSSLError(operation: "aes key length") }
        let nonce = try randomBytes(12)
        guard let ctx = EVP_CIPHER_CTX_new() else { throw OpenSSLError(operation: "EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        var out = [UInt8](repeating: 0, count: plaintext.count + 16)
        var tag = [UInt8](repeating: 0, count: 16)
        var len: Int32 = 0
        var total: Int32 = 0
        // Every buffer passed below is alive and large enough for the bytes GCM writes (no padding).
        guard EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nil, nil, nil) == 1,
            tg_evp_gcm_set_ivlen(ctx, 12) == 1,
            EVP_EncryptInit_ex(ctx, nil, nil, key, nonce) == 1,
            aad.isEmpty || EVP_EncryptUpdate(ctx, nil, &len, aad, Int32(aad.count)) == 1,
            out.withUnsafeMutableBufferPointer({
                EVP_EncryptUpdate(ctx, $0.baseAddress, &len, plaintext, Int32(plaintext.count))
            }) == 1
        else { throw OpenSSLError(operation: "aes-gcm encrypt") }
        total = len
        guard
            out.withUnsafeMutableBufferPointer({
                EVP_EncryptFinal_ex(ctx, $0.baseAddress.map { $0 + Int(total) }, &len)
            })
                == 1,
            tag.withUnsafeMutableBytes({ tg_evp_gcm_get_tag(ctx, 16, $0.baseAddress) }) == 1
        else { throw OpenSSLError(operation: "aes-gcm finalize") }
        total += len
        return nonce + out[0..<Int(total)] + tag
    }

    /// AES-256-GCM decryption of `seal`'s output; throws on a wrong key or tampered data.
    public static func open(_ sealed: [UInt8], key: [UInt8], aad: [UInt8] = []) throws -> [UInt8] {
        guard key.count == 32, sealed.count >= 28 else { throw OpenSSLError(operation: "aes-gcm input") }
        let nonce = Array(sealed[0..<12])
        let body = Array(sealed[12..<(sealed.count - 16)])
        var tag = Array(sealed[(sealed.count - 16)...])
        guard let ctx = EVP_CIPHER_CTX_new() else { throw OpenSSLError(operation: "EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        var out = [UInt8](repeating: 0, count: body.count + 16)
        var len: Int32 = 0
        // Buffers are alive for each call and sized for GCM output (same length as input).
        guard EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nil, nil, nil) == 1,
            tg_evp_gcm_set_ivlen(ctx, 12) == 1,
            EVP_DecryptInit_ex(ctx, nil, nil, key, nonce) == 1,
            aad.isEmpty || EVP_DecryptUpdate(ctx, nil, &len, aad, Int32(aad.count)) == 1,
            out.withUnsafeMutableBufferPointer({
                EVP_DecryptUpdate(ctx, $0.baseAddress, &len, body, Int32(body.count))
            }) == 1,
            tag.withUnsafeMutableBytes({ tg_evp_gcm_set_tag(ctx, 16, $0.baseAddress) }) == 1
        else { throw OpenSSLError(operation: "aes-gcm decrypt") }
        let total = len
        guard
            out.withUnsafeMutableBufferPointer({
                EVP_DecryptFinal_ex(ctx, $0.baseAddress.map { $0 + Int(total) }, &len)
            })
                == 1
        else { throw OpenSSLError(operation: "aes-gcm authentication") }
        return Array(out[0..<Int(total + len)])
    }
}
