import ArgumentParser
import TenantGateCore
import TenantGateStore
import TenantGateSystem

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit", abstract: "Verify and export the tamper-evident audit trail.",
        subcommands: [Verify.self, Export.self])

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every chain (or one tenant's); exits 1 naming the first bad seq and why.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var only: TenantChoice
        @Flag var json = false

        func run() throws {
            try reporting {
                let db = try global.open()
                var only = only
                only.allowsSystem = true
                let tenant = try only.resolve(db, required: false)
                let chain = try AuditChain(db)
                let faults = try chain.verify(tenant: tenant)
                let chains = try tenant.map { [$0] } ?? chain.tenants()
                if json {
                    print(
                        JSONValue.object([
                            ("ok", .bool(faults.isEmpty)), ("chains", .int(chains.count)),
                            ("key_check", .string(chain.keyCheck)),
                            ("faults", .array(faults.map { .string("\($0)") })),
                        ]).jsonString)
                } else {
                    for fault in faults { printError("audit: \(fault)") }
                }
                guard faults.isEmpty else { throw ExitCode(TenantGateCommand.Exit.runtime) }
                if !json { print("ok: \(chains.count) chain(s) verify (key check \(chain.keyCheck))") }
            }
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One tenant's events as JSON lines, each with its MACs (hex), for offline verification.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var only: TenantChoice
        @Option(
            help:
                "Only events at or after this time: ISO 8601 (2026-12-01, 2026-12-01T12:00:00Z) or a duration back (2h, 7d)."
        )
        var since: String?
        @Option(help: "jsonl (the only format).") var format: String = "jsonl"

        func run() throws {
            try reporting {
                guard format == "jsonl" else { throw CLIError("--format must be jsonl") }
                let db = try global.open()
                var only = only
                only.allowsSystem = true
                guard let tenant = try only.resolve(db, required: true) else { return }
                let sinceMs = try since.map { try CLITime.epochMs($0) } ?? 0
                let chain = try AuditChain(db)
                print(
                    JSONValue.object([
                        ("key_check", .string(chain.keyCheck)), ("format", .string("tenantgate-audit-1")),
                    ]).jsonString)
                for event in try chain.events(tenant: tenant, sinceMs: sinceMs) {
                    print(
                        JSONValue.object([
                            ("tenant", .string(event.tenant)), ("seq", .int(Int(event.seq))),
                            ("ts_ms", .int(Int(event.tsMs))), ("ts", .string(CLITime.iso(event.tsMs))),
                            ("kind", .string(event.kind)), ("actor", .string(event.actor)),
                            ("body", .string(event.body)),
                            ("prev_mac", .string(Crypto.hex(event.prevMAC))), ("mac", .string(Crypto.hex(event.mac))),
                        ]).jsonString)
                }
            }
        }
    }
}
