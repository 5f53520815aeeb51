import Foundation
import Testing

@testable import TenantGateSystem

/// The libpq wrapper against a real server: `scripts/test` starts one and sets `TG_TEST_POSTGRES_URL`
/// (the suite is skipped, and says so, when it is not set).
let postgresURL = ProcessInfo.processInfo.environment["TG_TEST_POSTGRES_URL"]

/// scripts/test sets `TG_REQUIRE_POSTGRES=1`: there the suite must run, not be skipped.
@Test func postgresSuiteRunsWhereRequired() {
    let required = ProcessInfo.processInfo.environment["TG_REQUIRE_POSTGRES"] == "1"
    #expect(!required || postgresURL != nil, "TG_REQUIRE_POSTGRES=1 but TG_TEST_POSTGRES_URL is not set")
}

@Suite(.enabled(if: postgresURL != nil, "needs TG_TEST_POSTGRES_URL (scripts/test starts a server)"), .serialized)
struct PostgresConnectionTests {
    func connect() throws -> PostgresConnection { try PostgresConnection(url: postgresURL ?? "") }

    /// A table of this test's own (tests in other processes share the server).
    func table(_ db: PostgresConnection, _ columns: String) throws -> String {
        let name = "t_\(UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: ""))"
        try db.execute("CREATE TABLE \(name) (\(columns))")
        return name
    }

    @Test func valuesRoundTripExactly() throws {
        let db = try connect()
        let t = try table(db, "i bigint, d double precision, s text, b bytea, n bigint")
        let blob = (0...255).map { UInt8($0) }
        let cases: [[SQLValue]] = [
            [.int(.max), .double(0.1), .text("héllo ☃ 🚀"), .blob(blob), .null],
            [.int(.min), .double(-1e300), .text(""), .blob([]), .int(0)],
            [.int(-1), .double(.infinity), .text("O'Reilly; DROP TABLE x; --"), .null, .null],
        ]
        for row in cases { try db.query("INSERT INTO \(t) VALUES ($1, $2, $3, $4, $5)", row) }
        #expect(db.changes == 1)
        let back = try db.query("SELECT i, d, s, b, n FROM \(t) ORDER BY i DESC")
        #expect(back == [cases[0], cases[2], cases[1]])
        let nan = try db.query("SELECT $1::double precision", [.double(.nan)])
        guard case .double(let value)? = nan.first?.first else { throw PostgresError(sqlState: "", message: "\(nan)") }
        #expect(value.isNaN)
    }

    @Test func aggregatesAndBooleansComeBackAsNumbers() throws {
        let db = try connect()
        let t = try table(db, "v bigint")
        for v: Int64 in [1 << 62, 1 << 62, 5] { try db.query("INSERT INTO \(t) VALUES ($1)", [.int(v)]) }
        // SUM(bigint) is numeric: whole and in range → .int, else .double.
        #expect(
            try db.query("SELECT SUM(v) - \(1 << 62), COUNT(*), 1.5::numeric, true, false FROM \(t)")
                == [[.int((1 << 62) + 5), .int(3), .double(1.5), .int(1), .int(0)]])
        #expect(try db.query("SELECT SUM(v) FROM \(t)") == [[.double(Double(Int64(1 << 62)) * 2 + 5)]])
    }

    @Test func textWithANulIsRefusedNotCut() throws {
        let db = try connect()
        #expect(throws: PostgresError.self) { try db.query("SELECT $1::text", [.text("a\u{0}b")]) }
        #expect(try db.query("SELECT $1::text", [.text("still usable")]) == [[.text("still usable")]])
    }

    @Test func statementsArePreparedOncePerConnection() throws {
        let db = try connect()
        for i in 0..<20 { #expect(try db.query("SELECT $1::bigint + 1", [.int(Int64(i))]) == [[.int(Int64(i + 1))]]) }
        let prepared = try db.query(
            "SELECT COUNT(*) FROM pg_prepared_statements WHERE statement = 'SELECT $1::bigint + 1'")
        #expect(prepared == [[.int(1)]])
    }

    @Test func errorsCarryTheirSQLStateAndRollBack() throws {
        let db = try connect()
        let t = try table(db, "k text PRIMARY KEY")
        try db.query("INSERT INTO \(t) VALUES ('a')")
        do {
            try db.transaction {
                try db.query("INSERT INTO \(t) VALUES ('b')")
                try db.query("INSERT INTO \(t) VALUES ('a')")
            }
            Issue.record("a duplicate key must throw")
        } catch let error as PostgresError {
            #expect(error.isUniqueViolation && !error.isRetryable && !error.isStorageFailure)
        }
        #expect(try db.query("SELECT k FROM \(t) ORDER BY k") == [[.text("a")]])
        #expect(throws: PostgresError.self) { try db.query("SELEC 1") }
        do { try db.query("SELEC 1") } catch let error as PostgresError { #expect(error.sqlState == "42601") }
        // The connection is usable after errors, inside and outside transactions.
        #expect(try db.transaction { try db.query("SELECT COUNT(*) FROM \(t)") } == [[.int(1)]])
    }

    @Test func sqliteStyleParametersRunUnchanged() throws {
        let db = try connect()
        let t = try table(db, "k text PRIMARY KEY, v bigint NOT NULL")
        let upsert =
            "INSERT INTO \(t)(k, v) VALUES (?1, ?2) ON CONFLICT(k) DO UPDATE SET v = \(t).v + excluded.v RETURNING v"
        #expect(try db.query(upsert, [.text("a"), .int(2)]) == [[.int(2)]])
        #expect(try db.query(upsert, [.text("a"), .int(3)]) == [[.int(5)]])
        #expect(try db.query("SELECT v FROM \(t) WHERE k = ? AND v > ?", [.text("a"), .int(4)]) == [[.int(5)]])
    }

    /// Two connections each read a counter and write it back + 1, 200 times, at once: inside write
    /// transactions no increment is lost (without the store-wide lock, READ COMMITTED would lose some).
    @Test func writeTransactionsRunOneAtATime() throws {
        let setup = try connect()
        let t = try table(setup, "id int PRIMARY KEY, v bigint NOT NULL")
        try setup.query("INSERT INTO \(t) VALUES (1, 0)")
        let failures = Locked(0)
        DispatchQueue.concurrentPerform(iterations: 2) { _ in
            do {
                let db = try connect()
                for _ in 0..<200 {
                    try db.writeTransaction {
                        let v = try db.query("SELECT v FROM \(t) WHERE id = 1").first?.first?.int ?? -1
                        try db.query("UPDATE \(t) SET v = ? WHERE id = 1", [.int(v + 1)])
                    }
                }
            } catch {
                failures.withLock { $0 += 1 }
            }
        }
        #expect(failures.withLock { $0 } == 0)
        #expect(try setup.query("SELECT v FROM \(t)") == [[.int(400)]])
        #expect(setup.engine == .postgres)
    }

    /// Queued statements go with the next statement that needs an answer, in order: a read sees every
    /// write queued before it, a body of queued writes alone commits (one round trip: BEGIN, the lock,
    /// the writes and COMMIT), and the connection's own statements are unchanged in between.
    @Test func queuedStatementsRunInOrderAndCommit() throws {
        let db = try connect()
        let t = try table(db, "k text PRIMARY KEY, v bigint NOT NULL")
        let add = try db.prepared("INSERT INTO \(t) VALUES (?1, ?2) ON CONFLICT(k) DO UPDATE SET v = \(t).v + ?2")
        try db.writeTransaction {
            for i in 0..<600 { try add.queue([.text("k\(i % 7)"), .int(1)]) }  // more than one pipeline's worth
            #expect(try db.query("SELECT SUM(v) FROM \(t)") == [[.int(600)]])
            try add.queue([.text("late"), .int(5)])
        }
        #expect(try db.query("SELECT v FROM \(t) WHERE k = 'late'") == [[.int(5)]])
        try db.writeTransaction { try add.queue([.text("only"), .int(1)]) }
        #expect(try db.query("SELECT COUNT(*) FROM \(t)") == [[.int(9)]])
        // Outside a transaction a queued statement runs at once.
        try add.queue([.text("now"), .int(2)])
        #expect(try db.query("SELECT v FROM \(t) WHERE k = 'now'") == [[.int(2)]])
        // An empty transaction sends nothing and leaves no transaction open.
        try db.writeTransaction {}
        #expect(throws: PostgresError.self) { try db.execute("SAVEPOINT outside") }  // no transaction is open
    }

    /// A queued statement that fails (found at the next statement or the commit) fails the transaction:
    /// nothing of it stays, not what was queued before the failure nor after; the connection goes on.
    @Test func aFailingQueuedStatementRollsBackTheTransaction() throws {
        let db = try connect()
        let t = try table(db, "k text PRIMARY KEY")
        try db.query("INSERT INTO \(t) VALUES ('a')")
        let insert = try db.prepared("INSERT INTO \(t) VALUES (?)")
        for readInside in [false, true] {
            do {
                try db.writeTransaction {
                    try insert.queue([.text("b")])
                    try insert.queue([.text("a")])  // duplicate key
                    try insert.queue([.text("c")])
                    if readInside { _ = try db.query("SELECT COUNT(*) FROM \(t)") }
                }
                Issue.record("a duplicate key must fail the transaction")
            } catch let error as PostgresError {
                #expect(error.isUniqueViolation, "\(error)")
            }
            #expect(try db.query("SELECT k FROM \(t) ORDER BY k") == [[.text("a")]])
        }
        // A parameter that cannot be sent (text with a NUL) fails the same way.
        #expect(throws: PostgresError.self) {
            try db.writeTransaction {
                try insert.queue([.text("d")])
                try insert.queue([.text("e\u{0}")])
            }
        }
        #expect(try db.query("SELECT k FROM \(t) ORDER BY k") == [[.text("a")]])
        try db.writeTransaction { try insert.queue([.text("z")]) }
        #expect(try db.query("SELECT k FROM \(t) ORDER BY k") == [[.text("a")], [.text("z")]])
        // Transactions do not nest (an inner COMMIT would end the outer one early): refused, nothing kept.
        #expect(throws: PostgresError.self) {
            try db.writeTransaction {
                try insert.queue([.text("y")])
                try db.writeTransaction { try insert.queue([.text("x")]) }
            }
        }
        #expect(try db.query("SELECT k FROM \(t) ORDER BY k") == [[.text("a")], [.text("z")]])
    }

    @Test func aBrokenConnectionIsMadeAgainForTheNextStatement() throws {
        let db = try connect()
        let admin = try connect()
        #expect(try db.query("SELECT ?1::bigint", [.int(1)]) == [[.int(1)]])
        let pid = try db.query("SELECT pg_backend_pid()").first?.first?.int ?? 0
        try admin.query("SELECT pg_terminate_backend(?1::int)", [.int(pid)])
        // The statement that finds the connection gone fails as a storage failure; the next one reconnects
        // (and prepares its statement again).
        do {
            try db.query("SELECT ?1::bigint", [.int(2)])
            Issue.record("a terminated connection must fail once")
        } catch let error as PostgresError {
            #expect(error.isStorageFailure, "\(error)")
        }
        #expect(try db.query("SELECT ?1::bigint", [.int(3)]) == [[.int(3)]])
        #expect(try db.query("SELECT pg_backend_pid()").first?.first?.int != pid)
    }

    @Test func unreachableServerIsAStorageFailure() throws {
        do {
            _ = try PostgresConnection(url: "postgres://tenantgate@127.0.0.1:1/tenantgate?connect_timeout=2")
            Issue.record("connecting to port 1 must fail")
        } catch let error as PostgresError {
            #expect(error.isStorageFailure)
            #expect(!error.message.isEmpty)
        }
    }

    @Test func notificationsReachListeners() throws {
        let listener = try connect()
        let sender = try connect()
        let channel = "tg_test_\(UInt32.random(in: 0...UInt32.max))"
        try listener.listen(channel)
        #expect(try listener.notifications(timeoutMs: 50).isEmpty)
        // Inside a transaction, delivered only at commit.
        try sender.transaction {
            try sender.notify(channel, payload: "acme")
            #expect(try listener.notifications(timeoutMs: 100).isEmpty)
        }
        #expect(
            try listener.notifications(timeoutMs: 2000) == [PostgresNotification(channel: channel, payload: "acme")])
    }

    /// A connection lost under a pipelined transaction is made again with its `LISTEN`s: notifications
    /// still arrive (the configuration poller's connection also runs the sweep's transactions).
    @Test func aConnectionLostInAPipelineListensAgain() throws {
        let listener = try connect()
        let sender = try connect()
        let t = try table(listener, "k text PRIMARY KEY")
        let channel = "tg_test_\(UInt32.random(in: 0...UInt32.max))"
        try listener.listen(channel)
        let insert = try listener.prepared("INSERT INTO \(t) VALUES (?)")
        try listener.writeTransaction { try insert.queue([.text("z")]) }  // its statements prepared already
        let pid = try listener.query("SELECT pg_backend_pid()").first?.first?.int ?? 0
        try sender.query("SELECT pg_terminate_backend(?1::int)", [.int(pid)])
        // The pipeline (BEGIN, the lock, the insert, COMMIT) meets the lost connection.
        #expect(throws: PostgresError.self) { try listener.writeTransaction { try insert.queue([.text("a")]) } }
        #expect(try listener.query("SELECT pg_backend_pid()").first?.first?.int != pid)
        try sender.notify(channel, payload: "after")
        #expect(
            try listener.notifications(timeoutMs: 2000) == [PostgresNotification(channel: channel, payload: "after")])
        try listener.writeTransaction { try insert.queue([.text("b")]) }
        #expect(try listener.query("SELECT k FROM \(t) ORDER BY k") == [[.text("b")], [.text("z")]])
    }
}

@Suite struct PostgresPlaceholderTests {
    @Test func numbersParametersAsSQLiteDoes() {
        #expect(PostgresSQL.placeholders("SELECT ? , ?, ?") == "SELECT $1 , $2, $3")
        #expect(PostgresSQL.placeholders("WHERE a = ?2 AND b = ?1 AND c = ?") == "WHERE a = $2 AND b = $1 AND c = $3")
        #expect(PostgresSQL.placeholders("VALUES (?3, ?, ?1)") == "VALUES ($3, $4, $1)")
        #expect(PostgresSQL.placeholders("SELECT $1") == "SELECT $1")
    }

    @Test func leavesQuotedTextAndCommentsAlone() {
        #expect(
            PostgresSQL.placeholders("SELECT '?', 'it''s ?', ? -- why?\n, \"col?\" /* ? */ , ?")
                == "SELECT '?', 'it''s ?', $1 -- why?\n, \"col?\" /* ? */ , $2")
        // Unterminated quotes and comments end the text without a crash.
        #expect(PostgresSQL.placeholders("SELECT 'abc") == "SELECT 'abc")
        #expect(PostgresSQL.placeholders("SELECT ? /* x") == "SELECT $1 /* x")
        #expect(PostgresSQL.placeholders("é ? ü") == "é $1 ü")
    }
}
