import Dispatch
import TenantGateCore
import TenantGateHTTP
import TenantGateStore
import TenantGateSystem

/// Group commit for reservations: request threads queue their check-and-reserve and wait; one thread
/// per worker runs everything queued in one transaction, in order, and wakes each waiter with its own
/// answer. Under load this turns N write transactions into one, with the same result as running them
/// one by one (each job sees the reservations before it).
final class ReserveBatcher: Reserving {
    /// A queued job and, once its batch ran, its answer (written by the batch thread before `done` is
    /// signalled, read by the waiter after).
    private final class Ticket: Sendable {
        let job: ReserveJob
        let answer = Locked<(result: Result<Admission, LimitRefusal>?, error: (any Error)?)>((nil, nil))
        let done = DispatchSemaphore(value: 0)
        /// For `reserveLater`: called on the batch thread instead of waking a waiter.
        let completion: (@Sendable (Admission?) -> Void)?

        init(_ job: ReserveJob, completion: (@Sendable (Admission?) -> Void)? = nil) {
            self.job = job
            self.completion = completion
        }
    }

    private let queue = Locked<[Ticket]>([])
    private let wake = DispatchSemaphore(value: 0)
    private let writer: SharedWriter
    private let log: AppLog

    init(writer: SharedWriter, log: AppLog) {
        self.writer = writer
        self.log = log
    }

    /// Starts the batch thread.
    func start() {
        OSThread.start { [self] in
            while true {
                wake.wait()
                let batch = queue.withLock { q -> [Ticket] in
                    defer { q.removeAll(keepingCapacity: true) }
                    return q
                }
                if batch.isEmpty { continue }
                do {
                    let results = try writer.accounting { try $0.reserve(batch.map(\.job)) }
                    for (ticket, result) in zip(batch, results) { ticket.answer.withLock { $0.result = result } }
                } catch {
                    log.write(
                        "reserve_failed", level: "error",
                        [("count", .int(batch.count)), ("error", .string("\(error)"))])
                    for ticket in batch { ticket.answer.withLock { $0.error = error } }
                }
                for ticket in batch {
                    if let completion = ticket.completion {
                        completion(try? ticket.answer.withLock { $0.result }?.get())
                    } else {
                        ticket.done.signal()
                    }
                }
            }
        }
    }

    /// Queues `job` and returns at once; `completion` runs on the batch thread with the admission (nil
    /// when refused or failed). For work no request waits for (taking a lease ahead of need).
    public func reserveLater(_ job: ReserveJob, completion: @escaping @Sendable (Admission?) -> Void) {
        queue.withLock { $0.append(Ticket(job, completion: completion)) }
        wake.signal()
    }

    /// Checks and reserves `job`; throws `LimitRefusal` when a hard limit refuses it.
    public func reserve(_ job: ReserveJob) throws -> Admission {
        let ticket = Ticket(job)
        queue.withLock { $0.append(ticket) }
        wake.signal()
        ticket.done.wait()
        let (result, error) = ticket.answer.withLock { $0 }
        if let error { throw error }
        guard let result else { throw GatewayError.serviceUnavailable("accounting unavailable") }
        return try result.get()
    }
}
