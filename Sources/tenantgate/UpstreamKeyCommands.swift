import ArgumentParser
import TenantGateCore
import TenantGateStore
import TenantGateSystem

struct UpstreamKeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upstream-keys", abstract: "Managed upstream (provider) keys, sealed at rest.",
        subcommands: [List.self, RotateMaster.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List stored keys, masked.")
        @OptionGroup var global: GlobalOptions
        @Flag var json = false

        func run() throws {
            try reporting {
                let rows = try ConfigStore(try global.open()).upstreamKeyHints()
                if json {
                    print(
                        JSONValue.array(
                            rows.map {
                                .object([
                                    ("tenant", .string($0.tenant)), ("backend", .string($0.backend)),
                                    ("key", .string($0.hint)),
                                ])
                            }
                        ).jsonString)
                } else {
                    for row in rows { print("\(row.tenant)\t\(row.backend)\t\(row.hint)") }
                }
            }
        }
    }

    struct RotateMaster: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-master",
            abstract: "Make a new master key, re-seal every stored key under it and replace master.key.")
        @OptionGroup var global: GlobalOptions

        func run() throws {
            try reporting {
                guard Posix.env("TENANTGATE_MASTER_KEY")?.isEmpty ?? true else {
                    throw CLIError("the master key comes from TENANTGATE_MASTER_KEY: rotate it there, not in a file")
                }
                let path = global.path
                let dir = path.contains("/") ? String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]) : "."
                let keyPath = dir + "/master.key"
                guard let old = try MasterKey.file(keyPath) else { throw CLIError("no master key at \(keyPath)") }
                let new = try Crypto.randomBytes(32)
                let db = try global.open()
                let temp = keyPath + ".new"
                var count = 0
                // The old key stays linked as master.key.previous until the new sealing is committed: if
                // the COMMIT fails after the file was replaced, the old key goes back, matching the
                // database again.
                let previous = keyPath + ".previous"
                Posix.unlink(previous)
                guard Posix.link(keyPath, previous) else { throw CLIError("cannot keep a copy at \(previous)") }
                do {
                    // The file is replaced inside the transaction, before COMMIT: workers reload only after
                    // the commit bumps the config version, and then find the new key in place.
                    try db.transaction {
                        count = try ConfigStore(db).reencryptUpstreamKeysInTransaction(from: old, to: new)
                        // The event is chained while the audit key still opens under the old master key; then
                        // the audit key (the same key) is re-sealed under the new one, so every chain keeps
                        // verifying.
                        try AdminStore(db).audit(
                            user: "cli", address: "local", action: "master_key_rotate", target: AuditChain.system,
                            before: nil, after: JSONValue.object([("upstream_keys", .int(count))]).jsonString,
                            atMs: Posix.wallMicros() / 1000)
                        try AuditChain.reseal(db, from: old, to: new)
                        guard Posix.writeFileSynced(temp, Array((Crypto.hex(new) + "\n").utf8), mode: 0o600) else {
                            throw CLIError("cannot write \(temp)")
                        }
                        guard Posix.rename(temp, keyPath) else { throw CLIError("cannot replace \(keyPath)") }
                    }
                } catch {
                    // (When the file was never replaced, both names are one file and rename does nothing.)
                    Posix.rename(previous, keyPath)
                    Posix.unlink(previous)
                    Posix.unlink(temp)
                    throw error
                }
                Posix.unlink(previous)
                print("re-sealed \(count) upstream key(s); \(keyPath) holds the new master key")
            }
        }
    }
}
