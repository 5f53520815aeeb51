/// Feature flags: defaults plus tenant overrides, each on, off or a rollout percentage decided
/// deterministically per end user (so a user does not flip between requests).
public enum FeatureFlags {
    /// The gates the gateway itself enforces, with their values when nothing is configured.
    public static let builtins: [String: Bool] = [
        "streaming": true, "embeddings": true, "messages_api": true, "tools": true, "documents": true,
        "responses_api": true,
        "semantic_cache": false,
    ]

    /// Whether `flag` is on for `subject` (end user, else key id) of `tenant`.
    public static func isOn(_ flag: String, tenant: TenantConfig, subject: String) -> Bool {
        guard let value = tenant.effective["features"]?[flag] else { return builtins[flag] ?? false }
        if let b = value.boolValue { return b }
        guard let pct = value.intValue else { return builtins[flag] ?? false }
        return bucket(tenant: tenant.id.rawValue, flag: flag, subject: subject) < pct
    }

    /// Every flag the tenant can see (built-ins and its own), evaluated for `subject`.
    public static func all(tenant: TenantConfig, subject: String) -> [(String, Bool)] {
        var names = Set(builtins.keys)
        for (name, _) in tenant.effective["features"]?.objectValue ?? [] { names.insert(name) }
        return names.sorted().map { ($0, isOn($0, tenant: tenant, subject: subject)) }
    }

    /// A stable bucket 0–99 for (tenant, flag, subject): FNV-1a 64 with a final avalanche.
    public static func bucket(tenant: String, flag: String, subject: String) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in "\(tenant)\u{0}\(flag)\u{0}\(subject)".utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01B3
        }
        hash ^= hash >> 33
        hash &*= 0xff51_afd7_ed55_8ccd
        hash ^= hash >> 33
        return Int(hash % 100)
    }
}
