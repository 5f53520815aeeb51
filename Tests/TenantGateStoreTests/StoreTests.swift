import Foundation
import Testing

@testable import TenantGateCore
@testable import TenantGateStore
@testable import TenantGateSystem

/// SHA-256 and constant-time comparison over OpenSSL, as the worker's authenticator has them.
struct TestKeyHasher: KeyHasher {
    func hash(_ key: String) -> [UInt8] { Crypto.sha256(Array(key.utf8)) }
    func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool { Crypto.constantTimeEqual(a, b) }
}

func tempDB() throws -> SQLiteConnection {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("tg-\(UUID().uuidString).db").path
    let db = try SQLiteConnection(path: path)
    try Migrations.migrate(db)
    return db
}

let yaml = """
    defaults:
      rate_limit: {requests_per_minute: 60}
    backends:
      demo: {provider: mock}
      up: {provider: openai, base_url: "http://127.0.0.1:1/v1", api_key_env: UP_KEY}
    models:
      m: {backend: demo, input_per_mtok: 0.15, output_per_mtok: 0.6}
      g: {backend: up, upstream_model: gpt-4o-mini}
    tenants:
      acme:
        name: "Acme <Corp> 'quoted'"
        models: [m, g]
        system_prompt: "Line one\\nLine \\"two\\""
        policies:
          - {name: no_pii, detector: pii.any, threshold: 0.5, phase: ingress, action: redact}
    """

@Suite struct StoreTests {
    func importYAML(_ db: any SQLConnection, _ text: String, prune: Bool = false) throws {
        let document = try ConfigState.validateFile(try YAMLConfig.parse(text))
        try ConfigStore(db).apply { $0.merging(document, prune: prune) }
    }

    @Test(arguments: TestEngine.available) func migrationsAreIdempotent(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        #expect(try Migrations.version(db) == Migrations.current)
        #expect(try Migrations.migrate(db) == 0)
    }

    /// On PostgreSQL a configuration change is announced to listeners at commit (every host's poller wakes
    /// at once); on SQLite the wait is the poll interval, and the version is the check on both.
    @Test(arguments: TestEngine.available) func aConfigChangeIsAnnouncedOnPostgres(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        let listener: any SQLConnection = engine == .postgres ? try PostgresConnection(url: postgresURL ?? "") : db
        while try ConfigStore.awaitChange(listener, timeoutMs: 20) {}  // listening; older news drained
        let version = try ConfigStore(db).version()
        try importYAML(db, yaml)
        #expect(try ConfigStore(db).version() > version)
        let start = Posix.monotonicMs()
        let announced = try ConfigStore.awaitChange(listener, timeoutMs: 2000)
        #expect(announced == (engine == .postgres))
        if engine == .postgres { #expect(Posix.monotonicMs() - start < 1000) }
    }

    @Test(arguments: TestEngine.available) func importIsIdempotentAndExportRoundTrips(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        let store = ConfigStore(db)
        try importYAML(db, yaml)
        let version = try store.version()
        try importYAML(db, yaml)
        #expect(try store.version() == version)
        let exported = YAMLConfig.render(try store.loadState().document())
        let other = try testDB(engine)
        try importYAML(other, exported)
        #expect(try ConfigStore(other).loadState() == (try store.loadState()))
    }

    @Test(arguments: TestEngine.available) func invalidImportChangesNothing(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        try importYAML(db, yaml)
        let before = try ConfigStore(db).loadState()
        let version = try ConfigStore(db).version()
        // Valid syntax, but a tenant names a model that does not exist: nothing of it may land.
        let bad = "tenants:\n  newco: {models: [m]}\n  acme: {models: [ghost]}\n"
        #expect(throws: ConfigError.self) { try importYAML(db, bad) }
        #expect(try ConfigStore(db).loadState() == before)
        #expect(try ConfigStore(db).version() == version)
    }

    @Test func yamlErrorsNameTheLine() {
        do {
            _ = try ConfigState.validateFile(
                try YAMLConfig.parse("tenants:\n  acme:\n    models: [m]\n    colour: red\n"))
            Issue.record("accepted")
        } catch let error as ConfigError {
            #expect(error.path == "tenants.acme.colour")
            #expect(error.line == 4)
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func yamlAliasBombsAndBadYAMLAreRefused() {
        var bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for i in 1...9 {
            bomb +=
                "a\(i): &a\(i) [*a\(i-1), *a\(i-1), *a\(i-1), *a\(i-1), *a\(i-1), *a\(i-1), *a\(i-1), *a\(i-1), *a\(i-1), *a\(i-1)]\n"
        }
        #expect(throws: ConfigError.self) { try YAMLConfig.parse(bomb) }
        #expect((try? YAMLConfig.parse("a: &x {b: 1}\nc: *x\n")) != nil)
        #expect(throws: ConfigError.self) { try YAMLConfig.parse("a: [1, 2\n") }
    }

    @Test(arguments: TestEngine.available) func keysAreHashedVerifiedAndRevoked(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        try importYAML(db, yaml)
        let keys = KeyStore(db)
        let (id, secret) = try keys.create(tenant: "acme", name: "ci")
        #expect(secret.hasPrefix("tg_") && secret.count == 47)
        let rows = try db.query("SELECT hash, prefix FROM api_keys")
        #expect(rows[0][0].blob == Crypto.sha256(Array(secret.utf8)))
        #expect(!(try db.query("SELECT * FROM api_keys")).description.contains(secret))
        let config = try ConfigStore(db).snapshot()
        let auth = Authenticator(hasher: TestKeyHasher())
        let principal = try auth.authenticate(
            ResolutionInput(pathTenant: "acme", headerTenant: nil, credential: secret), config: config, now: 0)
        #expect(principal.key.id == id)
        #expect(try keys.revoke(id: id))
        #expect(try !keys.revoke(id: id))
        // A revoked key is still recognised (for 30 days), to say why it is refused.
        #expect(throws: GatewayError.keyRevoked) {
            try auth.authenticate(
                ResolutionInput(pathTenant: "acme", headerTenant: nil, credential: secret),
                config: try ConfigStore(db).snapshot(), now: 0)
        }
        #expect(throws: StoreError.self) { try keys.create(tenant: "nobody", name: "") }
    }

    @Test(arguments: TestEngine.available) func deletingATenantRevokesItsKeys(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        try importYAML(db, yaml)
        let (_, secret) = try KeyStore(db).create(tenant: "acme", name: "")
        try importYAML(db, "tenants:\n  acme: null\n")
        try importYAML(db, "tenants:\n  acme: {models: [m]}\n")
        #expect(throws: GatewayError.keyRevoked) {
            try Authenticator(hasher: TestKeyHasher()).authenticate(
                ResolutionInput(pathTenant: "acme", headerTenant: nil, credential: secret),
                config: try ConfigStore(db).snapshot(), now: 0)
        }
    }

    @Test(arguments: TestEngine.available) func keySettingsAndRotationReachTheSnapshot(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        try importYAML(db, yaml)
        let keys = KeyStore(db)
        let (id, first) = try keys.create(
            tenant: "acme", name: "ci", settings: KeySettings(models: ["m"], expiresAt: 4_000_000_000))
        func records() throws -> [APIKeyRecord] { try ConfigStore(db).activeKeys().filter { $0.id == id } }
        #expect(try records().map(\.models) == [["m"]])
        #expect(try records().map(\.expiresAt) == [4_000_000_000])
        #expect(try keys.set(id: id, name: "renamed", models: .some(nil), expiresAt: .some(nil)))
        #expect(try records().map(\.models) == [nil] && records().map(\.expiresAt) == [nil])
        #expect(try keys.key(id: id)?.name == "renamed")
        // A rotation: a new secret for the same id, the previous one a second record that expires with
        // its grace.
        let before = Posix.wallMicros() / 1_000_000
        let second = try #require(try keys.rotate(id: id, graceSeconds: 3600))
        #expect(second != first)
        let rotated = try records()
        #expect(rotated.count == 2)
        let old = try #require(rotated.first { $0.hash == Crypto.sha256(Array(first.utf8)) })
        let new = try #require(rotated.first { $0.hash == Crypto.sha256(Array(second.utf8)) })
        #expect(new.expiresAt == nil)
        #expect((before + 3600...before + 3602).contains(old.expiresAt ?? 0))
        let auth = Authenticator(hasher: TestKeyHasher())
        let config = try ConfigStore(db).snapshot()
        for secret in [first, second] {
            let principal = try auth.authenticate(
                ResolutionInput(pathTenant: "acme", headerTenant: nil, credential: secret), config: config,
                now: before + 10)
            #expect(principal.key.id == id)
        }
        #expect(throws: GatewayError.keyExpired) {
            try auth.authenticate(
                ResolutionInput(pathTenant: "acme", headerTenant: nil, credential: first), config: config,
                now: before + 7200)
        }
        // A revoked key can be neither changed nor rotated.
        #expect(try keys.revoke(id: id))
        #expect(try !keys.set(id: id, name: "again"))
        #expect(try keys.rotate(id: id, graceSeconds: 0) == nil)
    }

    /// Text is bound from the string's own bytes: empty stays '' (never NULL), inline and long strings,
    /// non-ASCII and NUL bytes come back as they went in.
    @Test(arguments: TestEngine.available) func textValuesRoundTripExactly(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        let texts = ["", "a", "fifteen bytes!!", "sixteen bytes!!!", "héllo ☃ 🚀", String(repeating: "x", count: 5000)]
        for text in texts {
            let back = try db.query("SELECT CAST(? AS TEXT), CAST(? AS TEXT) IS NULL", [.text(text), .text(text)])
            #expect(back == [[.text(text), .int(0)]], "\(text.prefix(20))")
        }
        if engine == .sqlite {
            let nul = try db.query("SELECT length(CAST(? AS BLOB))", [.text("a\u{0}b")])
            #expect(nul == [[.int(3)]])
        }
    }

    /// A prepared statement reused with fewer values than parameters has the rest NULL, never the values
    /// of its previous use (all values given: every one is bound again).
    @Test func aReusedStatementKeepsNoEarlierValues() throws {
        let db = try tempDB()
        let statement = try db.statement("SELECT ?, ?")
        #expect(try statement.all([.int(1), .text("two")]) == [[.int(1), .text("two")]])
        #expect(try statement.all([.int(3)]) == [[.int(3), .null]])
        #expect(try statement.all([.int(4), .int(5)]) == [[.int(4), .int(5)]])
        #expect(try statement.all([]) == [[.null, .null]])
        #expect(throws: (any Error).self) { try statement.all([.int(1), .int(2), .int(3)]) }
    }

    @Test(arguments: TestEngine.available) func hostileStringsAreStoredLiterally(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        try importYAML(db, yaml)
        try importYAML(db, "tenants:\n  acme: {name: \"x'); DROP TABLE tenants;-- <script>\"}\n")
        #expect(
            try ConfigStore(db).loadState().tenants["acme"]?["name"]?.stringValue
                == "x'); DROP TABLE tenants;-- <script>")
    }
}

@Suite struct CryptoTests {
    @Test func sha256AndHMACKnownAnswers() {
        #expect(
            Crypto.hex(Crypto.sha256(Array("abc".utf8)))
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            Crypto.hex(
                Crypto.hmacSHA256(
                    key: Array("key".utf8), message: Array("The quick brown fox jumps over the lazy dog".utf8)))
                == "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8")
    }

    @Test func aesGCMRoundTripsAndDetectsTampering() throws {
        let key = try Crypto.randomBytes(32)
        var sealed = try Crypto.seal(Array("sk-secret".utf8), key: key)
        #expect(try Crypto.open(sealed, key: key) == Array("sk-secret".utf8))
        sealed[14] ^= 1
        #expect(throws: OpenSSLError.self) { try Crypto.open(sealed, key: key) }
    }

    @Test func constantTimeEqual() {
        #expect(Crypto.constantTimeEqual([1, 2], [1, 2]))
        #expect(!Crypto.constantTimeEqual([1, 2], [1, 3]))
        #expect(!Crypto.constantTimeEqual([1], [1, 2]))
    }
}

@Suite struct LogFormatTests {
    @Test func timestampsAreRFC3339UTC() {
        #expect(CivilDate.rfc3339(epochMicros: 0) == "1970-01-01T00:00:00.000Z")
        #expect(CivilDate.rfc3339(epochMicros: 1_795_371_396_123_000) == "2026-11-22T18:16:36.123Z")
        #expect(CivilDate.rfc3339(epochMicros: 951_782_400_000_000) == "2000-02-29T00:00:00.000Z")
        #expect(CivilDate.dateTime(epochMs: 1_795_371_396_123) == "2026-11-22 18:16:36")
    }

    @Test func usdHasNineDecimals() {
        #expect(Money.usdString(nano: 19_000) == "0.000019000")
        #expect(Money.usdString(nano: 12_500_000_000) == "12.500000000")
    }
}

@Suite struct UpstreamKeyVaultTests {
    let text =
        "backends: {demo: {provider: mock}, up: {provider: openai, base_url: \"http://127.0.0.1:1/v1\"}}\n"
        + "models: {m: {backend: demo}}\n"
        + "tenants: {acme: {models: [m], upstream_keys: {up: sk-live-secret-0123456789}}}\n"

    func apply(_ db: any SQLConnection, _ yaml: String, key: [UInt8]?) throws {
        let document = try ConfigState.validateFile(try YAMLConfig.parse(yaml))
        try ConfigStore(db).apply(masterKey: key) { $0.merging(document, prune: false) }
    }

    @Test(arguments: TestEngine.available) func withoutAMasterKeyNothingIsStored(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        #expect(throws: ConfigError.self) { try apply(db, text, key: nil) }
        #expect(try ConfigStore(db).loadState().tenants.isEmpty)
    }

    @Test(arguments: TestEngine.available) func keysAreSealedReferencedAndOpenedOnlyWithTheMasterKey(
        _ engine: TestEngine
    ) throws {
        let db = try testDB(engine)
        let master = try Crypto.randomBytes(32)
        try apply(db, text, key: master)
        let json = try ConfigStore(db).loadState().tenants["acme"]?["upstream_keys"]?["up"]?.stringValue
        #expect(json == "encrypted:sk-…6789")
        let raw = try db.query("SELECT json FROM tenants").compactMap { $0.first?.text }.joined(separator: ",")
        #expect(!raw.contains("sk-live-secret"))
        let sealed = try db.query("SELECT sealed FROM upstream_keys").first?.first?.blob ?? []
        #expect(!String(decoding: sealed, as: UTF8.self).contains("sk-live"))
        #expect(
            try ConfigStore(db).snapshot(masterKey: master).tenants["acme"]?.upstreamKeys["up"]?.value
                == "sk-live-secret-0123456789")
        #expect(
            try ConfigStore(db).snapshot(masterKey: try Crypto.randomBytes(32)).tenants["acme"]?.upstreamKeys.isEmpty
                == true)
        #expect("\(Secret("sk-live"))" == "<redacted>")
        // Export → import keeps the stored key; null deletes it.
        let exported = YAMLConfig.render(try ConfigStore(db).loadState().document())
        try apply(db, exported, key: master)
        #expect(try ConfigStore(db).snapshot(masterKey: master).tenants["acme"]?.upstreamKeys["up"] != nil)
        let newKey = try Crypto.randomBytes(32)
        #expect(try ConfigStore(db).reencryptUpstreamKeys(from: master, to: newKey) == 1)
        #expect(
            try ConfigStore(db).snapshot(masterKey: newKey).tenants["acme"]?.upstreamKeys["up"]?.value
                == "sk-live-secret-0123456789")
        try apply(db, "tenants: {acme: {upstream_keys: {up: null}}}\n", key: newKey)
        #expect(try db.query("SELECT COUNT(*) FROM upstream_keys").first?.first?.int == 0)
    }

    /// A row sealed before keys were bound to their tenant opens in any tenant's row: workers refuse it,
    /// and opening the database with the master key re-seals it bound.
    @Test(arguments: TestEngine.available) func anUnboundRowIsRefusedUntilResealed(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        let master = try Crypto.randomBytes(32)
        try apply(db, text, key: master)
        let legacy = try Crypto.seal(Array("sk-old-format-key".utf8), key: master)
        try db.statement("UPDATE upstream_keys SET sealed = ?").run([.blob(legacy)])
        let store = ConfigStore(db)
        // Before: it opened, in whatever tenant's row it was put.
        #expect(try store.snapshot(masterKey: master).tenants["acme"]?.upstreamKeys["up"] == nil)
        #expect(try store.snapshot(masterKey: master).tenants["acme"]?.unavailableUpstreamKeys == ["up"])
        #expect(try store.resealLegacyUpstreamKeys(masterKey: master) == 1)
        #expect(try store.snapshot(masterKey: master).tenants["acme"]?.upstreamKeys["up"]?.value == "sk-old-format-key")
        #expect(try store.resealLegacyUpstreamKeys(masterKey: master) == 0)
        // Bound now: the same bytes in another backend's row do not open.
        let bound = try db.query("SELECT sealed FROM upstream_keys").first?.first?.blob ?? []
        #expect(throws: (any Error).self) {
            try UpstreamKeySeal.open(bound, key: master, tenant: "globex", backend: "up")
        }
    }

    @Test(arguments: TestEngine.available) func aReferenceToNothingIsRefused(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        let yaml = text.replacingOccurrences(of: "sk-live-secret-0123456789", with: "\"encrypted:sk-…6789\"")
        #expect(throws: ConfigError.self) { try apply(db, yaml, key: try Crypto.randomBytes(32)) }
    }
}

@Suite struct CheckpointerTests {
    static func fileSize(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    }

    @Test func oneProcessCheckpointsAndTheNextTakesOverWhenItGoes() throws {
        let db = try tempDB()
        try db.execute("PRAGMA wal_autocheckpoint=0")
        _ = try db.checkpoint()
        var first: Checkpointer? = Checkpointer(dbPath: db.path)
        let second = Checkpointer(dbPath: db.path)
        #expect(first?.claim() == true)
        #expect(first?.claim() == false && first?.holds == true)  // held: not taken again
        #expect(!second.claim() && !second.holds)
        // Rows go to the WAL; only the holder's checkpoint copies them into the database file.
        let before = try CheckpointerTests.fileSize(db.path)
        try db.execute("CREATE TABLE filler(b BLOB)")
        try db.execute("INSERT INTO filler VALUES (zeroblob(1000000))")
        try second.checkpoint(db)
        #expect(try CheckpointerTests.fileSize(db.path) == before)
        try first?.checkpoint(db)
        #expect(try CheckpointerTests.fileSize(db.path) > before + 900_000)
        // The holder goes (its process ends): the next claim elsewhere takes the role.
        first = nil
        #expect(second.claim() && second.holds)
        // A draining worker resigns: another takes the role, and the resigned one never takes it back.
        second.resign()
        let third = Checkpointer(dbPath: db.path)
        #expect(third.claim())
        third.resign()
        #expect(!second.claim() && !second.holds)
    }

    @Test func aLockFileThatCannotBeOpenedIsReportedAndNeverClaimed() {
        let checkpointer = Checkpointer(dbPath: "/nonexistent-dir-\(UUID().uuidString)/tenantgate.db")
        #expect(!checkpointer.lockUnavailable)  // not tried yet
        #expect(!checkpointer.claim() && !checkpointer.holds)
        #expect(checkpointer.lockUnavailable)
    }

    @Test func connectionsCanLeaveCheckpointsToTheCheckpointer() throws {
        let path = try tempDB().path
        Maintenance.leaveCheckpointsToOneProcess()
        let leaving = try SQLiteConnection(path: path)
        SQLiteConnection.setAutoCheckpoint(pages: nil)
        let plain = try SQLiteConnection(path: path)
        #expect(try leaving.query("PRAGMA wal_autocheckpoint").first?[0].int == 16384)
        #expect(try plain.query("PRAGMA wal_autocheckpoint").first?[0].int == 1000)
    }
}
