import Dispatch
import Foundation
import Testing

@testable import TenantGateStore
@testable import TenantGateSystem

/// A pool lends each connection to one holder at a time, opens a lazy pool's connections only when needed,
/// and refuses (`PoolExhausted`) a holder that waited its whole `waitMs`.
@Suite struct ConnectionPoolTests {
    @Test func aLazyPoolOpensOnDemandAndNeverLendsMoreThanItsCount() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tg-\(UUID().uuidString).db").path
        try Migrations.migrate(try SQLiteConnection(path: path))
        let pool = try ConnectionPool(path: path, count: 2, cacheKiB: 64, waitMs: 200, lazily: true)
        // The first use opens one and reads through it.
        #expect(try pool.with { try Migrations.version($0) } == Migrations.current)
        // Two holders at once: a third waits its 200 ms and is refused.
        let held = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let done = DispatchGroup()
        for _ in 0..<2 {
            DispatchQueue.global().async(group: done) {
                _ = try? pool.with { _ in
                    held.signal()
                    release.wait()
                }
            }
        }
        held.wait()
        held.wait()
        let started = DispatchTime.now().uptimeNanoseconds
        #expect(throws: PoolExhausted.self) { try pool.with { _ in 1 } }
        #expect(DispatchTime.now().uptimeNanoseconds - started >= 150_000_000)
        release.signal()
        release.signal()
        done.wait()
        // Both are back: two holders again, each with its own connection.
        let ids = Locked<Set<ObjectIdentifier>>([])
        DispatchQueue.concurrentPerform(iterations: 8) { _ in
            _ = try? pool.with { conn in ids.withLock { _ = $0.insert(ObjectIdentifier(conn as AnyObject)) } }
        }
        #expect(ids.withLock { $0.count } <= 2)
    }

    @Test func aConnectionThatCannotBeOpenedGivesItsPlaceBack() throws {
        let pool = try ConnectionPool(
            path: "/nonexistent-dir-\(UUID().uuidString)/x.db", count: 1, cacheKiB: 64, waitMs: 100, lazily: true)
        for _ in 0..<3 {
            // Each attempt fails opening, not waiting: the place was given back after the failure.
            #expect(throws: (any Error).self) { try pool.with { _ in 1 } }
        }
        let started = DispatchTime.now().uptimeNanoseconds
        #expect(throws: (any Error).self) { try pool.with { _ in 1 } }
        #expect(DispatchTime.now().uptimeNanoseconds - started < 90_000_000)
    }
}
