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
        @Option(help: "Only this tenant's chain (`_system` for deployment events).") var tenant: String?

        func run() throws {
            try reporting {
                let chain = try AuditChain(try global.open())
                let faults = try chain.verify(tenant: tenant)
                for fault in faults { printError("audit: \(fault)") }
                guard faults.isEmpty else { throw ExitCode(1) }
                let chains = try tenant.map { [$0] } ?? chain.tenants()
                print("ok: \(chains.count) chain(s) verify (key check \(chain.keyCheck))")
            }
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One tenant's events as JSON lines, each with its MACs (hex), for offline verification.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "The tenant (`_system` for deployment events).") var tenant: String
        @Option(help: "Only events at or after this time (epoch milliseconds).") var since: Int64 = 0
        @Option(help: "jsonl (the only format).") var format: String = "jsonl"

        func run() throws {
            try reporting {
                guard format == "jsonl" else { throw CLIError("--format must be jsonl") }
                let chain = try AuditChain(try global.open())
                print(
                    JSONValue.object([
                        ("key_check", .string(chain.keyCheck)), ("format", .string("tenantgate-audit-1")),
                    ]).jsonString)
                for event in try chain.events(tenant: tenant, sinceMs: since) {
                    print(
                        JSONValue.object([
                            ("tenant", .string(event.tenant)), ("seq", .int(Int(event.seq))),
                            ("ts_ms", .int(Int(event.tsMs))),
                            ("kind", .string(event.kind)), ("actor", .string(event.actor)),
                            ("body", .string(event.body)),
                            ("prev_mac", .string(Crypto.hex(event.prevMAC))), ("mac", .string(Crypto.hex(event.mac))),
                        ]).jsonString)
                }
            }
        }
    }
}
