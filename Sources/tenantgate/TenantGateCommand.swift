import ArgumentParser
import TenantGateAdmin
import TenantGateCore
import TenantGateHTTP
import TenantGateRuntime
import TenantGateServing
import TenantGateStore
import TenantGateSystem

@main
struct TenantGateCommand: ParsableCommand {
    /// This build's release (`tenantgate --version`).
    static let release = "0.30.0"

    static let configuration = CommandConfiguration(
        commandName: "tenantgate",
        abstract: "A multi-tenant LLM gateway behind nginx (FastCGI worker pool, SQLite).",
        version: "tenantgate \(TenantGateCommand.release) (schema \(Migrations.current))",
        subcommands: [
            ServeCommand.self, WorkerCommand.self, MigrateCommand.self, ConfigCommand.self, TenantCommand.self,
            KeyCommand.self, PromptCommand.self, UsageCommand.self, PruneCommand.self, UpstreamKeysCommand.self,
            AdminCommand.self, PolicyCommand.self, CacheCommand.self, AuditCommand.self, DocsCommand.self,
            DbCommand.self,
        ]
    )

    /// Exit codes, the same for every command: 0 done, 1 a runtime error (or `policy check`'s text blocked,
    /// `audit verify`'s chain broken), 2 a usage error (bad arguments), 3 not found (an unknown tenant,
    /// key, prompt, collection…). Every error is one line `error: …` on standard error.
    enum Exit {
        static let runtime: Int32 = 1
        static let usage: Int32 = 2
        static let notFound: Int32 = 3
    }

    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .validationFailure {
                // ArgumentParser's "Error: …" and usage, as one style: `error: …`, exit 2.
                var message = fullMessage(for: error)
                if message.hasPrefix("Error: ") { message = "error: " + message.dropFirst("Error: ".count) }
                printError(message)
                exit(withError: ExitCode(Exit.usage))
            }
            exit(withError: error)
        }
    }
}

/// `--db` shared by every command.
struct GlobalOptions: ParsableArguments {
    @Option(
        name: .long,
        help:
            "SQLite database (default: $TENANTGATE_DB, else $TENANTGATE_HOME/tenantgate.db, else the home scripts/run uses: the checkout's var/ for a binary built in it, else ./var)."
    )
    var db: String?

    var path: String {
        if let db { return db }
        if let env = Posix.env("TENANTGATE_DB"), !env.isEmpty { return env }
        return GlobalOptions.home + "/tenantgate.db"
    }

    /// The runtime home, resolved as `scripts/run` does from any directory: `$TENANTGATE_HOME`, else the
    /// `var/` of the checkout this binary was built in (`<checkout>/.build/…/tenantgate`), else `./var`.
    static var home: String {
        if let home = Posix.env("TENANTGATE_HOME"), !home.isEmpty { return home }
        var dir = Posix.executablePath()
        while let slash = dir.lastIndex(of: "/"), slash > dir.startIndex {
            dir = String(dir[..<slash])
            if dir.hasSuffix("/.build") {
                let checkout = String(dir.dropLast("/.build".count))
                if Posix.exists(checkout + "/scripts/run") && Posix.exists(checkout + "/Package.swift") {
                    return checkout + "/var"
                }
                break
            }
        }
        return "./var"
    }

    /// Opens the database and brings the schema up to date (upstream keys sealed before they were bound
    /// to their tenant are re-sealed, when the master key is at hand: workers refuse such rows).
    func open() throws -> any SQLConnection {
        CLIWrites.opened.withLock { $0 = path }
        if !path.contains("://"), let slash = path.lastIndex(of: "/"), !Posix.exists(String(path[..<slash])) {
            throw CLIError(
                "no TenantGate home at \(path[..<slash]) (database \(path)): start one with scripts/run, or set TENANTGATE_HOME (or --db) to the home of the instance you mean"
            )
        }
        let conn = try Database.open(path: path)
        try Migrations.migrate(conn)
        if let masterKey = try? MasterKey.load(dbPath: path) {
            _ = try? ConfigStore(conn).resealLegacyUpstreamKeys(masterKey: masterKey)
        }
        return conn
    }
}

/// What a command that changes the database tells its user on standard error, once: which database it
/// changed (so a CLI pointed at another home than the running gateway's is noticed at once), and a warning
/// when no live worker uses that database.
enum CLIWrites {
    static let opened = Locked<String?>(nil)
    private static let told = Locked(false)

    /// After a change to `db` (called by the audit hooks every write goes through).
    static func changed(_ db: any SQLConnection) {
        // Scripts that set up a home before its gateway starts say so (`TENANTGATE_CLI_QUIET=1`).
        let first = told.withLock { told in
            defer { told = true }
            return !told
        }
        guard first, Posix.env("TENANTGATE_CLI_QUIET") != "1", let path = opened.withLock({ $0 }) else { return }
        let shown = path.hasPrefix("/") || path.contains("://") ? path : Posix.currentDirectory() + "/" + path
        printError("database: \(path.contains("://") ? "PostgreSQL" : shown)")
        let since = Posix.wallMicros() / 1000 - 10_000
        if let live = try? WorkerRegistry(db).alive(sinceMs: since), live.workers == 0 {
            printError(
                "warning: no running gateway uses this database (no worker heartbeat in the last 10 s); "
                    + "a gateway started with another TENANTGATE_HOME will not see this change")
        }
    }
}

/// Prints to standard error.
func printError(_ message: String) {
    Posix.writeAll(fd: 2, Array((message + "\n").utf8))
}

/// A failure the CLI reports as one line and a non-zero exit (3 when something named does not exist).
struct CLIError: Error, CustomStringConvertible {
    let description: String
    let notFound: Bool
    init(_ description: String, notFound: Bool = false) {
        self.description = description
        self.notFound = notFound
    }

    /// `unknown tenant 'x'`, exit 3.
    static func unknownTenant(_ id: String) -> CLIError { CLIError("unknown tenant '\(id)'", notFound: true) }
}

/// Runs `body`, turning our errors into a message on stderr and exit code 1.
func reporting(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as ConfigError {
        printError("error: \(error)")
        throw ExitCode(1)
    } catch let error as CLIError {
        printError("error: \(error)")
        throw ExitCode(error.notFound ? TenantGateCommand.Exit.notFound : TenantGateCommand.Exit.runtime)
    } catch let error as StoreError {
        printError("error: \(error)")
        if case .notFound = error { throw ExitCode(TenantGateCommand.Exit.notFound) }
        throw ExitCode(1)
    } catch let error as SQLiteError {
        printError("error: database: \(error)")
        throw ExitCode(1)
    } catch let error as PostgresError {
        printError("error: database: \(error)")
        throw ExitCode(1)
    }
}

struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate", abstract: "Create or upgrade the database schema.")
    @OptionGroup var global: GlobalOptions
    @Flag var json = false

    func run() throws {
        try reporting {
            let conn = try Database.open(path: global.path)
            let applied = try Migrations.migrate(conn)
            var resealed = 0
            if let masterKey = try MasterKey.load(dbPath: global.path) {
                resealed = try ConfigStore(conn).resealLegacyUpstreamKeys(masterKey: masterKey)
            }
            if json {
                return print(
                    JSONValue.object([
                        ("schema_version", .int(try Migrations.version(conn))), ("applied", .int(applied)),
                        ("resealed_upstream_keys", .int(resealed)),
                    ]).jsonString)
            }
            print(
                "schema version \(try Migrations.version(conn)) (\(applied) migration(s) applied"
                    + (resealed > 0 ? ", \(resealed) upstream key(s) re-sealed to their tenant)" : ")"))
        }
    }
}

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Run the FastCGI worker pool (supervisor + N worker processes).")
    @OptionGroup var global: GlobalOptions
    @Option(help: "unix:PATH or HOST:PORT") var listen: String = "127.0.0.1:9000"
    @Option(help: "Worker processes.") var workers: Int = 2
    @Option(
        help:
            "Threads per worker: each holds one request, its upstream call included, so workers × threads is how many calls the pool holds at once."
    )
    var threads: Int = 600
    @Option(help: "Application log file (JSON lines); default: standard error.") var log: String?
    @Option(help: "Log level: debug, info, warn, error.") var logLevel: String = "info"
    @Option(help: "Largest request body in bytes (keep equal to nginx client_max_body_size).")
    var maxBody: Int = 1 << 20
    @Option(help: "Milliseconds in-flight requests may take after SIGTERM.") var drainTimeout: Int = 30_000
    @Option(
        help:
            "With HOST:PORT: comma-separated IPv4 addresses of the web servers allowed to connect (default 127.0.0.1)."
    )
    var allowFrom: String = "127.0.0.1"
    @Option(
        help:
            "durable: a successful answer ends once its settlement is committed (nothing a client saw is lost to a kill); fast: settlements follow the answer in batches (more throughput). Default: TENANTGATE_SETTLE or durable."
    )
    var settle: String = Posix.env("TENANTGATE_SETTLE").flatMap { $0.isEmpty ? nil : $0 } ?? "durable"

    func validate() throws {
        let parts = allowFrom.split(separator: ",", omittingEmptySubsequences: false)
        guard !parts.isEmpty,
            parts.allSatisfy({ part in
                let octets = part.split(separator: ".", omittingEmptySubsequences: false)
                return octets.count == 4 && octets.allSatisfy { UInt8($0) != nil }
            })
        else { throw ValidationError("--allow-from takes IPv4 addresses separated by commas") }
        guard (1...256).contains(workers) else { throw ValidationError("--workers must be 1-256") }
        guard (1...4096).contains(threads) else { throw ValidationError("--threads must be 1-4096") }
        guard workers * 2 <= SharedCounters.rows else {
            throw ValidationError("--workers must be at most \(SharedCounters.rows / 2)")
        }
        guard maxBody >= 1024 else { throw ValidationError("--max-body must be at least 1024") }
        guard ["durable", "fast"].contains(settle) else { throw ValidationError("--settle takes durable or fast") }
    }

    func run() throws {
        try reporting {
            _ = try global.open()  // migrate on start
        }
        let appLog = AppLog(path: log, level: logLevel)
        // Read by libfcgi in every worker (they inherit the environment): only these peers may connect.
        Posix.setEnv("FCGI_WEB_SERVER_ADDRS", allowFrom)
        var args = [
            "--db", global.path, "--threads", String(threads), "--max-body", String(maxBody), "--log-level", logLevel,
            "--drain-timeout", String(drainTimeout), "--settle", settle,
        ]
        if let log { args += ["--log", log] }
        args += ["--pool-slots", String(workers * threads)]
        let supervisor = Supervisor(
            listen: listen, workers: workers, workerArgs: args, log: appLog, drainTimeoutMs: drainTimeout,
            countersPath: global.path + "-inflight")
        throw ExitCode(supervisor.run())
    }
}

struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Serve FastCGI on the socket inherited as fd 0 (for spawn-fcgi, mod_fcgid or `serve`).")
    @OptionGroup var global: GlobalOptions
    @Option var threads: Int = 8
    @Option var log: String?
    @Option var logLevel: String = "info"
    @Option var maxBody: Int = 1 << 20
    @Option var drainTimeout: Int = 30_000
    @Option(help: "The pool's shared in-flight counters (set by serve).") var counters: String?
    @Option(help: "This worker's row in the counters (set by serve).") var poolIndex: Int = 0
    @Option(help: "Request slots of the whole pool (default: --threads).") var poolSlots: Int?
    @Option(help: "durable or fast (see serve).")
    var settle: String = Posix.env("TENANTGATE_SETTLE").flatMap { $0.isEmpty ? nil : $0 } ?? "durable"

    func run() throws {
        var options = WorkerOptions(
            dbPath: global.path, threads: max(1, threads), maxBodyBytes: maxBody, logPath: log, logLevel: logLevel,
            drainTimeoutMs: drainTimeout)
        options.admin = try AdminApp(dbPath: global.path)
        options.countersPath = counters
        options.poolIndex = poolIndex
        options.poolSlots = poolSlots
        options.durableSettlements = settle != "fast"
        let worker = Worker(options: options)
        throw ExitCode(worker.run())
    }
}

/// The tenant a command is about, named the same way everywhere: positional (`usage acme`) or
/// `--tenant acme`, an unknown one refused with exit 3 (`resolve`).
struct TenantChoice: ParsableArguments {
    @Argument(help: ArgumentHelp("The tenant (or --tenant).", valueName: "tenant")) var positional: String?
    @Option(name: .customLong("tenant"), help: "The tenant (the same as the positional argument).")
    var option: String?

    /// The audit commands also take `_system`, the deployment's own chain.
    var allowsSystem = false

    enum CodingKeys: CodingKey { case positional, option }

    /// The tenant named, if any (both forms naming different tenants is a usage error).
    func name() throws -> String? {
        if let positional, let option, positional != option {
            throw ValidationError("the tenant is named twice: '\(positional)' and --tenant '\(option)'")
        }
        guard let id = positional ?? option else { return nil }
        guard TenantID(id) != nil || (id == "_system" && allowsSystem) else {
            throw ValidationError("tenant id must match [a-z0-9][a-z0-9_-]{0,62}")
        }
        return id
    }

    /// The tenant named, which must exist in `db`'s configuration (`_system`: the deployment's chain).
    func resolve(_ db: any SQLConnection, required: Bool) throws -> String? {
        guard let id = try name() else {
            if required { throw CLIError("name the tenant (positional or --tenant)") }
            return nil
        }
        if id != "_system", try ConfigStore(db).loadState().tenants[id] == nil { throw CLIError.unknownTenant(id) }
        return id
    }
}

/// Times on the command line: ISO 8601 in (`2026-12-01`, `2026-12-01T12:00:00Z`) and out.
enum CLITime {
    /// Epoch milliseconds of an ISO 8601 date or UTC date-time, or of a duration back from now (`90s`,
    /// `10m`, `2h`, `7d`).
    static func epochMs(_ text: String) throws -> Int64 {
        // Epoch milliseconds, as `--since` took before.
        if text.count >= 12, text.allSatisfy({ $0.isASCII && $0.isNumber }), let ms = Int64(text) { return ms }
        if let unit = text.last, let n = Int64(text.dropLast()), n >= 0, n <= 36_500 * 86_400 {
            let scale: Int64? = ["s": 1, "m": 60, "h": 3600, "d": 86_400][unit]
            if let scale { return Posix.wallMicros() / 1000 - n * scale * 1000 }
        }
        let bytes = Array(text.utf8)
        func number(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= bytes.count, bytes[range].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                return nil
            }
            return Int(String(decoding: bytes[range], as: UTF8.self))
        }
        guard
            bytes.count == 10
                || (bytes.count == 20 && bytes[19] == UInt8(ascii: "Z") && bytes[10] == UInt8(ascii: "T")),
            bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-"),
            let y = number(0..<4), let m = number(5..<7), let d = number(8..<10), (1...12).contains(m),
            (1...31).contains(d), CivilDate.from(days: CivilDate.days(year: y, month: m, day: d)) == (y, m, d)
        else {
            throw CLIError("a time must be ISO 8601 (2026-12-01, 2026-12-01T12:00:00Z) or a duration (10m, 2h, 7d)")
        }
        var seconds = Int64(CivilDate.days(year: y, month: m, day: d)) * 86_400
        if bytes.count == 20 {
            guard bytes[13] == UInt8(ascii: ":"), bytes[16] == UInt8(ascii: ":"),
                bytes[11...18].allSatisfy({ $0 == UInt8(ascii: ":") || ($0 >= 0x30 && $0 <= 0x39) }),
                let h = number(11..<13), let mi = number(14..<16), let s = number(17..<19), h < 24, mi < 60, s < 60
            else { throw CLIError("a time must be ISO 8601: 2026-12-01 or 2026-12-01T12:00:00Z") }
            seconds += Int64(h * 3600 + mi * 60 + s)
        }
        return seconds * 1000
    }
}

extension CLITime {
    /// Epoch milliseconds of an ISO 8601 date or UTC date-time, or of a duration ahead of now (`90s`,
    /// `12h`, `30d`): an expiry.
    static func aheadMs(_ text: String) throws -> Int64 {
        if let unit = text.last, "smhd".contains(unit), let n = Int64(text.dropLast()), n >= 0 {
            let back = try epochMs(text)
            let now = Posix.wallMicros() / 1000
            return now.saturatingAdd(now - back)
        }
        return try epochMs(text)
    }

    /// Seconds of a duration (`90s`, `10m`, `24h`, `7d`).
    static func seconds(_ text: String) throws -> Int64 {
        guard let unit = text.last, "smhd".contains(unit), let n = Int64(text.dropLast()), n >= 0,
            n <= 36_500 * 86_400
        else { throw CLIError("a duration is a number and s, m, h or d (90s, 10m, 24h, 7d)") }
        let scale: Int64 = ["s": 1, "m": 60, "h": 3600, "d": 86_400][unit] ?? 1
        return n * scale
    }

    /// `2026-12-01T12:00:00Z` for epoch milliseconds.
    static func iso(_ ms: Int64) -> String {
        String(CivilDate.dateTime(epochMs: ms).map { $0 == " " ? "T" : $0 }) + "Z"
    }
}
