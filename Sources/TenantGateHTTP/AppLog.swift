import TenantGateCore
import TenantGateSystem

/// JSON-lines application log: one `write(2)` per line on an O_APPEND file, so lines from many
/// threads and processes never interleave (a process killed mid-write leaves a fragment, and the next
/// line follows it on the same line: every line starts with `{"ts":` so readers recover it). Fields
/// follow the SPEC; no secrets or prompt text go in.
public final class AppLog: Sendable {
    private let path: String?
    private let fd: Locked<Int32>
    private let minLevel: Int

    static let levels = ["debug": 0, "info": 1, "warn": 2, "error": 3]

    /// Logs to `path` (nil: standard error).
    public init(path: String?, level: String = "info") {
        self.path = path
        let opened = path.map { Posix.openAppend($0) } ?? 2
        fd = Locked(opened < 0 ? 2 : opened)
        minLevel = AppLog.levels[level] ?? 1
    }

    /// Reopens the file (after logrotate moved it).
    public func reopen() {
        guard let path else { return }
        let next = Posix.openAppend(path)
        guard next >= 0 else { return }
        fd.withLock { old in
            if old > 2 { Posix.close(old) }
            old = next
        }
    }

    /// Whether a line at `level` would be written (callers skip building fields that would be dropped).
    public func enabled(_ level: String) -> Bool { (AppLog.levels[level] ?? 1) >= minLevel }

    /// Writes one line with `ts`, `level`, `msg` and `fields`.
    public func write(_ msg: String, level: String = "info", _ fields: [(String, JSONValue)]) {
        guard enabled(level) else { return }
        var members: [(String, JSONValue)] = [
            ("ts", .string(AppLog.timestamp(Posix.wallMicros()))), ("level", .string(level)), ("msg", .string(msg)),
        ]
        members.append(contentsOf: fields)
        var line = JSONValue.object(members).bytes
        line.append(0x0A)
        _ = fd.withLock { Posix.writeAll(fd: $0, line) }
    }

    /// A lifecycle event line.
    public func event(_ msg: String, _ fields: [String: JSONValue] = [:], level: String = "info") {
        write(msg, level: level, [("pid", .int(Int(Posix.pid)))] + fields.sorted { $0.key < $1.key })
    }

    /// RFC 3339 UTC with milliseconds.
    public static func timestamp(_ micros: Int64) -> String { CivilDate.rfc3339(epochMicros: micros) }
}
