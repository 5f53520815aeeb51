import ArgumentParser
import TenantGateCore
import TenantGateStore
import TenantGateSystem

#if canImport(Glibc)
    import Glibc
#endif

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
                let rows = try global.open().query("SELECT tenant_id, backend, hint FROM upstream_keys ORDER BY 1, 2")
                if json {
                    print(
                        JSONValue.array(
                            rows.map {
                                .object([
                                    ("tenant", .string($0[0].text ?? "")), ("backend", .string($0[1].text ?? "")),
                                    ("key", .string($0[2].text ?? "")),
                                ])
                            }
                        ).jsonString)
                } else {
                    for row in rows { print("\(row[0].text ?? "")\t\(row[1].text ?? "")\t\(row[2].text ?? "")") }
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
                unlink(previous)
                guard link(keyPath, previous) == 0 else { throw CLIError("cannot keep a copy at \(previous)") }
                do {
                    // The file is replaced inside the transaction, before COMMIT: workers reload only after
                    // the commit bumps the config version, and then find the new key in place.
                    try db.transaction {
                        count = try ConfigStore(db).reencryptUpstreamKeysInTransaction(from: old, to: new)
                        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
                        guard fd >= 0 else { throw CLIError("cannot write \(temp)") }
                        Posix.writeAll(fd: fd, Array((Crypto.hex(new) + "\n").utf8))
                        fsync(fd)
                        Posix.close(fd)
                        guard rename(temp, keyPath) == 0 else { throw CLIError("cannot replace \(keyPath)") }
                    }
                } catch {
                    // (When the file was never replaced, both names are one file and rename does nothing.)
                    rename(previous, keyPath)
                    unlink(previous)
                    unlink(temp)
                    throw error
                }
                unlink(previous)
                print("re-sealed \(count) upstream key(s); \(keyPath) holds the new master key")
            }
        }
    }
}
