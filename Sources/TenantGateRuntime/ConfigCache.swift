import TenantGateCore
import TenantGateHTTP
import TenantGateStore
import TenantGateSystem

/// The process's current configuration snapshot, refreshed by one background thread.
///
/// The request path only takes the current snapshot (a lock and a retain); the poller reads the
/// version counter every `intervalMs` (on PostgreSQL also as soon as a change is notified) and rebuilds
/// the snapshot only when it changed.
public final class ConfigCache: ConfigSource {
    private let current: Locked<(config: GatewayConfig, jwt: JWTCheck?)>
    /// Keys used since the last write, and when each was last written (a key's last use is written at
    /// most once a minute per worker).
    private let usedKeys = Locked<(pending: Set<String>, written: [String: Int64])>(([], [:]))
    static let touchEveryMs: Int64 = 60_000
    private let dbPath: String
    private let log: AppLog
    private let intervalMs: Int

    /// Loads the first snapshot; throws if the database cannot be read.
    public init(dbPath: String, log: AppLog, intervalMs: Int = 200) throws {
        self.dbPath = dbPath
        self.log = log
        self.intervalMs = intervalMs
        let db = try Database.open(path: dbPath, cacheKiB: 256)
        let config = try ConfigStore(db).snapshot(masterKey: ConfigCache.masterKey(dbPath, log: log))
        ConfigCache.reportUnopenedKeys(config, log: log)
        current = Locked((config, ConfigCache.jwtCheck(config.jwt, log: log)))
    }

    /// The snapshot and the JWT check that goes with it.
    public var snapshot: (config: GatewayConfig, jwt: JWTCheck?) { current.withLock { $0 } }

    /// The master key (re-read on every reload, so a rotation needs no restart); nil if unusable.
    static func masterKey(_ dbPath: String, log: AppLog) -> [UInt8]? {
        do {
            return try MasterKey.load(dbPath: dbPath)
        } catch {
            log.event("master_key_unusable", ["error": .string("\(error)")], level: "error")
            return nil
        }
    }

    /// Stored upstream keys that cannot be opened refuse their tenants' calls: say so loudly, once per load.
    static func reportUnopenedKeys(_ config: GatewayConfig, log: AppLog) {
        for missing in config.missingBackendKeys(env: Posix.env) {
            log.event(
                "backend_key_missing",
                [
                    "backend": .string(missing.backend), "variable": .string(missing.variable),
                    "tenants": .array(missing.tenants.prefix(50).map { .string($0) }),
                    "error": .string("\(missing.variable) is not set: calls to this backend are refused"),
                ], level: "error")
        }
        guard config.unavailableUpstreamKeyCount > 0 else { return }
        let tenants = config.tenants.values.filter { !$0.unavailableUpstreamKeys.isEmpty }.map(\.id.rawValue).sorted()
        log.event(
            "upstream_keys_unavailable",
            [
                "count": .int(config.unavailableUpstreamKeyCount),
                "tenants": .array(tenants.prefix(50).map { .string($0) }),
                "error": .string("stored upstream keys cannot be opened (master key missing or wrong): refused"),
            ], level: "error")
    }

    /// Loads the JWT key material named by the configuration (environment secret or PEM file).
    static func jwtCheck(_ jwt: JWTConfig?, log: AppLog) -> JWTCheck? {
        guard let jwt else { return nil }
        let settings = JWTSettings(
            algorithm: jwt.algorithm, tenantClaim: jwt.tenantClaim, issuer: jwt.issuer, audience: jwt.audience)
        if jwt.issuer == nil || jwt.audience == nil {
            log.event(
                "jwt_unbound",
                ["error": .string("jwt.issuer and jwt.audience are not set: tokens are not bound (RFC 8725)")],
                level: "warn")
        }
        do {
            switch jwt.algorithm {
            case .hs256:
                guard let name = jwt.secretEnv, let secret = Posix.env(name), secret.utf8.count >= 32 else {
                    throw StoreError.invalid("\(jwt.secretEnv ?? "secret_env") is unset or shorter than 32 bytes")
                }
                return JWTCheck(
                    settings: settings, verifier: OpenSSLJWTVerifier(key: JWTKey(secret: Array(secret.utf8))))
            case .rs256, .es256:
                guard let path = jwt.publicKeyFile, let pem = Posix.readFile(path, limit: 65536) else {
                    throw StoreError.invalid("cannot read \(jwt.publicKeyFile ?? "public_key_file")")
                }
                let key = try JWTKey(algorithm: jwt.algorithm.rawValue, publicKeyPEM: pem)
                return JWTCheck(settings: settings, verifier: OpenSSLJWTVerifier(key: key))
            }
        } catch {
            log.event("jwt_disabled", ["error": .string("\(error)")], level: "error")
            return nil
        }
    }

    /// Notes that a key was used (written to the database in batches by the poller).
    public func markUsed(_ keyID: String) {
        let now = Posix.monotonicMs()
        usedKeys.withLock { used in
            if let last = used.written[keyID], now - last < ConfigCache.touchEveryMs { return }
            if used.written.count >= 65_536 { used.written.removeAll(keepingCapacity: true) }
            used.written[keyID] = now
            used.pending.insert(keyID)
        }
    }

    /// Starts the poller thread.
    public func startPolling() {
        let path = dbPath
        OSThread.start { [self] in
            var db: (any SQLConnection)?
            // Housekeeping every five intervals (a second) by the clock: notifications end waits early,
            // however many come.
            var lastHousekeepingMs = Posix.monotonicMs()
            while true {
                // On PostgreSQL a change's notification ends the wait early (another host's included);
                // the version read below stays the check.
                if let conn = db {
                    do {
                        try ConfigStore.awaitChange(conn, timeoutMs: intervalMs)
                    } catch {
                        Posix.sleepMs(intervalMs)
                    }
                } else {
                    Posix.sleepMs(intervalMs)
                }
                do {
                    let conn = try db ?? Database.open(path: path, cacheKiB: 256)
                    db = conn
                    let store = ConfigStore(conn)
                    let seen = current.withLock { $0.config.version }
                    if try store.version() != seen {
                        let next = try store.snapshot(masterKey: ConfigCache.masterKey(path, log: log))
                        ConfigCache.reportUnopenedKeys(next, log: log)
                        let jwt = ConfigCache.jwtCheck(next.jwt, log: log)
                        current.withLock { $0 = (next, jwt) }
                        log.event("config_reload", ["config_version": .number(String(next.version))])
                    }
                    if Posix.monotonicMs() - lastHousekeepingMs >= 5 * Int64(intervalMs) {
                        lastHousekeepingMs = Posix.monotonicMs()
                        try CacheStore(conn).sweep(nowMs: Posix.wallMicros() / 1000)
                        // Reservations whose worker died are released once they expire.
                        let released = try AccountingStore(conn).sweep(nowMs: Posix.wallMicros() / 1000)
                        if released > 0 { log.event("reservations_expired", ["count": .int(released)], level: "warn") }
                        let ids = usedKeys.withLock { used -> [String] in
                            defer { used.pending.removeAll() }
                            return Array(used.pending)
                        }
                        if !ids.isEmpty {
                            do {
                                try KeyStore(conn).touch(ids: ids, at: Posix.wallMicros() / 1_000_000)
                            } catch {
                                // Not written: the next use of these keys queues them again.
                                usedKeys.withLock { used in for id in ids { used.written[id] = nil } }
                                throw error
                            }
                        }
                    }
                } catch {
                    log.event("config_reload_failed", ["error": .string("\(error)")], level: "error")
                    db = nil
                }
            }
        }
    }
}
