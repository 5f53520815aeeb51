import Dispatch
import Testing

@testable import TenantGateCore
@testable import TenantGateHTTP
@testable import TenantGateRuntime
import TenantGateServing
@testable import TenantGateStore
@testable import TenantGateSystem

@Suite struct ReserveBatcherTests {
    let need = Reservation(promptTokens: 10, completionTokens: 10, costNano: 1_000)

    func limits(_ json: String) throws -> Limits { Limits(tenant: try JSONParser.parse(json), global: nil) }

    func jobs(_ count: Int, limits: Limits) -> [ReserveJob] {
        (0..<count).map { i in
            ReserveJob(
                tenant: i % 3 == 0 ? "b" : "a", limits: limits, need: need, nowMs: 1_000_000 + Int64(i),
                expiresMs: 2_000_000)
        }
    }

    /// What a list of results says: admitted or the refusal, in order.
    func outcomes(_ results: [Result<Admission, LimitRefusal>]) -> [String] {
        results.map {
            switch $0 {
            case .success: return "ok"
            case .failure(let refusal): return "\(refusal)"
            }
        }
    }

    @Test func oneBatchGivesWhatTheJobsOneByOneGive() throws {
        let l = try limits(#"{"rate_limit":{"requests_per_minute":5,"tokens_per_minute":150}}"#)
        let batched = AccountingStore(try temporaryDatabase().db)
        let single = AccountingStore(try temporaryDatabase().db)
        let list = jobs(12, limits: l)
        let together = outcomes(try batched.reserve(list))
        let alone = try list.flatMap { outcomes(try single.reserve([$0])) }
        #expect(together == alone)
        #expect(together.filter { $0 == "ok" }.count == 5 + 4)  // a: 5 of 8 (rpm); b: 4 of 4
    }

    @Test func concurrentCallersAreAdmittedExactlyToTheLimit() throws {
        let l = try limits(#"{"rate_limit":{"requests_per_minute":7}}"#)
        let (path, _) = try temporaryDatabase()
        let batcher = ReserveBatcher(
            writer: try SharedWriter(path: path), log: AppLog(path: "/dev/null", level: "error"))
        batcher.start()
        let admitted = Locked(0)
        let refused = Locked(0)
        let job = ReserveJob(tenant: "a", limits: l, need: need, nowMs: 1_000_000, expiresMs: 2_000_000)
        DispatchQueue.concurrentPerform(iterations: 40) { _ in
            do {
                _ = try batcher.reserve(job)
                admitted.withLock { $0 += 1 }
            } catch {
                refused.withLock { $0 += 1 }
            }
        }
        let (yes, no) = (admitted.withLock { $0 }, refused.withLock { $0 })
        #expect(yes == 7)
        #expect(no == 33)
    }
}

@Suite struct SettleQueueTests {
    @Test func everythingQueuedFromManyThreadsIsSettledOnceEvenWithTwoFlushers() throws {
        let (path, db) = try temporaryDatabase()
        let queue = SettleQueue(writer: try SharedWriter(path: path), log: AppLog(path: "/dev/null", level: "error"))
        queue.start()
        DispatchQueue.concurrentPerform(iterations: 2_000) { i in
            var record = ExecutionRecord(requestID: "r\(i)", atMs: 1_795_305_600_000, tenant: "a", status: 200)
            record.usage = Usage(promptTokens: 1, completionTokens: 1)
            queue.enqueue(reservation: nil, record: record)
            if i % 500 == 0 { queue.flush() }  // a drain flushing beside the writer thread
        }
        queue.flush()
        let rows = try db.query("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM executions")
        #expect(rows.first?.first?.int == 2_000)
        #expect(rows.first?.last?.int == 2_000)
        #expect(queue.count == 0)
    }
}

@Suite struct SettleQueueRetryTests {
    /// A batch the store refuses twice is tried again as it was, under the id it got once (so that on
    /// PostgreSQL a retry after a lost COMMIT is recognised), and then written once.
    @Test func aRetriedBatchKeepsItsIdAndIsWrittenOnce() throws {
        let (path, db) = try temporaryDatabase()
        // Refuses every execution row while `refuse` has a row.
        try db.execute(
            """
            CREATE TABLE refuse(x INTEGER);
            INSERT INTO refuse VALUES (1);
            CREATE TRIGGER refusing BEFORE INSERT ON executions WHEN EXISTS (SELECT 1 FROM refuse)
            BEGIN SELECT RAISE(ABORT, 'refused'); END;
            """)
        let made = Locked(0)
        let logPath = path + ".log"
        let queue = SettleQueue(
            writer: try SharedWriter(path: path), log: AppLog(path: logPath, level: "error"),
            batchIDs: {
                made.withLock { $0 += 1 }
                return "batch-\(made.withLock { $0 })"
            })
        for i in 0..<3 {
            var record = ExecutionRecord(requestID: "r\(i)", atMs: 1_795_305_600_000, tenant: "a", status: 200)
            record.usage = Usage(promptTokens: 1, completionTokens: 1)
            queue.enqueue(reservation: nil, record: record)
        }
        // The store refuses until the queue has logged its second failed try (whatever the machine's
        // speed: no timing decides it); the next try finds it willing.
        let opener = DispatchWorkItem {
            for _ in 0..<2_000 {
                let logged = Posix.readFile(logPath, limit: 1 << 20) ?? ""
                if logged.contains("\"attempt\":2") { break }
                Posix.sleepMs(5)
            }
            _ = try? SQLiteConnection(path: path).execute("DELETE FROM refuse")
        }
        DispatchQueue.global().async(execute: opener)
        queue.flush()
        opener.wait()
        #expect(made.withLock { $0 } == 1)
        #expect((Posix.readFile(logPath, limit: 1 << 20) ?? "").contains("\"attempt\":2"))
        #expect(try db.query("SELECT id FROM settled_batches") == [[.text("batch-1")]])
        #expect(try db.query("SELECT COUNT(*) FROM executions") == [[.int(3)]])
    }
}

@Suite struct FastCGIAdapterTests {
    @Test(arguments: [
        ("HTTP_X_TENANT_ID", "x-tenant-id"), ("HTTP_AUTHORIZATION", "authorization"),
        ("HTTP_ANTHROPIC_BETA", "anthropic-beta"), ("HTTP_", ""), ("HTTP_\u{C9}T\u{C9}", "\u{C9}t\u{C9}"),
    ])
    func paramNamesBecomeLowercaseHeaderNames(_ param: String, _ header: String) {
        #expect(Request.headerName(param) == header)
    }

    @Test(
        arguments: [
            ("a=1&user=alice", "alice"), ("user=a%20b", "a b"), ("user=a+b", "a b"), ("user=%E2%82%AC", "\u{20AC}"),
            ("user=100%", "100%"), ("user=%zz1", "%zz1"), ("user=%4", "%4"), ("x=1", nil), ("user=%FF", nil),
        ] as [(String, String?)])
    func queryValuesArePercentDecoded(_ query: String, _ expected: String?) {
        #expect(Request(method: "GET", path: "/", query: query).queryValue("user") == expected)
    }
}
