import ArgumentParser
import TenantGateCore
import TenantGateHTTP
import TenantGateStore
import TenantGateSystem

struct PolicyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy", abstract: "Try a tenant's guardrail policies, and measure the detectors.",
        subcommands: [Check.self, Bench.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a text (a file, or - for standard input) against a tenant's rules of one phase.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var only: TenantChoice
        @Argument(help: "The text's file, or - for standard input.") var file: String = "-"
        @Option(help: "ingress, midstream or egress.") var phase: String = "egress"

        func run() throws {
            try reporting {
                guard let phase = PolicyPhase(rawValue: phase) else {
                    throw CLIError("--phase must be ingress, midstream or egress")
                }
                // `policy check --tenant acme FILE`: the one positional is the file, not a second tenant.
                var only = only
                var file = file
                if let option = only.option, let positional = only.positional, positional != option, file == "-" {
                    file = positional
                    only.positional = nil
                }
                let db = try global.open()
                guard let id = try only.resolve(db, required: true) else { return }
                let config = try ConfigStore(db).snapshot()
                guard let tenant = config.tenants[id] else { throw CLIError.unknownTenant(id) }
                let verdict = GuardrailTools.check(Array(try readText(file).utf8), tenant: tenant, phase: phase)
                print(
                    JSONValue.object([
                        ("blocked_by", verdict.blockedBy.map { .string($0.name) } ?? .null),
                        ("triggers", verdict.triggers.json),
                        ("text", .string(String(decoding: verdict.text, as: UTF8.self))),
                    ]).jsonString)
                // A script can test it: the text would be refused.
                if verdict.blockedBy != nil { throw ExitCode(TenantGateCommand.Exit.runtime) }
            }
        }
    }

    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Detector throughput on one core (MB/s over 8 MiB of prose), and the cost of one message.")
        @Flag var json = false
        @Flag(help: "Also each detector on its own.") var each = false

        func run() throws {
            let rows = GuardrailTools.benchmark(perDetector: each)
            if json {
                print(JSONValue.object(rows.map { ($0.0, .number(String(Int($0.1)))) }).jsonString)
            } else {
                for (name, value) in rows {
                    print(name.hasSuffix("(µs each)") ? "\(name)\t\(value)" : "\(name)\t\(Int(value)) MB/s")
                }
            }
        }
    }
}
