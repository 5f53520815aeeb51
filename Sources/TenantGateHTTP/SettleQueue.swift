import TenantGateCore
import TenantGateStore
import TenantGateSystem

/// Group commit for settlements: request threads hand their execution record over and move on; one
/// thread per worker writes everything queued in one transaction every few milliseconds.
///
/// A reservation stays held until its settlement commits, so hard budgets stay conservative in the
/// meantime. A drained worker flushes the queue before it exits; a worker killed with SIGKILL loses at
/// most the last few milliseconds of settlements, whose reservations then expire.
final class SettleQueue: @unchecked Sendable {  // the queue is behind `Locked`; the store is used by one thread
    private let pending = Locked<[Settlement]>([])
    private let store: AccountingStore
    private let log: AppLog
    private let intervalMs: Int
    /// Largest batch written in one transaction.
    static let maxBatch = 512

    init(store: AccountingStore, log: AppLog, intervalMs: Int = 2) {
        self.store = store
        self.log = log
        self.intervalMs = intervalMs
    }

    /// Queues one settlement.
    func enqueue(reservation: Int64?, record: ExecutionRecord) {
        enqueue(.request(reservation: reservation, record: record))
    }

    /// Queues one item (a request's, a leased request's settlement, or a lease's retirement).
    func enqueue(_ item: Settlement) {
        pending.withLock { $0.append(item) }
    }

    /// Starts the writer thread.
    func start() {
        OSThread.start { [self] in
            while true {
                Posix.sleepMs(intervalMs)
                flush()
            }
        }
    }

    /// Writes everything queued now; on failure the batch goes back to the front of the queue.
    func flush() {
        while true {
            let batch = pending.withLock { queue -> [Settlement] in
                let n = min(queue.count, SettleQueue.maxBatch)
                defer { queue.removeFirst(n) }
                return Array(queue.prefix(n))
            }
            if batch.isEmpty { return }
            do {
                try store.settle(batch)
            } catch {
                log.write(
                    "settle_failed", level: "error", [("count", .int(batch.count)), ("error", .string("\(error)"))])
                pending.withLock { $0.insert(contentsOf: batch, at: 0) }
                Posix.sleepMs(50)
                return
            }
        }
    }
}
