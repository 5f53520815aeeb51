import ArgumentParser
import TenantGateCore
import TenantGateStore
import TenantGateSystem

struct PromptCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prompt", abstract: "Prompt template history and rollback.",
        subcommands: [History.self, Rollback.self])

    struct History: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List saved versions of a template, newest first.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var only: TenantChoice
        @Option(
            name: [.customLong("template"), .customLong("name")],
            help: "Template name (`default` is system_prompt); --name is accepted too.")
        var name: String = "default"
        @Flag var json = false

        func run() throws {
            try reporting {
                let db = try global.open()
                guard let tenant = try only.resolve(db, required: true) else { return }
                let rows = try ConfigStore(db).promptHistory(tenant: tenant, name: name)
                if json {
                    print(
                        JSONValue.array(
                            rows.map {
                                .object([
                                    ("version", .int($0.version)),
                                    ("created_at", .string(CLITime.iso($0.createdAt * 1000))),
                                    ("template", .string($0.template)),
                                ])
                            }
                        ).jsonString)
                } else {
                    for row in rows {
                        let firstLine = row.template.split(separator: "\n").first.map(String.init) ?? ""
                        print("v\(row.version)\t\(CLITime.iso(row.createdAt * 1000))\t\(firstLine.prefix(80))")
                    }
                }
            }
        }
    }

    struct Rollback: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make an earlier version current again (saved as a new version).")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var only: TenantChoice
        @Option(
            name: [.customLong("template"), .customLong("name")],
            help: "Template name (`default` is system_prompt); --name is accepted too.")
        var name: String = "default"
        @Option var version: Int
        @Flag var json = false

        func run() throws {
            try reporting {
                let db = try global.open()
                guard let tenant = try only.resolve(db, required: true) else { return }
                guard
                    let row = try ConfigStore(db).promptHistory(tenant: tenant, name: name).first(where: {
                        $0.version == version
                    })
                else { throw StoreError.notFound("version \(version) of prompt '\(name)' of tenant '\(tenant)'") }
                let text = ConfigNode.scalar(row.template, quoted: true, line: nil)
                let node: ConfigNode =
                    name == "default"
                    ? .mapping([(key: "system_prompt", value: text, line: nil)], line: nil)
                    : .mapping(
                        [
                            (
                                key: "prompts", value: .mapping([(key: name, value: text, line: nil)], line: nil),
                                line: nil
                            )
                        ],
                        line: nil)
                try TenantCommand.applyTenant(global, tenant, node, mustExist: true, action: "prompt_rollback")
                if json {
                    return print(
                        JSONValue.object([
                            ("tenant", .string(tenant)), ("name", .string(name)), ("version", .int(version)),
                        ]).jsonString)
                }
                print("prompt '\(name)' of tenant \(tenant) rolled back to v\(version)")
            }
        }
    }
}
