import Dispatch
import TenantGateCore
import TenantGateServing
import TenantGateStore
import TenantGateSystem

/// Group commit for settlements: request threads hand their execution record over and move on; one
/// thread per worker writes everything queued in one transaction, woken when the queue stops being empty
/// (then waiting `commitDelayMs` for company). What queues while it commits goes in the next transaction,
/// so batches grow with the load.
///
/// A reservation stays held until its settlement commits, so hard budgets stay conservative in the
/// meantime. A drained worker flushes the queue before it exits; a worker killed with SIGKILL loses at
/// most the settlements of the last commit's duration, whose reservations then expire.
///
/// Bounds: at most `capacity` items wait; a request thread that finds the queue full waits for room
/// (backpressure instead of unbounded memory). A batch the store keeps refusing is tried `maxAttempts`
/// times with growing pauses, then dropped with an error log line naming its requests: its reservations
/// and leases stay held until they expire, so no budget is ever overspent by the loss.
final class SettleQueue: Sendable {
    private struct State {
        var items: [Settlement] = []
        /// Request threads waiting for room.
        var waiting = 0
    }

    private let state = Locked(State())
    private let wake = DispatchSemaphore(value: 0)
    private let room = DispatchSemaphore(value: 0)
    /// One flush at a time: the writer thread's, or the drain's.
    // A byte, not `()`: a zero-size value has no storage of its own, and ThreadSanitizer then sees the
    // inout access at an address it shares with a neighbouring allocation (a false race).
    private let flushing = Locked(false)
    private let writer: SharedWriter
    private let log: AppLog
    /// Largest batch written in one transaction.
    static let maxBatch = 512
    /// Most items waiting at once.
    static let capacity = 65_536
    /// Tries of one batch before it is dropped.
    static let maxAttempts = 20
    /// How long the writer waits after the first item arrives, for more to share its transaction.
    static let commitDelayMs = 1

    init(writer: SharedWriter, log: AppLog) {
        self.writer = writer
        self.log = log
    }

    /// Queues one settlement.
    func enqueue(reservation: Int64?, record: ExecutionRecord) {
        enqueue(.request(reservation: reservation, record: record))
    }

    /// Queues one item (a request's, a leased request's settlement, or a lease's retirement); waits for
    /// room while the queue is full.
    func enqueue(_ item: Settlement) {
        while true {
            let (added, first) = state.withLock { s -> (Bool, Bool) in
                guard s.items.count < SettleQueue.capacity else {
                    s.waiting += 1
                    return (false, false)
                }
                s.items.append(item)
                return (true, s.items.count == 1)
            }
            if added {
                if first { wake.signal() }
                return
            }
            wake.signal()
            room.wait()
        }
    }

    /// Items waiting now.
    var count: Int { state.withLock { $0.items.count } }

    /// Starts the writer thread.
    func start() {
        OSThread.start { [self] in
            while true {
                wake.wait()
                // Commit delay: concurrent requests finishing within a millisecond share the transaction.
                Posix.sleepMs(SettleQueue.commitDelayMs)
                flush()
            }
        }
    }

    /// Writes everything queued now, in batches of at most `maxBatch`.
    func flush() {
        flushing.withLock { _ in
            var attempts = 0
            while true {
                let batch = state.withLock { s -> [Settlement] in
                    let n = min(s.items.count, SettleQueue.maxBatch)
                    defer { s.items.removeFirst(n) }
                    return Array(s.items.prefix(n))
                }
                if batch.isEmpty { return }
                do {
                    try writer.accounting { try $0.settle(batch) }
                    attempts = 0
                    let waiting = state.withLock { s -> Int in
                        defer { s.waiting = 0 }
                        return s.waiting
                    }
                    for _ in 0..<waiting { room.signal() }
                } catch {
                    attempts += 1
                    guard attempts < SettleQueue.maxAttempts else {
                        drop(batch, error)
                        attempts = 0
                        continue
                    }
                    log.write(
                        "settle_failed", level: "error",
                        [("count", .int(batch.count)), ("attempt", .int(attempts)), ("error", .string("\(error)"))])
                    state.withLock { $0.items.insert(contentsOf: batch, at: 0) }
                    Posix.sleepMs(min(1000, 50 * attempts))
                }
            }
        }
    }

    private func drop(_ batch: [Settlement], _ error: any Error) {
        let ids: [JSONValue] = batch.compactMap {
            switch $0 {
            case .request(_, let record), .leased(_, let record): return .string(record.requestID)
            case .retire, .cancel: return nil
            }
        }
        log.write(
            "settle_dropped", level: "error",
            [
                ("count", .int(batch.count)), ("request_ids", .array(ids)), ("error", .string("\(error)")),
                ("note", .string("held reservations and leases expire on their own")),
            ])
    }
}
