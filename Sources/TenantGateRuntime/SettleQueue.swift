import Dispatch
import TenantGateCore
import TenantGateHTTP
import TenantGateServing
import TenantGateStore
import TenantGateSystem

/// Group commit for settlements: request threads hand their execution record over (and, for a successful
/// answer under `--settle durable`, wait for it: `waitWritten`); one thread per worker writes everything
/// queued in one transaction, woken when the queue stops being empty (after `commitDelayMs`). What queues
/// while it commits goes in the next transaction, so batches grow with the load.
///
/// A reservation stays held until its settlement commits, so hard budgets stay conservative in the
/// meantime. A drained worker flushes the queue before it exits; a worker killed with SIGKILL loses at
/// most the settlements of the last commit's duration, whose reservations then expire.
///
/// Bounds: at most `capacity` items wait; a request thread that finds the queue full waits for room
/// (backpressure instead of unbounded memory). A batch the store keeps refusing is tried `maxAttempts`
/// times with growing pauses, then dropped with an error log line naming its requests: its reservations
/// and leases stay held until they expire, so no budget is ever overspent by the loss.
final class SettleQueue: SettlementQueueing {
    private struct State {
        var items: [Settlement] = []
        /// Request threads waiting for room.
        var waiting = 0
        /// Sequence number of the next item queued, and of the first item not yet written (or dropped).
        var nextSeq: Int64 = 0
        var doneSeq: Int64 = 0
        /// Request threads waiting for their item to be written: (its sequence number, its wake-up).
        var committers: [(seq: Int64, wake: DispatchSemaphore)] = []
        /// The sequence numbers of the latest dropped batches (their waiters are told so).
        var dropped: [Range<Int64>] = []
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
    /// How long a request waits for its settlement before it answers 503 (the store is stuck: busy past
    /// its timeout, or refusing writes).
    static let waitLimitMs = 15_000

    /// How long the writer waits after the first item arrives, for more to share its transaction: 0 when
    /// answers wait for their settlements (what queues during one commit shares the next), 1 ms when not.
    private let commitDelayMs: Int

    /// Makes each batch's id, once per batch (its retries keep it), or nil: no ids. On PostgreSQL a
    /// COMMIT can be lost with its connection after the server carried it out, and the id makes the retry
    /// of such a batch a no-op (`AccountingStore.settle(_:batchID:)`); SQLite reports a commit's failure
    /// exactly, so it gets none.
    private let batchIDs: (@Sendable () -> String)?

    init(
        writer: SharedWriter, log: AppLog, commitDelayMs: Int = 0,
        batchIDs: (@Sendable () -> String)?? = nil
    ) {
        self.writer = writer
        self.log = log
        self.commitDelayMs = commitDelayMs
        self.batchIDs = batchIDs ?? (writer.engine == .postgres ? SettleQueue.randomBatchID : nil)
    }

    /// Queues one item (a request's, a leased request's settlement, or a lease's retirement); waits for
    /// room while the queue is full. Returns the item's sequence number.
    @discardableResult
    public func enqueue(_ item: Settlement) -> Int64 {
        while true {
            let (seq, first) = state.withLock { s -> (Int64?, Bool) in
                guard s.items.count < SettleQueue.capacity else {
                    s.waiting += 1
                    return (nil, false)
                }
                s.items.append(item)
                defer { s.nextSeq += 1 }
                return (s.nextSeq, s.items.count == 1)
            }
            if let seq {
                if first { wake.signal() }
                return seq
            }
            wake.signal()
            room.wait()
        }
    }

    /// Waits until the item numbered `seq` is in the database; false if it was dropped (the store kept
    /// refusing it) or not written within `timeoutMs` (it may still be, later). Someone waiting makes the
    /// writer hurry (it has no other pause).
    public func waitWritten(_ seq: Int64) -> Bool { waitWritten(seq, timeoutMs: SettleQueue.waitLimitMs) }

    func waitWritten(_ seq: Int64, timeoutMs: Int) -> Bool {
        let wake = DispatchSemaphore(value: 0)
        let pending = state.withLock { s -> Bool in
            guard seq >= s.doneSeq else { return false }
            s.committers.append((seq, wake))
            return true
        }
        if pending {
            self.wake.signal()
            if wake.wait(timeout: .now() + .milliseconds(timeoutMs)) == .timedOut {
                let gone = state.withLock { s -> Bool in
                    let before = s.committers.count
                    s.committers.removeAll { $0.wake === wake }
                    return s.committers.count < before
                }
                // Still queued: not written in time. (Woken meanwhile: the signal is owed, take it.)
                if gone { return false }
                wake.wait()
            }
        }
        return state.withLock { s in !s.dropped.contains { $0.contains(seq) } }
    }

    /// Marks every item before `seq` as done (written or dropped) and wakes their waiters.
    private func done(until seq: Int64, dropped: Bool) {
        let woken = state.withLock { s -> [DispatchSemaphore] in
            if dropped {
                if s.dropped.count == 64 { s.dropped.removeFirst() }
                s.dropped.append(s.doneSeq..<seq)
            }
            s.doneSeq = max(s.doneSeq, seq)
            var woken: [DispatchSemaphore] = []
            s.committers.removeAll { entry in
                guard entry.seq < seq else { return false }
                woken.append(entry.wake)
                return true
            }
            return woken
        }
        for wake in woken { wake.signal() }
    }

    /// Items waiting now.
    var count: Int { state.withLock { $0.items.count } }

    /// Starts the writer thread.
    func start() {
        OSThread.start { [self] in
            while true {
                wake.wait()
                // With answers waiting, no pause: it would cost every answer its length.
                if commitDelayMs > 0 { Posix.sleepMs(commitDelayMs) }
                flush()
            }
        }
    }

    /// Writes everything queued now, in batches of at most `maxBatch`. A batch that fails is tried again
    /// as it was (the same items, the same id), before anything queued after it.
    func flush() {
        flushing.withLock { _ in
            var attempts = 0
            while true {
                let (batch, end) = state.withLock { s -> ([Settlement], Int64) in
                    let n = min(s.items.count, SettleQueue.maxBatch)
                    defer { s.items.removeFirst(n) }
                    // The queue holds the items numbered nextSeq - count ..< nextSeq, in order.
                    return (Array(s.items.prefix(n)), s.nextSeq - Int64(s.items.count) + Int64(n))
                }
                if batch.isEmpty { return }
                let id = batchIDs?()
                while true {
                    do {
                        let notices = try writer.accounting { try $0.settle(batch, batchID: id) }
                        done(until: end, dropped: false)
                        for notice in notices {
                            log.event(
                                "budget_threshold",
                                [
                                    "tenant": .string(notice.tenant), "budget": .string(notice.budget),
                                    "percent": .int(notice.percent), "request_id": .string(notice.requestID),
                                ], level: notice.percent >= 100 ? "warn" : "info")
                        }
                        attempts = 0
                        let waiting = state.withLock { s -> Int in
                            defer { s.waiting = 0 }
                            return s.waiting
                        }
                        for _ in 0..<waiting { room.signal() }
                        break
                    } catch {
                        attempts += 1
                        guard attempts < SettleQueue.maxAttempts else {
                            drop(batch, error)
                            done(until: end, dropped: true)
                            attempts = 0
                            break
                        }
                        log.write(
                            "settle_failed", level: "error",
                            [
                                ("count", .int(batch.count)), ("attempt", .int(attempts)),
                                ("error", .string("\(error)")),
                            ])
                        Posix.sleepMs(min(1000, 50 * attempts))
                    }
                }
            }
        }
    }

    /// A batch id no other batch of any worker or host has: 16 random bytes.
    @Sendable private static func randomBatchID() -> String {
        (try? Crypto.randomBytes(16)).map(Crypto.hex) ?? "\(Posix.pid)-\(Posix.wallMicros())-\(Posix.monotonicMicros())"
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
