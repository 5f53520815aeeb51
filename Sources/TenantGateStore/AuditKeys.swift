import TenantGateSystem

/// The keys a writer opened for the audit chains: the master key read once per database (read again
/// after a failure: a rotation), the audit key decrypted once per sealed form and master key. One per
/// `SharedWriter` (a worker's write connection), so the settlement of a captured request reads no file and
/// decrypts nothing; the admin page and the CLI make one per use.
public final class AuditKeys: Sendable {
    private let masterKeys = Locked<[String: [UInt8]?]>([:])
    private let openedKeys = Locked<[[UInt8]: [UInt8]]>([:])

    public init() {}

    /// The master key for the database at `path`, read on first use.
    func masterKey(for path: String) throws -> [UInt8]? {
        if let known = masterKeys.withLock({ $0[path] }) { return known }
        let key = try MasterKey.load(dbPath: path)
        masterKeys.withLock { $0[path] = key }
        return key
    }

    /// Forgets the master key read for `path` (it is read again next time).
    func forgetMasterKey(for path: String) { _ = masterKeys.withLock { $0.removeValue(forKey: path) } }

    /// The audit key `sealed` under `masterKey`, opened by `open` on first use (at most 16 kept).
    func opened(_ sealed: [UInt8], under masterKey: [UInt8], open: () throws -> [UInt8]) throws -> [UInt8] {
        let id = Crypto.sha256(sealed + masterKey)
        if let known = openedKeys.withLock({ $0[id] }) { return known }
        let key = try open()
        openedKeys.withLock {
            if $0.count > 16 { $0.removeAll() }
            $0[id] = key
        }
        return key
    }
}
