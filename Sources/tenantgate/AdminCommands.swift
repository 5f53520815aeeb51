import ArgumentParser
import TenantGateCore
import TenantGateStore
import TenantGateSystem

/// `tenantgate admin password`: create an admin user or change its password.
struct AdminCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "admin", abstract: "Admin page users.", subcommands: [Password.self])

    struct Password: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Create an admin user or set its password (read from standard input; PBKDF2-HMAC-SHA256, 600,000 rounds). Ends the user's sessions."
        )
        @OptionGroup var global: GlobalOptions
        @Option(help: "User name.") var user: String = "admin"

        func run() throws {
            try reporting {
                let name = user
                guard !name.isEmpty, name.utf8.count <= 64, name.allSatisfy({ !$0.isWhitespace && !$0.isNewline })
                else { throw CLIError("--user must be 1-64 characters without spaces") }
                let input = try readText("-")
                // One line: the password (a trailing newline from `echo` or a terminal is not part of it).
                var password = input
                while password.hasSuffix("\n") || password.hasSuffix("\r") { password.removeLast() }
                guard !password.contains("\n") else { throw CLIError("the password must be a single line") }
                guard password.count >= 12 else { throw CLIError("the password must have at least 12 characters") }
                guard password.utf8.count <= 1024 else { throw CLIError("the password is longer than 1024 bytes") }
                try AdminStore(try global.open()).setPassword(
                    user: name, password: password, nowMs: Posix.wallMicros() / 1000, by: CLIAudit.user,
                    address: "local")
                print("admin user \(name): password set")
            }
        }
    }
}

/// CLI changes go to the admin audit log too, as user `cli:$USER` from address `local`.
enum CLIAudit {
    static var user: String { "cli:" + (Posix.userName() ?? "uid:\(Posix.userID())") }

    /// The hook for `ConfigStore.apply(…, written:)`: the audit entries commit with the change.
    static func written(_ db: any SQLConnection, action: String) -> (ConfigState, ConfigState) throws -> Void {
        { before, after in
            try AdminStore(db).auditConfigChange(
                user: user, address: "local", action: action, before: before, after: after,
                atMs: Posix.wallMicros() / 1000)
            CLIWrites.changed(db)
        }
    }

    /// One entry, inside the caller's transaction.
    static func entry(
        _ db: any SQLConnection, action: String, target: String, before: JSONValue? = nil, after: JSONValue? = nil
    ) throws {
        try AdminStore(db).audit(
            user: user, address: "local", action: action, target: target, before: before?.jsonString,
            after: after?.jsonString, atMs: Posix.wallMicros() / 1000)
        CLIWrites.changed(db)
    }

    /// One entry, in its own transaction.
    static func record(
        _ db: any SQLConnection, action: String, target: String, before: JSONValue? = nil, after: JSONValue? = nil
    ) throws {
        let admin = AdminStore(db)
        try admin.transaction {
            try admin.audit(
                user: user, address: "local", action: action, target: target, before: before?.jsonString,
                after: after?.jsonString, atMs: Posix.wallMicros() / 1000)
        }
        CLIWrites.changed(db)
    }
}
