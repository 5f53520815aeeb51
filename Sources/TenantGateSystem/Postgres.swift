import CPostgres
import Glibc

/// An error from PostgreSQL (or from libpq, when the server was not reached: then `sqlState` is
/// "08006", connection failure).
public struct PostgresError: Error, CustomStringConvertible, Sendable {
    /// The five-character SQLSTATE (https://www.postgresql.org/docs/current/errcodes-appendix.html).
    public let sqlState: String
    public let message: String

    public init(sqlState: String, message: String) {
        self.sqlState = sqlState
        self.message = message
    }

    /// Serialization failure or deadlock: the transaction was rolled back and may simply be run again.
    public var isRetryable: Bool { sqlState == "40001" || sqlState == "40P01" }
    public var isUniqueViolation: Bool { sqlState == "23505" }
    /// The server cannot take the write now (disk full, out of memory, I/O error, shutting down) or the
    /// connection is gone: a request answers 503 and nothing it did was committed.
    public var isStorageFailure: Bool {
        ["53", "58", "08", "57"].contains { sqlState.hasPrefix($0) }
    }
    public var description: String { "postgres error \(sqlState): \(message)" }
}

/// A notification received on a channel this connection listens to (`LISTEN` / `pg_notify`).
public struct PostgresNotification: Sendable, Equatable {
    public let channel: String
    public let payload: String
}

/// One PostgreSQL connection through libpq. Not thread-safe: one thread uses it at a time. Statements
/// are prepared once per connection (named `tg1`, `tg2`, …) and reused; parameters are written as for
/// SQLite (`?`, `?1`: see `PostgresSQL.placeholders`) or as `$1`, `$2`, …
/// Values come back as `SQLValue`s like SQLite's: integers (and booleans, as 0 / 1) as `.int`, floating
/// point as `.double`, `bytea` as `.blob`, the rest as `.text`; `numeric` (what `SUM` of a `bigint` is) as
/// `.int` when it is whole and fits, else `.double`.
public final class PostgresConnection {
    private let conn: OpaquePointer
    private var prepared: [String: String] = [:]
    private var nextName = 0
    /// Rows changed (or returned) by the last statement.
    public private(set) var changes = 0

    /// Connects to `url` (`postgres://user:password@host:port/database?…`, or libpq's `key=value` form).
    public init(url: String) throws {
        guard let conn = PQconnectdb(url) else {
            throw PostgresError(sqlState: "08006", message: "out of memory")
        }
        guard PQstatus(conn) == CONNECTION_OK else {
            let message = PostgresConnection.message(conn)
            PQfinish(conn)
            throw PostgresError(sqlState: "08006", message: message)
        }
        self.conn = conn
        guard PQsetClientEncoding(conn, "UTF8") == 0 else {
            throw PostgresError(sqlState: "08006", message: PostgresConnection.message(conn))
        }
        try execute("SET client_min_messages = warning")
    }

    deinit { PQfinish(conn) }

    private static func message(_ conn: OpaquePointer) -> String {
        guard let text = PQerrorMessage(conn) else { return "unknown error" }
        var message = String(cString: text)
        while message.last == "\n" { message.removeLast() }
        return message
    }

    /// The connection is up (it can break: a server restart, a network failure).
    public var isConnected: Bool { PQstatus(conn) == CONNECTION_OK }

    /// Reconnects with the same parameters; prepared statements are prepared again on their next use.
    public func reconnect() throws {
        PQreset(conn)
        prepared.removeAll()
        guard isConnected else { throw PostgresError(sqlState: "08006", message: PostgresConnection.message(conn)) }
        try execute("SET client_min_messages = warning")
        let listened = channels
        channels.removeAll()
        for channel in listened.sorted() { try listen(channel) }
    }

    /// Takes a result: throws for an error status, else returns it (the caller clears it).
    private func check(_ result: OpaquePointer?) throws -> OpaquePointer {
        guard let result else { throw PostgresError(sqlState: "08006", message: PostgresConnection.message(conn)) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return result
        default:
            let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) } ?? "08006"
            var message = PQresultErrorMessage(result).map { String(cString: $0) } ?? "error"
            while message.last == "\n" { message.removeLast() }
            PQclear(result)
            throw PostgresError(sqlState: state, message: message)
        }
    }

    /// Inside `transaction`: a broken connection then fails the transaction instead of reconnecting (what
    /// ran before the break is rolled back by the server; what follows must not run outside it).
    private var inTransaction = false

    /// A connection that broke (a server restart, a failover, a network cut) is made again before the next
    /// statement outside a transaction; the statement that found it broken has failed (503), the next
    /// one goes through. Nothing is retried: a write may have committed before the break.
    private func ensureConnected() throws {
        guard PQstatus(conn) != CONNECTION_OK, !inTransaction else { return }
        try reconnect()
    }

    /// Runs one or more statements without parameters (migrations, `BEGIN`, `LISTEN`).
    public func execute(_ sql: String) throws {
        try ensureConnected()
        if !pending.isEmpty { _ = try sendPending() }
        let result = try check(PQexec(conn, sql))
        changes = Int(String(cString: PQcmdTuples(result))) ?? 0
        PQclear(result)
    }

    /// Runs `sql` (prepared once per connection) with `params` and returns every row. Inside a
    /// transaction, what was queued before it (`BEGIN`, `queue`) goes with it in one round trip.
    @discardableResult
    public func query(_ sql: String, _ params: [SQLValue] = []) throws -> [[SQLValue]] {
        try ensureConnected()
        let name = try statementName(sql)
        if !pending.isEmpty {
            pending.append(.prepared(name, params))
            return try sendPending()
        }
        let result: OpaquePointer? = try PostgresConnection.withParams(params) { values, lengths, formats in
            PQexecPrepared(conn, name, Int32(params.count), values, lengths, formats, 0)
        }
        let checked = try check(result)
        defer { PQclear(checked) }
        changes = Int(String(cString: PQcmdTuples(checked))) ?? 0
        return rows(checked)
    }

    /// A statement waiting to be sent with the next one that needs an answer (pipeline mode).
    private enum Pending {
        case begin(String)
        case prepared(String, [SQLValue])
        case text(String)
    }
    private var pending: [Pending] = []
    /// `BEGIN` was sent (else it still waits in `pending`, and nothing needs rolling back).
    private var begun = false
    /// A pipeline's results come back while it is being sent; past this many statements the client could
    /// fill both socket buffers (it sends, the server's answers wait unread): send in parts.
    static let pipelineLimit = 256

    /// Inside a transaction: `sql` with `params`, for no rows, is sent with the next statement that needs
    /// an answer (or the `COMMIT`) in one round trip; an error it meets fails that statement or the
    /// commit, and so the transaction. Outside one: runs now.
    public func queue(_ sql: String, _ params: [SQLValue]) throws {
        guard inTransaction else {
            try query(sql, params)
            return
        }
        pending.append(.prepared(try statementName(sql), params))
        if pending.count >= PostgresConnection.pipelineLimit { _ = try sendPending() }
    }

    /// Sends every pending statement in one pipeline, reads all their results, and returns the last
    /// one's rows (the first error is thrown: the server skipped the statements after it).
    private func sendPending() throws -> [[SQLValue]] {
        let batch = pending
        pending.removeAll(keepingCapacity: true)
        guard PQenterPipelineMode(conn) == 1 else {
            throw PostgresError(sqlState: "08006", message: PostgresConnection.message(conn))
        }
        var sendError: PostgresError?
        for item in batch where sendError == nil {
            let sent: Int32
            switch item {
            case .begin(let sql):
                sent = PQsendQueryParams(conn, sql, 0, nil, nil, nil, nil, 0)
                begun = true
            case .text(let sql): sent = PQsendQueryParams(conn, sql, 0, nil, nil, nil, nil, 0)
            case .prepared(let name, let params):
                do {
                    sent = try PostgresConnection.withParams(params) { values, lengths, formats in
                        PQsendQueryPrepared(conn, name, Int32(params.count), values, lengths, formats, 0)
                    }
                } catch let error as PostgresError {
                    sendError = error
                    continue
                }
            }
            if sent != 1 { sendError = PostgresError(sqlState: "08006", message: PostgresConnection.message(conn)) }
        }
        if PQpipelineSync(conn) != 1 && sendError == nil {
            sendError = PostgresError(sqlState: "08006", message: PostgresConnection.message(conn))
        }
        // Results in order: each statement's, then a NULL that ends it; at last the sync point's.
        var firstError: PostgresError?
        var lastRows: [[SQLValue]] = []
        var index = 0
        while true {
            guard let result = PQgetResult(conn) else {
                index += 1
                if index > batch.count || PQstatus(conn) != CONNECTION_OK { throw startOver() }
                continue
            }
            let status = PQresultStatus(result)
            if status == PGRES_PIPELINE_SYNC {
                PQclear(result)
                break
            }
            if status == PGRES_PIPELINE_ABORTED {
                PQclear(result)
                continue
            }
            do {
                let checked = try check(result)
                if index == batch.count - 1 {
                    changes = Int(String(cString: PQcmdTuples(checked))) ?? 0
                    lastRows = rows(checked)
                }
                PQclear(checked)
            } catch let error as PostgresError {
                if firstError == nil { firstError = error }
            }
        }
        guard PQexitPipelineMode(conn) == 1 else {
            // Results the connection still waits for: it cannot be used again as it is; start it over
            // (the transaction, if any, is gone with it: the caller fails).
            throw startOver()
        }
        if let error = sendError ?? firstError { throw error }
        return lastRows
    }

    /// A pipeline that cannot be finished: the connection is made again (its settings and `LISTEN`s
    /// with it, as after any reconnect; if that fails, the next statement tries again); returns the error
    /// to throw.
    private func startOver() -> PostgresError {
        let error = PostgresError(sqlState: "08006", message: PostgresConnection.message(conn))
        try? reconnect()
        return error
    }

    /// Every parameter's bytes in one buffer (text NUL-terminated, bytea binary with its length), as
    /// libpq's `paramValues`, `paramLengths` and `paramFormats`, valid inside `body`.
    private static func withParams<T>(
        _ params: [SQLValue],
        _ body: ([UnsafePointer<CChar>?], [Int32], [Int32]) -> T
    ) throws -> T {
        var flat: [UInt8] = []
        var offsets: [Int?] = []
        var lengths: [Int32] = []
        var formats: [Int32] = []
        for param in params {
            let bytes: [UInt8]
            var binary = false
            switch param {
            case .null:
                offsets.append(nil)
                lengths.append(0)
                formats.append(0)
                continue
            case .int(let value): bytes = Array(String(value).utf8)
            case .double(let value): bytes = Array(PostgresConnection.text(value).utf8)
            case .text(let value):
                bytes = Array(value.utf8)
                // Text goes NUL-terminated, and PostgreSQL's text cannot hold a NUL: refuse, never cut short.
                if bytes.contains(0) {
                    throw PostgresError(sqlState: "22021", message: "text parameter contains a NUL character")
                }
            case .blob(let value):
                bytes = value
                binary = true
            }
            offsets.append(flat.count)
            lengths.append(Int32(clamping: bytes.count))
            formats.append(binary ? 1 : 0)
            flat.append(contentsOf: bytes)
            if !binary { flat.append(0) }
        }
        flat.append(0)
        return flat.withUnsafeBufferPointer { buffer in
            let values: [UnsafePointer<CChar>?] = offsets.map { offset in
                guard let offset, let base = buffer.baseAddress else { return nil }
                return UnsafeRawPointer(base + offset).assumingMemoryBound(to: CChar.self)
            }
            return body(values, lengths, formats)
        }
    }

    private func statementName(_ sql: String) throws -> String {
        if let name = prepared[sql] { return name }
        // Statements naming per-tenant tables differ by table: start over rather than grow without bound.
        if prepared.count >= 512 {
            try execute("DEALLOCATE ALL")
            prepared.removeAll(keepingCapacity: true)
        }
        nextName += 1
        let name = "tg\(nextName)"
        PQclear(try check(PQprepare(conn, name, PostgresSQL.translate(sql), 0, nil)))
        prepared[sql] = name
        return name
    }

    private func rows(_ result: OpaquePointer) -> [[SQLValue]] {
        let count = Int(PQntuples(result))
        let fields = PQnfields(result)
        var rows: [[SQLValue]] = []
        rows.reserveCapacity(count)
        for row in 0..<Int32(count) {
            var values: [SQLValue] = []
            values.reserveCapacity(Int(fields))
            for field in 0..<fields {
                guard PQgetisnull(result, row, field) == 0, let raw = PQgetvalue(result, row, field) else {
                    values.append(.null)
                    continue
                }
                let length = Int(PQgetlength(result, row, field))
                let bytes = UnsafeRawBufferPointer(start: raw, count: length)
                values.append(PostgresConnection.value(bytes, type: PQftype(result, field)))
            }
            rows.append(values)
        }
        return rows
    }

    /// Type OIDs (pg_type.dat): bool 16, bytea 17, int8 20, int2 21, int4 23, oid 26, float4 700,
    /// float8 701, numeric 1700.
    static func value(_ bytes: UnsafeRawBufferPointer, type: UInt32) -> SQLValue {
        let text = String(decoding: bytes, as: UTF8.self)
        switch type {
        case 16: return .int(text == "t" ? 1 : 0)
        case 20, 21, 23, 26: return Int64(text).map { .int($0) } ?? .text(text)
        case 700, 701: return .double(Double(text) ?? .nan)
        case 1700:
            if let int = Int64(text) { return .int(int) }
            return Double(text).map { .double($0) } ?? .text(text)
        case 17: return PostgresConnection.unhex(text).map { .blob($0) } ?? .text(text)
        default: return .text(text)
        }
    }

    /// bytea in text form: `\x` then two hex digits per byte.
    static func unhex(_ text: String) -> [UInt8]? {
        guard text.hasPrefix("\\x") else { return nil }
        return Crypto.unhex(String(text.utf8.dropFirst(2)) ?? "")
    }

    /// A double as PostgreSQL reads it back exactly (Swift prints the shortest text that round-trips).
    static func text(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value < 0 ? "-Infinity" : "Infinity" }
        return "\(value)"
    }

    /// Runs `body` inside `BEGIN … COMMIT` (at `isolation`, e.g. "SERIALIZABLE"), rolling back if it throws.
    /// `BEGIN` waits to go with the first statement, the queued statements with the `COMMIT`: a transaction
    /// whose body only queues writes is one round trip.
    /// Transactions do not nest (as on SQLite): one inside another throws.
    public func transaction<T>(isolation: String? = nil, _ body: () throws -> T) throws -> T {
        guard !inTransaction else {
            throw PostgresError(sqlState: "25001", message: "a transaction is already in progress on this connection")
        }
        try ensureConnected()
        pending = [.begin(isolation.map { "BEGIN ISOLATION LEVEL \($0)" } ?? "BEGIN")]
        begun = false
        inTransaction = true
        defer {
            inTransaction = false
            pending.removeAll()
            begun = false
        }
        do {
            let value = try body()
            if begun || pending.count > 1 {
                pending.append(.text("COMMIT"))
                _ = try sendPending()
            }
            return value
        } catch {
            pending.removeAll()
            if begun { try? execute("ROLLBACK") }
            throw error
        }
    }

    /// The channels this connection listens to (listened to again after a reconnect).
    private var channels: Set<String> = []

    /// Starts listening on `channel` (quoted as an identifier); nothing to do if it already does.
    public func listen(_ channel: String) throws {
        if channels.contains(channel) && isConnected { return }
        guard let quoted = PQescapeIdentifier(conn, channel, channel.utf8.count) else {
            throw PostgresError(sqlState: "22000", message: PostgresConnection.message(conn))
        }
        let identifier = String(cString: quoted)
        PQfreemem(quoted)
        try execute("LISTEN \(identifier)")
        channels.insert(channel)
    }

    /// Sends `payload` to every connection listening on `channel` (delivered when the transaction commits).
    public func notify(_ channel: String, payload: String = "") throws {
        try query("SELECT pg_notify($1, $2)", [.text(channel), .text(payload)])
    }

    /// The notifications that arrived, waiting up to `timeoutMs` for the first one.
    public func notifications(timeoutMs: Int32) throws -> [PostgresNotification] {
        var received = try drainNotifications()
        if received.isEmpty && timeoutMs > 0 {
            let ready = tg_pq_wait_readable(conn, timeoutMs)
            if ready < 0 && errno != EINTR {
                throw PostgresError(sqlState: "08006", message: "poll failed: errno \(errno)")
            }
            if ready > 0 { received = try drainNotifications() }
        }
        return received
    }

    private func drainNotifications() throws -> [PostgresNotification] {
        guard PQconsumeInput(conn) == 1 else {
            throw PostgresError(sqlState: "08006", message: PostgresConnection.message(conn))
        }
        var received: [PostgresNotification] = []
        while let notice = PQnotifies(conn) {
            let note = notice.pointee
            received.append(
                PostgresNotification(
                    channel: note.relname.map { String(cString: $0) } ?? "",
                    payload: note.extra.map { String(cString: $0) } ?? ""))
            PQfreemem(notice)
        }
        return received
    }
}
