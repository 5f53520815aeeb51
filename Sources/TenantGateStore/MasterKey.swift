import TenantGateSystem

/// The 256-bit key that seals upstream keys at rest: `TENANTGATE_MASTER_KEY` (64 hex digits) or the
/// file `master.key` next to the database (as `scripts/run` creates it, mode 0600).
public enum MasterKey {
    /// The master key, nil if none is configured; throws if one is configured but malformed.
    public static func load(dbPath: String) throws -> [UInt8]? {
        if let env = Posix.env("TENANTGATE_MASTER_KEY"), !env.isEmpty {
            return try parse(env, from: "TENANTGATE_MASTER_KEY")
        }
        let dir = dbPath.contains("/") ? String(dbPath[..<(dbPath.lastIndex(of: "/") ?? dbPath.endIndex)]) : "."
        return try file(dir + "/master.key")
    }

    /// Reads a key file (64 hex digits, surrounding whitespace ignored); nil if it does not exist.
    public static func file(_ path: String) throws -> [UInt8]? {
        guard let text = Posix.readFile(path, limit: 4096) else { return nil }
        return try parse(text, from: path)
    }

    static func parse(_ text: String, from source: String) throws -> [UInt8] {
        let hex = text.filter { !$0.isWhitespace }
        guard hex.count == 64, let key = Crypto.unhex(hex) else {
            throw StoreError.invalid("\(source) must hold 64 hex digits (a 256-bit key)")
        }
        return key
    }
}
