import TenantGateSystem

/// Versioned schema migrations, applied in order inside one transaction each.
public enum Migrations {
    /// The schema version this build expects.
    public static var current: Int { steps.count }

    static let configTables = ["settings", "backends", "models", "tenants"]

    static let steps: [String] = [
        // 1: configuration, keys and the config version counter every worker polls.
        """
        CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
        INSERT INTO meta(key, value) VALUES ('config_version', 1);
        CREATE TABLE settings(key TEXT PRIMARY KEY, json TEXT NOT NULL) STRICT;
        CREATE TABLE backends(name TEXT PRIMARY KEY, json TEXT NOT NULL) STRICT;
        CREATE TABLE models(name TEXT PRIMARY KEY, json TEXT NOT NULL) STRICT;
        CREATE TABLE tenants(
            id TEXT PRIMARY KEY, json TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE api_keys(
            id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, prefix TEXT NOT NULL, hash BLOB NOT NULL,
            name TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL, last_used_at INTEGER, revoked_at INTEGER
        ) STRICT;
        CREATE INDEX api_keys_prefix ON api_keys(prefix);
        CREATE INDEX api_keys_tenant ON api_keys(tenant_id);
        """
            + configTables.map { table in
                ["INSERT", "UPDATE", "DELETE"].map { op in
                    """
                    CREATE TRIGGER \(table)_\(op.lowercased())_bump AFTER \(op) ON \(table)
                    BEGIN UPDATE meta SET value = value + 1 WHERE key = 'config_version'; END;
                    """
                }.joined(separator: "\n")
            }.joined(separator: "\n")
                + """

                CREATE TRIGGER api_keys_insert_bump AFTER INSERT ON api_keys
                BEGIN UPDATE meta SET value = value + 1 WHERE key = 'config_version'; END;
                CREATE TRIGGER api_keys_delete_bump AFTER DELETE ON api_keys
                BEGIN UPDATE meta SET value = value + 1 WHERE key = 'config_version'; END;
                CREATE TRIGGER api_keys_revoke_bump AFTER UPDATE OF revoked_at, hash, tenant_id ON api_keys
                BEGIN UPDATE meta SET value = value + 1 WHERE key = 'config_version'; END;
                """,
        // 2: every saved version of every prompt template, for history and rollback.
        """
        CREATE TABLE prompt_versions(
            tenant_id TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, template TEXT NOT NULL,
            created_at INTEGER NOT NULL, PRIMARY KEY (tenant_id, name, version)
        ) STRICT;
        """,
        // 3: accounting: sliding-window rate log, budget counters, reservations, execution log, daily rollups.
        """
        CREATE TABLE rate_log(
            id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, kind TEXT NOT NULL, at_ms INTEGER NOT NULL,
            amount INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX rate_log_window ON rate_log(tenant, kind, at_ms, amount);
        CREATE TABLE rate_totals(
            tenant TEXT NOT NULL, kind TEXT NOT NULL, total INTEGER NOT NULL, PRIMARY KEY (tenant, kind)
        ) STRICT, WITHOUT ROWID;
        CREATE TABLE budget_counters(
            scope TEXT NOT NULL, period TEXT NOT NULL, used_tokens INTEGER NOT NULL DEFAULT 0,
            used_nano INTEGER NOT NULL DEFAULT 0, reserved_tokens INTEGER NOT NULL DEFAULT 0,
            reserved_nano INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (scope, period)
        ) STRICT, WITHOUT ROWID;
        CREATE TABLE reservations(
            id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, day TEXT NOT NULL, month TEXT NOT NULL,
            tokens INTEGER NOT NULL, nano INTEGER NOT NULL, rpm_row INTEGER, tpm_row INTEGER,
            expires_ms INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE executions(
            id INTEGER PRIMARY KEY, request_id TEXT NOT NULL, at_ms INTEGER NOT NULL, tenant TEXT NOT NULL,
            key_id TEXT, end_user TEXT, model TEXT, backend TEXT, status INTEGER NOT NULL, error_code TEXT,
            latency_ms INTEGER NOT NULL DEFAULT 0, upstream_ms INTEGER, ttfb_ms INTEGER,
            tokens_in INTEGER NOT NULL DEFAULT 0, tokens_out INTEGER NOT NULL DEFAULT 0,
            tokens_cached INTEGER NOT NULL DEFAULT 0, cost_nano INTEGER NOT NULL DEFAULT 0,
            streamed INTEGER NOT NULL DEFAULT 0, fallback_used INTEGER NOT NULL DEFAULT 0,
            retries INTEGER NOT NULL DEFAULT 0, prompt TEXT
        ) STRICT;
        CREATE INDEX executions_tenant_time ON executions(tenant, at_ms);
        CREATE TABLE usage_daily(
            day TEXT NOT NULL, tenant TEXT NOT NULL, model TEXT NOT NULL, requests INTEGER NOT NULL DEFAULT 0,
            errors INTEGER NOT NULL DEFAULT 0, tokens_in INTEGER NOT NULL DEFAULT 0,
            tokens_out INTEGER NOT NULL DEFAULT 0, cost_nano INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (day, tenant, model)
        ) STRICT, WITHOUT ROWID;
        """,
        // 4: deployment-wide metric counters (written with each settlement) and worker heartbeats.
        """
        CREATE TABLE metric_counters(
            name TEXT NOT NULL, labels TEXT NOT NULL, le INTEGER NOT NULL DEFAULT -1, value INTEGER NOT NULL,
            PRIMARY KEY (name, labels, le)
        ) STRICT, WITHOUT ROWID;
        CREATE TABLE workers(
            pid INTEGER PRIMARY KEY, started_ms INTEGER NOT NULL, seen_ms INTEGER NOT NULL,
            in_flight INTEGER NOT NULL DEFAULT 0
        ) STRICT;
        ALTER TABLE executions ADD COLUMN trace_id TEXT;
        CREATE TABLE circuit_state(
            tenant TEXT NOT NULL, backend TEXT NOT NULL, open_until_ms INTEGER NOT NULL DEFAULT 0,
            probing INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (tenant, backend)
        ) STRICT, WITHOUT ROWID;
        CREATE TABLE circuit_failures(tenant TEXT NOT NULL, backend TEXT NOT NULL, at_ms INTEGER NOT NULL) STRICT;
        CREATE INDEX circuit_failures_window ON circuit_failures(tenant, backend, at_ms);
        CREATE TABLE upstream_keys(
            tenant_id TEXT NOT NULL, backend TEXT NOT NULL, sealed BLOB NOT NULL, hint TEXT NOT NULL,
            PRIMARY KEY (tenant_id, backend)
        ) STRICT, WITHOUT ROWID;
        CREATE TRIGGER upstream_keys_insert_bump AFTER INSERT ON upstream_keys
        BEGIN UPDATE meta SET value = value + 1 WHERE key = 'config_version'; END;
        CREATE TRIGGER upstream_keys_update_bump AFTER UPDATE ON upstream_keys
        BEGIN UPDATE meta SET value = value + 1 WHERE key = 'config_version'; END;
        CREATE TRIGGER upstream_keys_delete_bump AFTER DELETE ON upstream_keys
        BEGIN UPDATE meta SET value = value + 1 WHERE key = 'config_version'; END;
        """,
        // 5: the admin page: users, sessions, login throttling, audit log; hourly rollups for the dashboard;
        // a time index for the executions page across tenants.
        """
        CREATE TABLE admin_users(
            name TEXT PRIMARY KEY, salt BLOB NOT NULL, hash BLOB NOT NULL, iterations INTEGER NOT NULL,
            created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL
        ) STRICT;
        CREATE TABLE admin_sessions(
            id_hash BLOB PRIMARY KEY, user TEXT NOT NULL, csrf TEXT NOT NULL, address TEXT NOT NULL,
            created_ms INTEGER NOT NULL, seen_ms INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX admin_sessions_user ON admin_sessions(user);
        CREATE TABLE admin_login_failures(subject TEXT NOT NULL, at_ms INTEGER NOT NULL) STRICT;
        CREATE INDEX admin_login_failures_subject ON admin_login_failures(subject, at_ms);
        CREATE TABLE admin_audit(
            id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, user TEXT NOT NULL, address TEXT NOT NULL,
            action TEXT NOT NULL, target TEXT NOT NULL, before TEXT, after TEXT
        ) STRICT;
        CREATE TABLE usage_hourly(
            hour INTEGER NOT NULL, tenant TEXT NOT NULL, requests INTEGER NOT NULL DEFAULT 0,
            errors INTEGER NOT NULL DEFAULT 0, cost_nano INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (hour, tenant)
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX executions_time ON executions(at_ms);
        """,
        // 6: addresses each admin user has logged in from (they keep their way in while an account is
        // under a password-guessing attack from elsewhere).
        """
        CREATE TABLE admin_known_addresses(
            user TEXT NOT NULL, address TEXT NOT NULL, last_ms INTEGER NOT NULL, PRIMARY KEY (user, address)
        ) STRICT, WITHOUT ROWID;
        """,
        // 7: guardrail triggers of each execution (JSON: policy, phase, action, mode, detector, length; never
        // the matched text).
        """
        ALTER TABLE executions ADD COLUMN policy_triggers TEXT;
        """,
        // 8: the per-tenant response cache (the tenant leads every key), its per-tenant totals, and what each
        // execution got from it.
        """
        CREATE TABLE cache_entries(
            tenant TEXT NOT NULL, key BLOB NOT NULL, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
            used_ms INTEGER NOT NULL, hits INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL,
            answer BLOB NOT NULL, tokens INTEGER NOT NULL, cost_nano INTEGER NOT NULL,
            PRIMARY KEY (tenant, key)
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX cache_entries_lru ON cache_entries(tenant, used_ms);
        CREATE INDEX cache_entries_expiry ON cache_entries(expires_ms);
        CREATE TABLE cache_usage(
            tenant TEXT PRIMARY KEY, entries INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0
        ) STRICT, WITHOUT ROWID;
        ALTER TABLE executions ADD COLUMN cache TEXT;
        ALTER TABLE executions ADD COLUMN saved_tokens INTEGER;
        ALTER TABLE executions ADD COLUMN saved_nano INTEGER;
        """,
        // 9: the semantic cache's vectors (a tenant's scope: model, parameters, system prompt), and a
        // generation per tenant that tells workers to reload their in-memory copy.
        """
        CREATE TABLE cache_vectors(
            tenant TEXT NOT NULL, scope BLOB NOT NULL, key BLOB NOT NULL, vector BLOB NOT NULL, words TEXT NOT NULL,
            PRIMARY KEY (tenant, scope, key)
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX cache_vectors_key ON cache_vectors(tenant, key);
        ALTER TABLE cache_usage ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
        """,
        // 10: the tamper-evident audit trail: one HMAC chain per tenant (and `_system`), the head of each
        // chain (so a cut tail shows), and the chain's key, sealed under the master key.
        """
        CREATE TABLE audit_events(
            tenant TEXT NOT NULL, seq INTEGER NOT NULL, ts_ms INTEGER NOT NULL, kind TEXT NOT NULL,
            actor TEXT NOT NULL, body TEXT NOT NULL, prev_mac BLOB NOT NULL, mac BLOB NOT NULL,
            PRIMARY KEY (tenant, seq)
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX audit_events_time ON audit_events(tenant, ts_ms);
        CREATE TABLE audit_heads(
            tenant TEXT PRIMARY KEY, seq INTEGER NOT NULL, mac BLOB NOT NULL, head_mac BLOB NOT NULL
        ) STRICT, WITHOUT ROWID;
        CREATE TABLE audit_key(id INTEGER PRIMARY KEY CHECK (id = 1), sealed INTEGER NOT NULL, key BLOB NOT NULL)
            STRICT;
        """,
        // 11: per-tenant document collections. Composite foreign keys tie every document and chunk to its
        // tenant's collection (a chunk cannot be written into another tenant's collection); each collection
        // has its own FTS5 index, `doc_fts_<collection id>`, made by `DocumentStore` (its BM25 statistics
        // are the collection's alone). Executions record what retrieval added.
        """
        CREATE TABLE doc_collections(
            id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL, created_ms INTEGER NOT NULL,
            embedding_model TEXT, documents INTEGER NOT NULL DEFAULT 0, chunks INTEGER NOT NULL DEFAULT 0,
            bytes INTEGER NOT NULL DEFAULT 0,
            UNIQUE (tenant, name), UNIQUE (tenant, id)
        ) STRICT;
        CREATE TABLE doc_documents(
            id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, collection INTEGER NOT NULL, uid TEXT NOT NULL,
            source TEXT, format TEXT NOT NULL, hash BLOB NOT NULL, bytes INTEGER NOT NULL,
            chunks INTEGER NOT NULL, created_ms INTEGER NOT NULL, text TEXT NOT NULL,
            UNIQUE (tenant, uid), UNIQUE (tenant, collection, hash), UNIQUE (tenant, collection, id),
            FOREIGN KEY (tenant, collection) REFERENCES doc_collections(tenant, id) ON DELETE CASCADE
        ) STRICT;
        CREATE TABLE doc_chunks(
            id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, collection INTEGER NOT NULL, document INTEGER NOT NULL,
            seq INTEGER NOT NULL, text TEXT NOT NULL, tokens INTEGER NOT NULL, vector BLOB,
            UNIQUE (document, seq),
            FOREIGN KEY (tenant, collection, document) REFERENCES doc_documents(tenant, collection, id)
                ON DELETE CASCADE
        ) STRICT;
        CREATE INDEX doc_chunks_collection ON doc_chunks(tenant, collection);
        ALTER TABLE executions ADD COLUMN retrieval TEXT;
        """,
        // 12: stored Responses API responses, under their tenant (one turn each: the chain of a
        // previous_response_id is walked back), and the endpoint of each execution.
        """
        CREATE TABLE stored_responses(
            tenant TEXT NOT NULL, id TEXT NOT NULL, created_ms INTEGER NOT NULL, previous TEXT,
            response TEXT NOT NULL, input_items TEXT NOT NULL, turn TEXT NOT NULL, bytes INTEGER NOT NULL,
            PRIMARY KEY (tenant, id)
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX stored_responses_age ON stored_responses(tenant, created_ms);
        ALTER TABLE executions ADD COLUMN endpoint TEXT;
        """,
        // 13: workers are named by host and pid (several hosts share a PostgreSQL store, and their pids
        // collide); the rows are heartbeats, rewritten every second, so the table starts over.
        """
        DROP TABLE workers;
        CREATE TABLE workers(
            host TEXT NOT NULL, pid INTEGER NOT NULL, started_ms INTEGER NOT NULL, seen_ms INTEGER NOT NULL,
            in_flight INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (host, pid)
        ) STRICT, WITHOUT ROWID;
        """,
        // 14: the ids of settlement batches committed on PostgreSQL, so that a batch retried after its
        // COMMIT was lost with the connection (the server may have carried it out) is never applied twice.
        // Kept ten minutes (the sweep); a retry comes within seconds.
        """
        CREATE TABLE settled_batches(id TEXT PRIMARY KEY, at_ms INTEGER NOT NULL) STRICT, WITHOUT ROWID;
        CREATE INDEX settled_batches_age ON settled_batches(at_ms);
        """,
        // 15: what each tenant stores, in bytes, for its storage quota (`StorageUsage`): the vectors of a
        // collection, the audit events of a chain (both kept up to date where they change), and an index
        // that sums stored responses without reading them.
        """
        ALTER TABLE doc_collections ADD COLUMN vector_bytes INTEGER NOT NULL DEFAULT 0;
        UPDATE doc_collections SET vector_bytes = (
            SELECT COALESCE(SUM(length(vector)), 0) FROM doc_chunks c WHERE c.collection = doc_collections.id);
        ALTER TABLE audit_heads ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
        UPDATE audit_heads SET bytes = (
            SELECT COALESCE(SUM(length(body)), 0) FROM audit_events e WHERE e.tenant = audit_heads.tenant);
        CREATE INDEX stored_responses_bytes ON stored_responses(tenant, bytes);
        """,
        // 16: budget thresholds (50, 80, 100 %) announced, once per budget and period, when settled use
        // (not holds) reaches them. Rows of past periods go with the sweep. And the rollups count refusals
        // (4xx: limits, budgets, policies, flags, bad requests) apart from failures (5xx): `errors` counts
        // failures only from here on (before, it counted both). The admin page's key creation: single-use
        // form tokens (a refreshed POST creates nothing) and the new key, sealed under a key only the
        // browser's cookie holds, until its page is shown once after the redirect.
        """
        CREATE TABLE budget_notices(
            scope TEXT NOT NULL, period TEXT NOT NULL, budget TEXT NOT NULL, percent INTEGER NOT NULL,
            at_ms INTEGER NOT NULL, PRIMARY KEY (scope, period, budget, percent)
        ) STRICT, WITHOUT ROWID;
        ALTER TABLE usage_daily ADD COLUMN refused INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE usage_hourly ADD COLUMN refused INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE admin_once(token_hash BLOB PRIMARY KEY, at_ms INTEGER NOT NULL) STRICT;
        CREATE TABLE admin_new_keys(
            id_hash BLOB PRIMARY KEY, session_hash BLOB NOT NULL, tenant TEXT NOT NULL, key_id TEXT NOT NULL,
            sealed BLOB NOT NULL, at_ms INTEGER NOT NULL
        ) STRICT;
        """,
        // 17: keys with their own settings: a model allow-list (JSON array, narrowing the tenant's), an
        // expiry, and after a rotation the previous secret with the end of its grace. A change of any of
        // them reaches the workers with the configuration version.
        """
        ALTER TABLE api_keys ADD COLUMN models TEXT;
        ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;
        ALTER TABLE api_keys ADD COLUMN prev_prefix TEXT;
        ALTER TABLE api_keys ADD COLUMN prev_hash BLOB;
        ALTER TABLE api_keys ADD COLUMN prev_until INTEGER;
        CREATE TRIGGER api_keys_settings_bump AFTER UPDATE OF models, expires_at, prev_hash, prev_until ON api_keys
        BEGIN UPDATE meta SET value = value + 1 WHERE key = 'config_version'; END;
        """,
        // 18: spend by key: daily rollups per (tenant, key), written in the settlement's transaction like
        // `usage_daily` (so they equal the execution rows), kept like it.
        """
        CREATE TABLE usage_keys(
            day TEXT NOT NULL, tenant TEXT NOT NULL, key_id TEXT NOT NULL, requests INTEGER NOT NULL,
            errors INTEGER NOT NULL, refused INTEGER NOT NULL, tokens_in INTEGER NOT NULL,
            tokens_out INTEGER NOT NULL, cost_nano INTEGER NOT NULL, PRIMARY KEY (day, tenant, key_id)
        ) STRICT, WITHOUT ROWID;
        """,
    ]

    /// The schema version stored in the database (0 for a new one).
    public static func version(_ db: any SQLConnection) throws -> Int {
        if let postgres = db as? PostgresConnection { return try PostgresSchema.version(postgres) }
        return Int(try db.query("PRAGMA user_version").first?.first?.int ?? 0)
    }

    /// Applies every missing step; returns how many ran. (On PostgreSQL: `PostgresSchema.migrate`.)
    @discardableResult
    public static func migrate(_ db: any SQLConnection) throws -> Int {
        if let postgres = db as? PostgresConnection { return try PostgresSchema.migrate(postgres) }
        var applied = 0
        while true {
            let ran: Bool = try db.transaction {
                let version = try Migrations.version(db)
                guard version < steps.count else { return false }
                try db.execute(steps[version])
                try db.execute("PRAGMA user_version = \(version + 1)")
                return true
            }
            if !ran { break }
            applied += 1
        }
        return applied
    }
}
