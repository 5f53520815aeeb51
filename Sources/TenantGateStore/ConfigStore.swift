import TenantGateCore
import TenantGateSystem

/// Reads and writes the configuration tables and keys of one connection.
public struct ConfigStore {
    private let db: SQLiteConnection

    /// Wraps a connection.
    public init(_ db: SQLiteConnection) { self.db = db }

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
    public func apply(_ change: (ConfigState) throws -> ConfigState) throws {
        try db.transaction {
            let current = try loadState()
            let next = try change(current)
            _ = try GatewayConfig(state: next, keys: [], version: 0)
            try write(next, over: current, now: Posix.wallMicros() / 1_000_000)
        }
    }

    /// The active (unrevoked) keys.
    public func activeKeys() throws -> [APIKeyRecord] {
        try db.statement("SELECT id, tenant_id, prefix, hash FROM api_keys WHERE revoked_at IS NULL").all().compactMap {
            row in
            guard let id = row[0].text, let tenant = row[1].text.flatMap(TenantID.init), let prefix = row[2].text,
                let hash = row[3].blob
            else { return nil }
            return APIKeyRecord(id: id, tenant: tenant, lookupPrefix: prefix, hash: hash)
        }
    }

    /// A full snapshot for the request path.
    public func snapshot() throws -> GatewayConfig {
        try db.transaction {
            let version = try version()
            return try GatewayConfig(
                state: loadState(), keys: activeKeys(), version: version, promptVersions: promptVersions())
        }
    }
}
