import TenantGateCore
import TenantGateSystem

/// Reads and writes the configuration tables and keys of one connection.
public struct ConfigStore {
    private let db: any SQLConnection

    /// Wraps a connection.
    public init(_ db: any SQLConnection) { self.db = db }

    /// The channel the configuration-version trigger notifies on PostgreSQL.
    public static let changeChannel = "tenantgate_config"

    /// Waits up to `timeoutMs` for a configuration change: on PostgreSQL until the version trigger's
    /// notification arrives (`LISTEN`, at commit; true then), on SQLite simply that long (the caller
    /// then reads `version()`, which stays the check on both: a lost notification costs one interval).
    @discardableResult
    public static func awaitChange(_ db: any SQLConnection, timeoutMs: Int) throws -> Bool {
        guard let postgres = db as? PostgresConnection else {
            Posix.sleepMs(timeoutMs)
            return false
        }
        try postgres.listen(changeChannel)
        return !(try postgres.notifications(timeoutMs: Int32(clamping: timeoutMs))).isEmpty
    }

    /// The config version counter (bumped by triggers on every config or key change).
    public func version() throws -> Int64 {
        try db.statement("SELECT value FROM meta WHERE key = 'config_version'").all().first?.first?.int ?? 0
    }

    /// The stored configuration.
    public func loadState() throws -> ConfigState {
        var state = ConfigState()
        func load(_ sql: String) throws -> [String: JSONValue] {
            var out: [String: JSONValue] = [:]
            for row in try db.statement(sql).all() {
                guard let name = row[0].text, let text = row[1].text else { continue }
                out[name] = try JSONParser.parse(text)
            }
            return out
        }
        state.settings = try load("SELECT key, json FROM settings")
        state.backends = try load("SELECT name, json FROM backends")
        state.models = try load("SELECT name, json FROM models")
        state.tenants = try load("SELECT id, json FROM tenants")
        return state
    }

    /// Writes `next` over `current` (only what differs), inside the caller's transaction.
    public func write(_ next: ConfigState, over current: ConfigState, now: Int64) throws {
        try sync("settings", "key", current.settings, next.settings)
        try sync("backends", "name", current.backends, next.backends)
        try sync("models", "name", current.models, next.models)
        for (id, json) in next.tenants where current.tenants[id] != json {
            try db.statement(
                """
                INSERT INTO tenants(id, json, created_at, updated_at) VALUES (?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET json = excluded.json, updated_at = excluded.updated_at
                """
            ).run([.text(id), .text(json.jsonString), .int(now), .int(now)])
        }
        for (id, json) in next.tenants {
            try recordPromptVersions(tenant: id, old: current.tenants[id], new: json, now: now)
        }
        for id in current.tenants.keys where next.tenants[id] == nil {
            try db.statement("DELETE FROM tenants WHERE id = ?").run([.text(id)])
            // Its cache goes with it: a tenant created again under the id starts empty.
            try db.statement("DELETE FROM cache_entries WHERE tenant = ?").run([.text(id)])
            try db.statement("DELETE FROM cache_usage WHERE tenant = ?").run([.text(id)])
            try db.statement("DELETE FROM cache_vectors WHERE tenant = ?").run([.text(id)])
            // So do its document collections (documents, chunks and each collection's index).
            if let documents = DocumentStore.of(db) {
                try documents.deleteTenant(id)
            } else {
                // Document search is SQLite's (FTS5): elsewhere only the rows exist (chunks cascade).
                try db.statement("DELETE FROM doc_collections WHERE tenant = ?").run([.text(id)])
            }
            try ResponseStore(db).deleteTenant(id)
            // A deleted tenant's keys are revoked, so recreating the id does not revive them.
            try db.statement("UPDATE api_keys SET revoked_at = ? WHERE tenant_id = ? AND revoked_at IS NULL")
                .run([.int(now), .text(id)])
        }
    }

    private func sync(_ table: String, _ keyColumn: String, _ current: [String: JSONValue], _ next: [String: JSONValue])
        throws
    {
        for (name, json) in next where current[name] != json {
            try db.statement(
                "INSERT INTO \(table)(\(keyColumn), json) VALUES (?, ?) ON CONFLICT(\(keyColumn)) DO UPDATE SET json = excluded.json"
            ).run([.text(name), .text(json.jsonString)])
        }
        for name in current.keys where next[name] == nil {
            try db.statement("DELETE FROM \(table) WHERE \(keyColumn) = ?").run([.text(name)])
        }
    }

    /// The templates of a tenant document by name (`default` is `system_prompt`).
    static func templates(_ tenant: JSONValue?) -> [String: String] {
        var out: [String: String] = [:]
        if let text = tenant?["system_prompt"]?.stringValue { out["default"] = text }
        for (name, value) in tenant?["prompts"]?.objectValue ?? [] { out[name] = value.stringValue }
        return out
    }

    private func recordPromptVersions(tenant: String, old: JSONValue?, new: JSONValue, now: Int64) throws {
        let before = ConfigStore.templates(old)
        for (name, text) in ConfigStore.templates(new) where before[name] != text {
            try db.statement(
                """
                INSERT INTO prompt_versions(tenant_id, name, version, template, created_at)
                SELECT ?1, ?2, COALESCE(MAX(version), 0) + 1, ?3, ?4 FROM prompt_versions
                WHERE tenant_id = ?1 AND name = ?2
                """
            ).run([.text(tenant), .text(name), .text(text), .int(now)])
        }
    }

    /// The current version number of every template: tenant → name → version.
    public func promptVersions() throws -> [String: [String: Int]] {
        var out: [String: [String: Int]] = [:]
        let rows = try db.statement("SELECT tenant_id, name, MAX(version) FROM prompt_versions GROUP BY 1, 2").all()
        for row in rows {
            guard let tenant = row[0].text, let name = row[1].text, let version = row[2].int else { continue }
            out[tenant, default: [:]][name] = Int(version)
        }
        return out
    }

    /// Saved versions of one template, newest first: (version, created_at, template).
    public func promptHistory(tenant: String, name: String) throws -> [(
        version: Int, createdAt: Int64, template: String
    )] {
        try db.statement(
            "SELECT version, created_at, template FROM prompt_versions WHERE tenant_id = ? AND name = ? ORDER BY version DESC"
        ).all([.text(tenant), .text(name)]).map { (Int($0[0].int ?? 0), $0[1].int ?? 0, $0[2].text ?? "") }
    }

    /// Validates `next` as a whole and writes it atomically; nothing is written if it is invalid.
    /// `written(before, after)` runs in the same transaction (an audit entry commits with its change).
    public func apply(
        masterKey: [UInt8]? = nil, _ change: (ConfigState) throws -> ConfigState,
        written: ((ConfigState, ConfigState) throws -> Void)? = nil
    ) throws {
        try db.transaction {
            let current = try loadState()
            let next = try sealUpstreamKeys(try change(current), masterKey: masterKey)
            _ = try GatewayConfig(state: next, keys: [], version: 0)
            try ConfigStore.checkPatterns(next, except: ConfigStore.patterns(current))
            try write(next, over: current, now: Posix.wallMicros() / 1_000_000)
            try written?(current, next)
        }
    }

    /// Every tenant pattern compiles and stays within PCRE2's limits on adversarial input (a pattern that
    /// could run away is refused here, when it is saved, never when traffic meets it).
    /// Patterns already stored (`except`) are not probed again: a change elsewhere is never refused
    /// because of a pattern it did not touch, nor slowed by probing them all.
    public static func checkPatterns(_ state: ConfigState, except: Set<String> = []) throws(ConfigError) {
        for (path, list) in policyLists(state) {
            for (i, rule) in (list?.arrayValue ?? []).enumerated() {
                guard let pattern = rule["pattern"]?.stringValue, !except.contains(pattern) else { continue }
                do {
                    try Regex.validate(pattern)
                } catch {
                    throw ConfigError(path: "\(path)[\(i)].pattern", message: "\(error)", line: nil)
                }
            }
        }
    }

    /// Every tenant pattern of `state`.
    static func patterns(_ state: ConfigState) -> Set<String> {
        Set(policyLists(state).flatMap { $0.1?.arrayValue ?? [] }.compactMap { $0["pattern"]?.stringValue })
    }

    /// The policy lists of `state` with their paths: the defaults', then each tenant's.
    private static func policyLists(_ state: ConfigState) -> [(String, JSONValue?)] {
        var lists: [(String, JSONValue?)] = [("defaults.policies", state.settings["defaults"]?["policies"])]
        for (id, json) in state.tenants.sorted(by: { $0.key < $1.key }) {
            lists.append(("tenants.\(id).policies", json["policies"]))
        }
        return lists
    }

    /// How long a revoked key (or a rotated key's previous secret, past its grace) is still recognised, to
    /// answer `key_revoked` or `key_expired` instead of `invalid_api_key`; after that it is forgotten, so
    /// the keys a worker holds stay bounded by the live ones.
    public static let recognisedForSeconds: Int64 = 30 * 86_400
    /// At most this many revoked keys are recognised (the latest revoked), whatever the churn: a worker's
    /// snapshot stays bounded by the live keys plus this.
    public static let recognisedRevokedKeys = 10_000

    /// The keys the request path knows: active ones, and those revoked or rotated lately (refused with
    /// the code that says why). A rotated key has two records, its previous secret expiring with its grace.
    public func activeKeys() throws -> [APIKeyRecord] {
        let since = Posix.wallMicros() / 1_000_000 - ConfigStore.recognisedForSeconds
        var out: [APIKeyRecord] = []
        let columns = "id, tenant_id, prefix, hash, models, expires_at, revoked_at, prev_prefix, prev_hash, prev_until"
        let active = try db.statement("SELECT \(columns) FROM api_keys WHERE revoked_at IS NULL").all()
        let revoked = try db.statement(
            "SELECT \(columns) FROM api_keys WHERE revoked_at > ? ORDER BY revoked_at DESC, id LIMIT ?"
        ).all([.int(since), .int(Int64(ConfigStore.recognisedRevokedKeys))])
        (active + revoked).forEach { row in
            guard let id = row[0].text, let tenant = row[1].text.flatMap(TenantID.init), let prefix = row[2].text,
                let hash = row[3].blob
            else { return }
            let key = APIKeyRecord(
                id: id, tenant: tenant, lookupPrefix: prefix, hash: hash, models: KeySettings.models(row[4]),
                expiresAt: row[5].int, revokedAt: row[6].int)
            out.append(key)
            if let previousPrefix = row[7].text, let previousHash = row[8].blob, let until = row[9].int, until > since {
                let previous = APIKeyRecord(
                    id: id, tenant: tenant, lookupPrefix: previousPrefix, hash: previousHash, models: key.models,
                    expiresAt: min(until, key.expiresAt ?? until), revokedAt: key.revokedAt)
                out.append(previous)
            }
        }
        return out
    }

    /// A full snapshot for the request path.
    public func snapshot(masterKey: [UInt8]? = nil) throws -> GatewayConfig {
        try db.transaction {
            let version = try version()
            let (upstream, unavailable) = try openUpstreamKeys(masterKey: masterKey)
            return try GatewayConfig(
                state: loadState(), keys: activeKeys(), version: version, promptVersions: promptVersions(),
                upstreamKeys: upstream, unavailableUpstreamKeys: unavailable)
        }
    }

    /// Every stored upstream key, masked: (tenant, backend, hint), ordered.
    public func upstreamKeyHints() throws -> [(tenant: String, backend: String, hint: String)] {
        try db.query("SELECT tenant_id, backend, hint FROM upstream_keys ORDER BY 1, 2").map {
            ($0[0].text ?? "", $0[1].text ?? "", $0[2].text ?? "")
        }
    }

    /// Moves every plaintext upstream key of `state` into the `upstream_keys` table, sealed with
    /// AES-256-GCM under the master key, and leaves only a reference (`encrypted:sk-…abcd`) in the
    /// tenant's settings. `null` deletes a key; a reference must name a stored key.
    func sealUpstreamKeys(_ state: ConfigState, masterKey: [UInt8]?) throws -> ConfigState {
        var next = state
        for (tenant, json) in state.tenants {
            guard let keys = json["upstream_keys"]?.objectValue else { continue }
            var kept: [(String, JSONValue)] = []
            for (backend, value) in keys {
                switch value {
                case .null:
                    try db.statement("DELETE FROM upstream_keys WHERE tenant_id = ? AND backend = ?")
                        .run([.text(tenant), .text(backend)])
                case .string(let text) where text.hasPrefix(Secret.referencePrefix):
                    let exists = try db.statement("SELECT hint FROM upstream_keys WHERE tenant_id = ? AND backend = ?")
                        .all([.text(tenant), .text(backend)]).first?.first?.text
                    guard let hint = exists else {
                        throw ConfigError(
                            path: "tenants.\(tenant).upstream_keys.\(backend)",
                            message: "refers to a stored key that does not exist; give the key itself", line: nil)
                    }
                    kept.append((backend, .string(Secret.referencePrefix + hint)))
                case .string(let text):
                    guard let masterKey else {
                        throw ConfigError(
                            path: "tenants.\(tenant).upstream_keys.\(backend)",
                            message: "no master key: create $TENANTGATE_HOME/master.key or set TENANTGATE_MASTER_KEY",
                            line: nil)
                    }
                    let sealed = try UpstreamKeySeal.seal(
                        Array(text.utf8), key: masterKey, tenant: tenant, backend: backend)
                    let hint = Secret.mask(text)
                    try db.statement(
                        """
                        INSERT INTO upstream_keys(tenant_id, backend, sealed, hint) VALUES (?1, ?2, ?3, ?4)
                        ON CONFLICT(tenant_id, backend) DO UPDATE SET sealed = ?3, hint = ?4
                        """
                    ).run([.text(tenant), .text(backend), .blob(sealed), .text(hint)])
                    kept.append((backend, .string(Secret.referencePrefix + hint)))
                default:
                    continue
                }
            }
            next.tenants[tenant] =
                kept.isEmpty ? json.removing("upstream_keys") : json.setting("upstream_keys", .object(kept))
        }
        for tenant in Set(try db.query("SELECT DISTINCT tenant_id FROM upstream_keys").compactMap { $0[0].text })
        where next.tenants[tenant] == nil {
            try db.statement("DELETE FROM upstream_keys WHERE tenant_id = ?").run([.text(tenant)])
        }
        return next
    }

    /// Decrypts every stored upstream key: tenant → backend → key, and the (tenant, backend) pairs whose
    /// key is stored but cannot be opened (no master key, the wrong one, a damaged or moved row). Those are
    /// refused at request time, never served on the backend's `api_key_env` (fail closed).
    func openUpstreamKeys(masterKey: [UInt8]?) throws -> (
        keys: [String: [String: String]], unavailable: [String: Set<String>]
    ) {
        var out: [String: [String: String]] = [:]
        var unavailable: [String: Set<String>] = [:]
        for row in try db.query("SELECT tenant_id, backend, sealed FROM upstream_keys") {
            guard let tenant = row[0].text, let backend = row[1].text else { continue }
            guard let masterKey, let sealed = row[2].blob,
                let plain = try? UpstreamKeySeal.open(sealed, key: masterKey, tenant: tenant, backend: backend),
                let key = String(validating: plain, as: UTF8.self)
            else {
                unavailable[tenant, default: []].insert(backend)
                continue
            }
            out[tenant, default: [:]][backend] = key
        }
        return (out, unavailable)
    }

    /// Re-seals, under the same master key, the rows sealed before format 2 (not bound to their tenant and
    /// backend), in one transaction; returns how many. Rows that do not open with `masterKey` are left.
    @discardableResult
    public func resealLegacyUpstreamKeys(masterKey: [UInt8]) throws -> Int {
        try db.transaction {
            var count = 0
            for row in try db.query("SELECT tenant_id, backend, sealed FROM upstream_keys") {
                guard let tenant = row[0].text, let backend = row[1].text, let sealed = row[2].blob,
                    (try? UpstreamKeySeal.open(sealed, key: masterKey, tenant: tenant, backend: backend)) == nil,
                    let plain = try? UpstreamKeySeal.open(
                        sealed, key: masterKey, tenant: tenant, backend: backend, legacy: true)
                else { continue }
                let resealed = try UpstreamKeySeal.seal(plain, key: masterKey, tenant: tenant, backend: backend)
                try db.statement("UPDATE upstream_keys SET sealed = ? WHERE tenant_id = ? AND backend = ?")
                    .run([.blob(resealed), .text(tenant), .text(backend)])
                count += 1
            }
            return count
        }
    }

    /// Re-seals every stored upstream key under `newKey`, in one transaction; returns how many.
    public func reencryptUpstreamKeys(from oldKey: [UInt8], to newKey: [UInt8]) throws -> Int {
        try db.transaction { try reencryptUpstreamKeysInTransaction(from: oldKey, to: newKey) }
    }

    /// The same, inside the caller's transaction (no transaction of its own: they do not nest).
    public func reencryptUpstreamKeysInTransaction(from oldKey: [UInt8], to newKey: [UInt8]) throws -> Int {
        do {
            let rows = try db.query("SELECT tenant_id, backend, sealed FROM upstream_keys")
            for row in rows {
                guard let tenant = row[0].text, let backend = row[1].text, let sealed = row[2].blob else { continue }
                let plain = try UpstreamKeySeal.open(
                    sealed, key: oldKey, tenant: tenant, backend: backend, legacy: true)
                let resealed = try UpstreamKeySeal.seal(plain, key: newKey, tenant: tenant, backend: backend)
                try db.statement("UPDATE upstream_keys SET sealed = ? WHERE tenant_id = ? AND backend = ?")
                    .run([.blob(resealed), .text(tenant), .text(backend)])
            }
            return rows.count
        }
    }
}
