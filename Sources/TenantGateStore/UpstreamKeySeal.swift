import TenantGateSystem

/// How a managed upstream key is sealed at rest: AES-256-GCM under the master key, with (tenant, backend)
/// as associated data, so a sealed row copied to another tenant or backend no longer opens.
///
/// Format 2: `0x02 ‖ nonce ‖ ciphertext ‖ tag`. Rows written before it (nonce first, no associated data)
/// are not bound to their tenant: a worker refuses them (fail closed), and every command that opens the
/// database with the master key at hand (`migrate`, `serve`, `config import`, …) re-seals them in format 2
/// first (`ConfigStore.resealLegacyUpstreamKeys`); `upstream-keys rotate-master` re-seals every row.
enum UpstreamKeySeal {
    static let version: UInt8 = 2

    static func aad(tenant: String, backend: String) -> [UInt8] {
        Array("tenantgate/upstream-key/v2\u{0}\(tenant)\u{0}\(backend)".utf8)
    }

    static func seal(_ plaintext: [UInt8], key: [UInt8], tenant: String, backend: String) throws -> [UInt8] {
        [version] + (try Crypto.seal(plaintext, key: key, aad: aad(tenant: tenant, backend: backend)))
    }

    /// Opens a row; `legacy`: also a row sealed before format 2 (only to re-seal it).
    static func open(_ sealed: [UInt8], key: [UInt8], tenant: String, backend: String, legacy: Bool = false) throws
        -> [UInt8]
    {
        if sealed.first == version,
            let plain = try? Crypto.open(
                Array(sealed.dropFirst()), key: key, aad: aad(tenant: tenant, backend: backend))
        {
            return plain
        }
        guard legacy else { throw UnboundSeal() }
        return try Crypto.open(sealed, key: key)  // a row sealed before format 2
    }

    /// A row that is not in format 2 for its (tenant, backend).
    struct UnboundSeal: Error {}
}
