import ArgumentParser
import TenantGateCore
import TenantGateStore
import TenantGateSystem

/// Reads a whole file (or stdin for "-") as UTF-8; refuses invalid UTF-8.
func readText(_ path: String) throws -> String {
    let bytes: [UInt8]
    do {
        bytes = try Posix.readAll(path, limit: 8 << 20)
    } catch .cannotOpen {
        throw CLIError("cannot open \(path)")
    } catch .cannotRead {
        throw CLIError("cannot read \(path)")
    } catch .tooLarge {
        throw CLIError("\(path) is larger than 8 MiB")
    }
    guard let text = String(validating: bytes, as: UTF8.self) else { throw CLIError("\(path) is not valid UTF-8") }
    return text
}

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config", abstract: "Import or export the YAML configuration.",
        subcommands: [Import.self, Export.self])

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Upsert tenants, backends, models and defaults from a YAML file (atomic, idempotent).")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "YAML file, or - for standard input.") var file: String
        @Flag(help: "Remove what the file does not name.") var prune = false
        @Flag var json = false

        func run() throws {
            try reporting {
                let node = try YAMLConfig.parse(try readText(file))
                let document = try ConfigState.validateFile(node)
                let db = try global.open()
                let store = ConfigStore(db)
                let before = try store.version()
                let masterKey = try MasterKey.load(dbPath: global.path)
                try store.apply(
                    masterKey: masterKey, { $0.merging(document, prune: prune) },
                    written: CLIAudit.written(db, action: "config_import"))
                let after = try store.version()
                let missing = try store.snapshot(masterKey: masterKey).missingBackendKeys(env: Posix.env)
                if json {
                    print(
                        JSONValue.object([
                            ("changed", .bool(after != before)), ("version", .int(Int(after))),
                            (
                                "backends_missing_keys",
                                .array(
                                    missing.map {
                                        .object([("backend", .string($0.backend)), ("variable", .string($0.variable))])
                                    })
                            ),
                        ]).jsonString)
                } else {
                    print(after == before ? "configuration unchanged" : "configuration imported (version \(after))")
                }
                Import.warnMissingKeys(missing)
            }
        }

        /// A backend that calls would reach without a key (its `api_key_env` is not set here, and some
        /// tenant has no key of its own for it): said now, not at the first 503.
        static func warnMissingKeys(_ missingKeys: [MissingBackendKey]) {
            for missing in missingKeys {
                let tenants =
                    missing.tenants.prefix(5).joined(separator: ", ") + (missing.tenants.count > 5 ? ", …" : "")
                printError(
                    "warning: backend '\(missing.backend)': \(missing.variable) is not set in this environment; calls of \(tenants) "
                        + "to it will be refused (503 upstream_key_missing) until the gateway runs with it set, "
                        + "or the tenant has a key of its own (tenants.<id>.upstream_keys)")
            }
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the configuration as YAML (or --json).")
        @OptionGroup var global: GlobalOptions
        @Flag var json = false

        func run() throws {
            try reporting {
                let document = try ConfigStore(try global.open()).loadState().document()
                print(json ? document.jsonString : YAMLConfig.render(document), terminator: json ? "\n" : "")
            }
        }
    }
}

struct TenantCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tenant", abstract: "Create, list, show, change and delete tenants.",
        subcommands: [Create.self, List.self, Show.self, Set.self, Delete.self])

    /// Applies a one-tenant document through the same validation as `config import`.
    static func applyTenant(
        _ global: GlobalOptions, _ id: String, _ tenant: ConfigNode, mustExist: Bool?, action: String = "tenant_update"
    ) throws {
        guard TenantID(id) != nil else { throw CLIError("tenant id must match [a-z0-9][a-z0-9_-]{0,62}") }
        let file = ConfigNode.mapping(
            [(key: "tenants", value: .mapping([(key: id, value: tenant, line: nil)], line: nil), line: nil)], line: nil)
        let document = try ConfigState.validateFile(file)
        let db = try global.open()
        try ConfigStore(db).apply(
            masterKey: try MasterKey.load(dbPath: global.path),
            { state in
                if let mustExist {
                    if mustExist && state.tenants[id] == nil { throw StoreError.notFound("tenant '\(id)'") }
                    if !mustExist && state.tenants[id] != nil {
                        throw StoreError.invalid("tenant '\(id)' already exists")
                    }
                }
                return state.merging(document, prune: false)
            }, written: CLIAudit.written(db, action: action))
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a tenant.")
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        @Option var name: String?
        @Option(help: "Comma-separated allowed models; the first is the default.") var models: String = ""
        @Flag var json = false

        func run() throws {
            try reporting {
                var pairs: [(key: String, value: ConfigNode, line: Int?)] = [
                    (key: "name", value: .scalar(name ?? id, quoted: true, line: nil), line: nil)
                ]
                let list = models.split(separator: ",").map { ConfigNode.scalar(String($0), quoted: true, line: nil) }
                pairs.append((key: "models", value: .sequence(list, line: nil), line: nil))
                try TenantCommand.applyTenant(
                    global, id, .mapping(pairs, line: nil), mustExist: false, action: "tenant_create")
                if json {
                    return print(JSONValue.object([("tenant", .string(id)), ("created", .bool(true))]).jsonString)
                }
                print("tenant \(id) created")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tenants.")
        @OptionGroup var global: GlobalOptions
        @Flag var json = false

        func run() throws {
            try reporting {
                let state = try ConfigStore(try global.open()).loadState()
                let ids = state.tenants.keys.sorted()
                if json {
                    let rows: [JSONValue] = ids.map { id in
                        .object([
                            ("id", .string(id)), ("name", state.tenants[id]?["name"] ?? .string(id)),
                            ("models", state.tenants[id]?["models"] ?? .array([])),
                        ])
                    }
                    print(JSONValue.array(rows).jsonString)
                } else {
                    for id in ids {
                        let name = state.tenants[id]?["name"]?.stringValue ?? id
                        let models = (state.tenants[id]?["models"]?.arrayValue ?? []).compactMap(\.stringValue)
                        print("\(id)\t\(name)\t\(models.joined(separator: ","))")
                    }
                }
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one tenant's settings.")
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        @Flag var json = false

        func run() throws {
            try reporting {
                guard let tenant = try ConfigStore(try global.open()).loadState().tenants[id] else {
                    throw StoreError.notFound("tenant '\(id)'")
                }
                let doc = JSONValue.object([("id", .string(id))] + (tenant.objectValue ?? []))
                print(json ? doc.jsonString : YAMLConfig.render(doc), terminator: json ? "\n" : "")
            }
        }
    }

    struct Set: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set one setting: `tenant set acme rate_limit.requests_per_minute 100` (value in YAML).")
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        @Argument(help: "Dotted key path.") var key: String
        @Argument(help: "Value as YAML (e.g. 100, true, \"[a, b]\", null).") var value: String
        @Flag var json = false

        func run() throws {
            try reporting {
                var node = try YAMLConfig.parse(value)
                for part in key.split(separator: ".").reversed() {
                    node = .mapping([(key: String(part), value: node, line: nil)], line: nil)
                }
                try TenantCommand.applyTenant(global, id, node, mustExist: true)
                if json {
                    return print(
                        JSONValue.object([("tenant", .string(id)), ("updated", .string(key))]).jsonString)
                }
                print("tenant \(id): \(key) updated")
            }
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a tenant (its keys are revoked).")
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        @Flag var json = false

        func run() throws {
            try reporting {
                let db = try global.open()
                try ConfigStore(db).apply(
                    { state in
                        guard state.tenants[id] != nil else { throw StoreError.notFound("tenant '\(id)'") }
                        return state.removingTenant(id)
                    }, written: CLIAudit.written(db, action: "tenant_delete"))
                if json {
                    return print(JSONValue.object([("tenant", .string(id)), ("deleted", .bool(true))]).jsonString)
                }
                print("tenant \(id) deleted")
            }
        }
    }
}

struct KeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key", abstract: "Issue, list and revoke gateway API keys.",
        subcommands: [Create.self, List.self, Update.self, Rotate.self, Revoke.self])

    /// `--models a,b` checked against the tenant's allow-list (a key can only narrow it).
    static func models(_ list: String?, tenant: String, db: any SQLConnection) throws -> [String]? {
        guard let list else { return nil }
        let names = list.split(separator: ",", omittingEmptySubsequences: false).map { String($0).trimmingASCII() }
        guard !names.isEmpty, names.allSatisfy({ !$0.isEmpty }) else {
            throw CLIError("--models takes model names separated by commas")
        }
        let allowed = try ConfigStore(db).snapshot().tenants[tenant]?.models ?? []
        for name in names where !allowed.contains(name) {
            throw CLIError(
                "model '\(name)' is not on tenant \(tenant)'s allow-list (\(allowed.joined(separator: ", ")))")
        }
        return names
    }

    /// `--expires DATE|DURATION` in epoch seconds (`never`: nil); it must be in the future.
    static func expiry(_ text: String) throws -> Int64? {
        guard text != "never" else { return nil }
        let at = try CLITime.aheadMs(text) / 1000
        guard at > Posix.wallMicros() / 1_000_000 else { throw CLIError("--expires must be in the future") }
        return at
    }

    /// A key as `--json` prints it (with what it spent today and this month, UTC, when known).
    static func json(_ k: KeyInfo, spend: (day: Int64, month: Int64)? = nil) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("id", .string(k.id)), ("tenant", .string(k.tenant)), ("name", .string(k.name)),
            ("prefix", .string(k.prefix)), ("created_at", .string(CLITime.iso(k.createdAt * 1000))),
            ("last_used_at", k.lastUsedAt.map { .string(CLITime.iso($0 * 1000)) } ?? .null),
            ("expires_at", k.expiresAt.map { .string(CLITime.iso($0 * 1000)) } ?? .null),
            ("models", k.models.map { .array($0.map { .string($0) }) } ?? .null),
            ("previous_secret_until", k.previousUntil.map { .string(CLITime.iso($0 * 1000)) } ?? .null),
            ("revoked", .bool(k.revokedAt != nil)),
        ]
        if let spend {
            members.append(("spent_today_usd", .number(Money.usdString(nano: spend.day))))
            members.append(("spent_this_month_usd", .number(Money.usdString(nano: spend.month))))
        }
        return .object(members)
    }

    /// What each key spent, per tenant of `keys` (today and this month, UTC).
    static func spend(_ keys: [KeyInfo], db: any SQLConnection) throws -> [String: (day: Int64, month: Int64)] {
        let today = String(CLITime.iso(Posix.wallMicros() / 1000).prefix(10))
        var out: [String: (day: Int64, month: Int64)] = [:]
        for tenant in Swift.Set(keys.map(\.tenant)) {
            out.merge(try KeyStore(db).spend(tenant: tenant, day: today)) { a, _ in a }
        }
        return out
    }

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a key; the key is printed once, as the last line.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var only: TenantChoice
        @Option var name: String = ""
        @Option(help: "Models the key may use, comma-separated (a subset of the tenant's; default: all of them).")
        var models: String?
        @Option(
            help: "When the key stops working: a date (2027-01-01, 2027-01-01T12:00:00Z) or a duration (30d, 12h, 90s)."
        )
        var expires: String?
        @Flag var json = false

        func run() throws {
            try reporting {
                guard name.utf8.count <= 200 else { throw CLIError("--name is longer than 200 bytes") }
                let db = try global.open()
                guard let tenant = try only.resolve(db, required: true) else { return }
                let settings = KeySettings(
                    models: try KeyCommand.models(models, tenant: tenant, db: db),
                    expiresAt: try expires.flatMap(KeyCommand.expiry))
                let (id, secret) = try KeyStore(db).create(tenant: tenant, name: name, settings: settings) { id in
                    try CLIAudit.entry(
                        db, action: "key_create", target: tenant,
                        after: JSONValue.object([
                            ("key_id", .string(id)), ("name", .string(name)),
                            ("models", settings.models.map { .array($0.map { .string($0) }) } ?? .null),
                            ("expires_at", settings.expiresAt.map { .int(Int($0)) } ?? .null),
                        ]))
                }
                if json {
                    return print(
                        JSONValue.object([("id", .string(id)), ("tenant", .string(tenant)), ("key", .string(secret))])
                            .jsonString)
                }
                print("created \(id) for tenant \(tenant); store this key now, it is not shown again:")
                print(secret)
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List keys (never their secrets).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var only: TenantChoice
        @Flag var json = false

        func run() throws {
            try reporting {
                let db = try global.open()
                let keys = try KeyStore(db).list(tenant: try only.resolve(db, required: false))
                let spend = try KeyCommand.spend(keys, db: db)
                if json {
                    print(JSONValue.array(keys.map { KeyCommand.json($0, spend: spend[$0.id] ?? (0, 0)) }).jsonString)
                } else {
                    let now = Posix.wallMicros() / 1_000_000
                    for k in keys {
                        let state =
                            k.revokedAt != nil
                            ? "revoked" : (k.expiresAt.map { $0 <= now } ?? false) ? "expired" : "active"
                        let expiry = k.expiresAt.map { "expires " + CLITime.iso($0 * 1000) } ?? "no expiry"
                        let used = k.lastUsedAt.map { "used " + CLITime.iso($0 * 1000) } ?? "never used"
                        let models = k.models.map { "models " + $0.joined(separator: ",") } ?? "all models"
                        let spent = spend[k.id] ?? (0, 0)
                        let money = "today \(Money.display(nano: spent.day)), month \(Money.display(nano: spent.month))"
                        print(
                            "\(k.id)\t\(k.tenant)\t\(k.prefix)…\t\(state)\t\(expiry)\t\(used)\t\(models)\t\(money)\t\(k.name)"
                        )
                    }
                }
            }
        }
    }

    struct Update: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set",
            abstract: "Change an active key's name, models or expiry (the same id, secret and history).")
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        @Option var name: String?
        @Option(help: "Models the key may use, comma-separated, or 'all' for the tenant's.") var models: String?
        @Option(help: "A date, a duration (30d, 12h) or 'never'.") var expires: String?
        @Flag var json = false

        func run() throws {
            try reporting {
                if let name, name.utf8.count > 200 { throw CLIError("--name is longer than 200 bytes") }
                guard name != nil || models != nil || expires != nil else {
                    throw CLIError("nothing to change: give --name, --models or --expires")
                }
                let db = try global.open()
                let keys = KeyStore(db)
                guard let before = try keys.key(id: id), before.revokedAt == nil else {
                    throw StoreError.notFound("active key '\(id)'")
                }
                let list: [String]?? = try models.map {
                    $0 == "all" ? nil : try KeyCommand.models($0, tenant: before.tenant, db: db)
                }
                let expiry: Int64?? = try expires.map(KeyCommand.expiry)
                var after: KeyInfo?
                let changed = try keys.set(
                    id: id, name: name, models: list, expiresAt: expiry,
                    written: {
                        after = try keys.key(id: id)
                        try CLIAudit.entry(
                            db, action: "key_set", target: before.tenant, before: KeyCommand.json(before),
                            after: after.map { KeyCommand.json($0) })
                    })
                guard changed, let after else { throw StoreError.notFound("active key '\(id)'") }
                if json { return print(KeyCommand.json(after).jsonString) }
                print("key \(id) updated")
            }
        }
    }

    struct Rotate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue a new secret for a key (same id, settings and history); printed once, as the last line.")
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        @Option(help: "How long the previous secret keeps working (90s, 10m, 24h, 7d; default 0: not at all).")
        var grace: String = "0s"
        @Flag var json = false

        func run() throws {
            try reporting {
                let seconds = try CLITime.seconds(grace)
                let db = try global.open()
                let keys = KeyStore(db)
                guard let key = try keys.key(id: id), key.revokedAt == nil else {
                    throw StoreError.notFound("active key '\(id)'")
                }
                let until = Posix.wallMicros() / 1_000_000 + seconds
                guard
                    let secret = try keys.rotate(
                        id: id, graceSeconds: seconds,
                        written: {
                            try CLIAudit.entry(
                                db, action: "key_rotate", target: key.tenant,
                                after: JSONValue.object([
                                    ("key_id", .string(id)), ("previous_until", .string(CLITime.iso(until * 1000))),
                                ]))
                        })
                else { throw StoreError.notFound("active key '\(id)'") }
                if json {
                    return print(
                        JSONValue.object([
                            ("id", .string(id)), ("tenant", .string(key.tenant)), ("key", .string(secret)),
                            ("previous_until", .string(CLITime.iso(until * 1000))),
                        ]).jsonString)
                }
                print(
                    "rotated \(id); the previous secret works until \(CLITime.iso(until * 1000)); store this key now, it is not shown again:"
                )
                print(secret)
            }
        }
    }

    struct Revoke: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key by id.")
        @OptionGroup var global: GlobalOptions
        @Argument var id: String
        @Flag var json = false

        func run() throws {
            try reporting {
                let db = try global.open()
                let keys = KeyStore(db)
                let tenant = try keys.list(tenant: nil).first { $0.id == id }?.tenant ?? ""
                guard try keys.revoke(id: id) else { throw StoreError.notFound("active key '\(id)'") }
                try CLIAudit.record(
                    db, action: "key_revoke", target: tenant, before: JSONValue.object([("key_id", .string(id))]))
                if json {
                    return print(
                        JSONValue.object([("id", .string(id)), ("tenant", .string(tenant)), ("revoked", .bool(true))])
                            .jsonString)
                }
                print("key \(id) revoked")
            }
        }
    }
}
