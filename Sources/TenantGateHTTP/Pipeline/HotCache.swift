import TenantGateCore
import TenantGateSystem

/// The entries this worker read in the last second, so a hot answer costs no database read per request.
/// An entry is trusted for `freshMs` only: a purge or an expiry is seen by every worker within a second.
final class HotCache: Sendable {
    private struct Entry {
        let answer: CachedAnswer
        let readMs: Int64
    }

    private let entries = Locked<[[UInt8]: Entry]>([:])
    /// How long an entry read from the database is served from memory.
    static let freshMs: Int64 = 1000
    /// Most entries kept per worker.
    static let capacity = 1024

    /// The entry of `tenant` under `key`, if read less than `freshMs` ago.
    func get(tenant: String, key: [UInt8], nowMs: Int64) -> CachedAnswer? {
        entries.withLock { table in
            guard let entry = table[HotCache.id(tenant, key)] else { return nil }
            guard nowMs - entry.readMs < HotCache.freshMs, nowMs < entry.answer.expiresMs else {
                table[HotCache.id(tenant, key)] = nil
                return nil
            }
            return entry.answer
        }
    }

    /// Keeps an entry just read.
    func put(tenant: String, key: [UInt8], _ answer: CachedAnswer, nowMs: Int64) {
        entries.withLock { table in
            if table.count >= HotCache.capacity {
                // Drop what is stale; if everything is fresh, start over (a burst of distinct keys).
                table = table.filter { nowMs - $0.value.readMs < HotCache.freshMs }
                if table.count >= HotCache.capacity { table.removeAll(keepingCapacity: true) }
            }
            table[HotCache.id(tenant, key)] = Entry(answer: answer, readMs: nowMs)
        }
    }

    /// The tenant leads the id as it leads the stored key.
    private static func id(_ tenant: String, _ key: [UInt8]) -> [UInt8] { Array(tenant.utf8) + [0] + key }
}
