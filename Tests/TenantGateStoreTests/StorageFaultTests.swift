import Foundation
import Testing

@testable import TenantGateCore
@testable import TenantGateStore
@testable import TenantGateSystem

/// SQLite's own method: fail the Nth write (or sync, or every write from the Nth on: a full disk), N = 0,
/// 1, 2, … until the operation completes without reaching the fault. Each failed attempt must change
/// nothing (every table as before, `integrity_check` ok) and the same connection must then do the
/// operation once the fault is gone.
@Suite(.serialized) struct StorageFaultTests {
    /// A database migrated and prepared by `setup`, copied afresh for each attempt.
    final class Template {
        let path: String
        init(_ setup: (SQLiteConnection) throws -> Void) throws {
            path =
                FileManager.default.temporaryDirectory.appendingPathComponent("tg-fault-\(UUID().uuidString).db").path
            let db = try SQLiteConnection(path: path)
            try Migrations.migrate(db)
            try setup(db)
            try db.checkpoint(restart: true)
        }

        func copy() throws -> String {
            let copy = path + "-\(UUID().uuidString)"
            try FileManager.default.copyItem(atPath: path, toPath: copy)
            return copy
        }
    }

    /// Every row of every table, in order: what an operation may change.
    static func fingerprint(_ path: String) throws -> [String] {
        let db = try SQLiteConnection(path: path)
        var out: [String] = []
        let tables = try db.query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .compactMap { $0[0].text }
        for table in tables where !table.hasPrefix("sqlite_") {
            for row in try db.query("SELECT * FROM \"\(table)\" ORDER BY 1") {
                out.append("\(table): \(row.map { "\($0)" }.joined(separator: "|"))")
            }
        }
        #expect(try db.query("PRAGMA integrity_check").first?[0].text == "ok")
        return out
    }

    /// Runs `operation` under every fault until it completes untouched; returns how many attempts failed.
    @discardableResult
    static func faultLoop(
        _ template: Template, failure: SQLiteFaults.Failure, _ operation: (SQLiteConnection) throws -> Void,
        check: (SQLiteConnection) throws -> Void
    ) throws -> Int {
        let operations: SQLiteFaults.Operations =
            failure == .syncError ? [.sync] : failure == .diskFull ? [.write, .truncate] : [.write]
        var failed = 0
        for n in 0..<2_000 {
            let path = try template.copy()
            let before = try fingerprint(path)
            let db = try SQLiteConnection(path: path, vfs: SQLiteFaults.vfs)
            SQLiteFaults.arm(operations, after: n, failure: failure, persistent: failure == .diskFull)
            var completed = true
            do {
                try operation(db)
            } catch let error as SQLiteError {
                completed = false
                #expect(error.isStorageFailure, "\(error)")
            }
            let fired = SQLiteFaults.fired
            SQLiteFaults.disarm()
            if completed {
                try check(db)
            } else {
                failed += 1
                // Nothing of the failed attempt is visible, to this connection or another.
                #expect(try fingerprint(path) == before, "attempt \(n) with \(failure) left a trace")
                // Space is back: the same connection does it now.
                try operation(db)
                try check(db)
            }
            #expect(try db.query("PRAGMA integrity_check").first?[0].text == "ok")
            if !fired { return failed }
        }
        Issue.record("the operation never completed")
        return failed
    }

    static let budget = try? limits(#"{"budget":{"daily_usd":10},"rate_limit":{"requests_per_minute":100}}"#)
    static let failures: [SQLiteFaults.Failure] = [.writeError, .diskFull, .syncError]

    @Test(arguments: failures) func aReservationCommitsWholeOrNotAtAll(failure: SQLiteFaults.Failure) throws {
        let template = try Template { _ in }
        let limits = try #require(StorageFaultTests.budget)
        let failed = try StorageFaultTests.faultLoop(template, failure: failure) { db in
            _ = try AccountingStore(db).reserve(
                tenant: "a", limits: limits, need: one, nowMs: day0, expiresMs: day0 + 60_000)
        } check: { db in
            let held = try db.query("SELECT COUNT(*), SUM(tokens) FROM reservations").first
            let counter = try db.query("SELECT reserved_tokens FROM budget_counters WHERE scope = 'tenant:a'").first
            #expect(held == [.int(1), .int(10)] && counter == [.int(10)])
        }
        if failure != .syncError { #expect(failed > 0) }
    }

    @Test(arguments: failures) func aSettlementCommitsWholeOrNotAtAll(failure: SQLiteFaults.Failure) throws {
        let limits = try #require(StorageFaultTests.budget)
        let template = try Template { db in
            _ = try AccountingStore(db).reserve(
                tenant: "a", limits: limits, need: one, nowMs: day0, expiresMs: day0 + 60_000)
        }
        let failed = try StorageFaultTests.faultLoop(template, failure: failure) { db in
            try AccountingStore(db).settle(reservation: 1, record: record("a", at: day0 + 5, tokens: 8, cost: 700))
        } check: { db in
            let held = try db.query("SELECT COUNT(*) FROM reservations").first
            let rows = try db.query("SELECT COUNT(*), SUM(tokens_in + tokens_out) FROM executions").first
            let counter = try db.query(
                "SELECT used_tokens, used_nano, reserved_tokens FROM budget_counters WHERE scope = 'tenant:a'"
            ).first
            #expect(held == [.int(0)] && rows == [.int(1), .int(8)] && counter == [.int(8), .int(700), .int(0)])
        }
        if failure != .syncError { #expect(failed > 0) }
    }

    @Test(arguments: failures) func aConfigImportCommitsWholeOrNotAtAll(failure: SQLiteFaults.Failure) throws {
        let template = try Template { _ in }
        let document = try ConfigState.validateFile(try YAMLConfig.parse(yaml))
        let failed = try StorageFaultTests.faultLoop(template, failure: failure) { db in
            try ConfigStore(db).apply { $0.merging(document, prune: false) }
        } check: { db in
            let name = try ConfigStore(db).snapshot().tenants["acme"]?.name
            #expect(name == "Acme <Corp> 'quoted'")
        }
        if failure != .syncError { #expect(failed > 0) }
    }

    @Test(arguments: failures) func anAdminChangeCommitsWholeOrNotAtAll(failure: SQLiteFaults.Failure) throws {
        let document = try ConfigState.validateFile(try YAMLConfig.parse(yaml))
        let template = try Template { db in try ConfigStore(db).apply { $0.merging(document, prune: false) } }
        let failed = try StorageFaultTests.faultLoop(template, failure: failure) { db in
            _ = try KeyStore(db).create(tenant: "acme", name: "ops")
        } check: { db in
            let keys = try ConfigStore(db).activeKeys()
            #expect(keys.count == 1)
        }
        if failure != .syncError { #expect(failed > 0) }
    }
}
