import ArgumentParser
import TenantGateStore
import TenantGateSystem

struct DbCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db", abstract: "The store itself: copy it between SQLite and PostgreSQL.",
        subcommands: [Copy.self])

    struct Copy: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy a whole store into an empty one (stop the gateway first), then check the copy.",
            discussion: """
                Databases are named sqlite:PATH (or a path) or postgres://…; the target is migrated and must be
                empty. Every table is copied in one transaction on the target, then compared: rows per table,
                the exported configuration, the budget counters. Document collections are kept on SQLite only
                and are not copied (--skip-documents leaves them behind).
                """)
        @Option(help: "The store to copy: sqlite:PATH or postgres://…") var from: String
        @Option(help: "The empty store to fill: sqlite:PATH or postgres://…") var to: String
        @Flag(help: "Copy everything but document collections.") var skipDocuments = false

        func run() throws {
            try reporting {
                let source = try DbCommand.open(from)
                let target = try DbCommand.open(to)
                let report = try DatabaseCopy.copy(from: source, to: target, skipDocuments: skipDocuments)
                for (table, rows) in report { print("\(table)\t\(rows)") }
                print("copied \(report.reduce(0) { $0 + $1.rows }) rows; checked: rows, configuration, budget counters")
            }
        }
    }

    static func open(_ name: String) throws -> any SQLConnection {
        if name.hasPrefix("postgres://") || name.hasPrefix("postgresql://") { return try PostgresConnection(url: name) }
        let path = name.hasPrefix("sqlite:") ? String(name.dropFirst("sqlite:".count)) : name
        guard !path.isEmpty else { throw CLIError("name a database: sqlite:PATH or postgres://…") }
        return try SQLiteConnection(path: path)
    }
}
