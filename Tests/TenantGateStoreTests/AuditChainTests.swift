import Testing

@testable import TenantGateCore
@testable import TenantGateStore
@testable import TenantGateSystem

@Suite struct AuditChainTests {
    let master = [UInt8](repeating: 7, count: 32)

    /// A database with two tenants' chains of five events each.
    func filled(_ engine: TestEngine) throws -> (any SQLConnection, AuditChain) {
        let db = try testDB(engine)
        let chain = try AuditChain(db, masterKey: master)
        try db.transaction {
            for i in 0..<5 {
                for tenant in ["acme", "globex"] {
                    try chain.append(
                        tenant: tenant, kind: "tenant_update", actor: "root",
                        body: .object([("n", .int(i)), ("who", .string(tenant))]), atMs: 1_000 + Int64(i) * 1_000)
                }
            }
        }
        return (db, chain)
    }

    func fault(_ db: any SQLConnection, _ chain: AuditChain, _ tenant: String = "acme") throws -> AuditFault? {
        try chain.verify(tenant: tenant).first
    }

    @Test(arguments: TestEngine.available) func anIntactChainVerifiesAndContinuesAcrossRestarts(_ engine: TestEngine)
        throws
    {
        let (db, chain) = try filled(engine)
        #expect(try chain.verify(tenant: nil).isEmpty)
        // A new process (a new chain object, the key opened again) continues the same chain.
        let again = try AuditChain(db, masterKey: master)
        let seq = try db.transaction {
            try again.append(tenant: "acme", kind: "key_create", actor: "cli", body: .object([]), atMs: 9_000)
        }
        #expect(seq == 6)
        #expect(try again.verify(tenant: nil).isEmpty)
        #expect(again.keyCheck == chain.keyCheck)
    }

    @Test(arguments: TestEngine.available) func everyTamperingIsFoundAtItsSeq(_ engine: TestEngine) throws {
        var (db, chain) = try filled(engine)
        try db.execute("UPDATE audit_events SET body = '{\"n\":9}' WHERE tenant = 'acme' AND seq = 3")
        #expect(try fault(db, chain)?.seq == 3)
        #expect(try fault(db, chain, "globex") == nil)

        (db, chain) = try filled(engine)
        try db.execute("DELETE FROM audit_events WHERE tenant = 'acme' AND seq = 2")
        #expect(try fault(db, chain)?.seq == 2)

        (db, chain) = try filled(engine)
        // Swap two rows' places.
        try db.execute("UPDATE audit_events SET seq = -1 WHERE tenant = 'acme' AND seq = 2")
        try db.execute("UPDATE audit_events SET seq = 2 WHERE tenant = 'acme' AND seq = 3")
        try db.execute("UPDATE audit_events SET seq = 3 WHERE tenant = 'acme' AND seq = -1")
        #expect(try fault(db, chain)?.seq == 2)

        (db, chain) = try filled(engine)
        // A forged row with an unkeyed hash in place of the MAC.
        let prev = try db.query("SELECT mac FROM audit_events WHERE tenant = 'acme' AND seq = 5")[0][0].blob ?? []
        try db.execute("UPDATE audit_heads SET seq = 6 WHERE tenant = 'acme'")
        try db.statement(
            "INSERT INTO audit_events(tenant, seq, ts_ms, kind, actor, body, prev_mac, mac) VALUES ('acme', 6, 9000, 'x', 'me', '{}', ?, ?)"
        ).run([.blob(prev), .blob(Crypto.sha256(Array("acme6x".utf8)))])
        #expect(try fault(db, chain)?.seq == 6)

        (db, chain) = try filled(engine)
        // The tail cut off.
        try db.execute("DELETE FROM audit_events WHERE tenant = 'acme' AND seq >= 4")
        #expect(try fault(db, chain)?.reason.contains("cut off") == true)

        (db, chain) = try filled(engine)
        // Another tenant's row replayed into this chain.
        try db.execute("DELETE FROM audit_events WHERE tenant = 'acme' AND seq = 4")
        try db.execute(
            "INSERT INTO audit_events SELECT 'acme', seq, ts_ms, kind, actor, body, prev_mac, mac FROM audit_events WHERE tenant = 'globex' AND seq = 4"
        )
        #expect(try fault(db, chain)?.seq == 4)

        // The wrong key fails at the first event.
        let (db2, _) = try filled(engine)
        try db2.execute("DELETE FROM audit_key")
        let other = try AuditChain(db2, masterKey: master)
        #expect(try other.verify(tenant: "acme").first?.seq == 1)
    }

    @Test(arguments: TestEngine.available) func retentionReanchorsAndTheRestStillVerifies(_ engine: TestEngine) throws {
        let (db, chain) = try filled(engine)
        #expect(try chain.prune(tenant: "acme", beforeMs: 3_500, nowMs: 10_000) == 3)
        #expect(try chain.verify(tenant: nil).isEmpty)
        #expect(try chain.events(tenant: "acme").first?.seq == 4)
        // Deleting past the anchor is still found.
        try db.execute("DELETE FROM audit_events WHERE tenant = 'acme' AND seq = 4")
        #expect(try chain.verify(tenant: "acme").first != nil)
    }

    @Test(arguments: TestEngine.available) func theKeyIsSealedUnderTheMasterKeyAndSurvivesItsRotation(
        _ engine: TestEngine
    ) throws {
        let (db, chain) = try filled(engine)
        #expect(try db.query("SELECT sealed FROM audit_key")[0][0].int == 1)
        #expect(throws: (any Error).self) { try AuditChain(db, masterKey: nil) }
        let next = [UInt8](repeating: 9, count: 32)
        try db.transaction { try AuditChain.reseal(db, from: master, to: next) }
        let rotated = try AuditChain(db, masterKey: next)
        #expect(try rotated.verify(tenant: nil).isEmpty && rotated.keyCheck == chain.keyCheck)
    }

    @Test(arguments: TestEngine.available) func anAuditKeyThatCannotBeOpenedNeverStopsAccounting(_ engine: TestEngine)
        throws
    {
        let (db, _) = try filled(engine)  // the key is sealed under a master key this process cannot find
        var record = ExecutionRecord(requestID: "r-1", atMs: 5_000, tenant: "acme", status: 200)
        record.policyTriggers = [
            PolicyTrigger(
                policy: "cards", phase: .egress, action: .redact, mode: .enforce, detector: "pii.card", length: 19,
                failed: false)
        ]
        try AccountingStore(db).settle(reservation: nil, record: record)
        #expect(try db.query("SELECT COUNT(*) FROM executions WHERE request_id = 'r-1'")[0][0].int == 1)
        // Nothing half-written: the chain still ends where it did, and verifies.
        #expect(try db.query("SELECT MAX(seq) FROM audit_events WHERE tenant = 'acme'")[0][0].int == 5)
        #expect(try AuditChain(db, masterKey: master).verify(tenant: nil).isEmpty)
    }
}

@Suite struct AuditChainDeletionTests {
    let master = [UInt8](repeating: 9, count: 32)

    @Test(arguments: TestEngine.available) func aChainDeletedWholeIsFound(_ engine: TestEngine) throws {
        let db = try testDB(engine)
        let chain = try AuditChain(db, masterKey: master)
        try db.transaction {
            for tenant in ["acme", "globex"] {
                try chain.append(tenant: tenant, kind: "key_create", actor: "cli", body: .object([]), atMs: 1_000)
            }
        }
        #expect(try chain.verify(tenant: nil).isEmpty)
        // Before: deleting a tenant's events and head left nothing to compare with, and verify passed.
        try db.execute("DELETE FROM audit_events WHERE tenant = 'acme'")
        try db.execute("DELETE FROM audit_heads WHERE tenant = 'acme'")
        let faults = try chain.verify(tenant: nil)
        #expect(faults.map(\.tenant) == ["acme"])
        #expect(faults.first?.reason.contains("chain deleted") == true)
        #expect(try chain.verify(tenant: "acme").count == 1)
        #expect(try chain.verify(tenant: "globex").isEmpty)
        // Begun again by its next event, the chain verifies on its own: the second start gives it away.
        try db.transaction {
            _ = try chain.append(tenant: "acme", kind: "key_create", actor: "cli", body: .object([]), atMs: 2_000)
        }
        #expect(try chain.verify(tenant: "acme").first?.reason.contains("started again") == true)
    }
}
