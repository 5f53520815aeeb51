import Synchronization

/// How much CPU the content inspection of one request may take: a fixed allowance, plus so much per MiB of
/// text inspected and per text checked (a request message, a whole answer, one streamed delta), over
/// ingress, every mid-stream step and egress together. Past it, every further rule of the request counts
/// as failed and its `on_error` decides (a blocking or redacting rule closes). The work itself is linear
/// in the text, so the budget is a second line of defence, sized at several times what the built-in
/// detectors need (31 MB/s for all of them at once on one core of the reference machine).
public struct InspectionRate: Sendable, Equatable {
    /// Nanoseconds every request may spend whatever its size.
    public let baseNanos: UInt64
    /// Nanoseconds earned by each MiB of text offered for inspection.
    public let nanosPerMiB: UInt64
    /// Nanoseconds earned by each text checked (a stream's steps cost per delta, not only per byte).
    public let nanosPerCheck: UInt64

    /// The documented defaults: 20 ms, plus 100 ms per MiB, plus 50 µs per text checked.
    public static let standard = InspectionRate(baseMs: 20, msPerMiB: 100, microsPerCheck: 50)

    /// A rate in milliseconds and microseconds (negative values count as 0; each is capped at an hour).
    public init(baseMs: Int, msPerMiB: Int, microsPerCheck: Int = 0) {
        let hourMs = 3_600_000
        baseNanos = UInt64(min(hourMs, max(0, baseMs))) * 1_000_000
        nanosPerMiB = UInt64(min(hourMs, max(0, msPerMiB))) * 1_000_000
        nanosPerCheck = UInt64(min(hourMs * 1000, max(0, microsPerCheck))) * 1000
    }
}

/// The inspection budget of one request, shared by its ingress check, its stream guards and its egress
/// check. `clock` reads the CPU time of the calling thread in nanoseconds (the worker's; tests may pass any
/// monotonic clock). Used by one thread at a time; the lock only makes that checked.
public final class InspectionBudget: Sendable {
    private struct State {
        var allowed: UInt64
        var spent: UInt64 = 0
        /// When the current measured span started (0: none running).
        var runningSince: UInt64 = 0
        var exhausted = false
    }

    private let rate: InspectionRate
    private let clock: @Sendable () -> UInt64
    private let state: Mutex<State>

    /// A budget of `rate`, measured by `clock`.
    public init(rate: InspectionRate, clock: @escaping @Sendable () -> UInt64) {
        self.rate = rate
        self.clock = clock
        state = Mutex(State(allowed: rate.baseNanos))
    }

    /// A budget that never runs out (tools outside a request: `policy check`, benchmarks).
    public static func unbounded() -> InspectionBudget {
        InspectionBudget(rate: InspectionRate(baseMs: 3_600_000, msPerMiB: 0), clock: { 0 })
    }

    /// Earns the allowance of one more text of `bytes` to inspect.
    public func admit(bytes: Int) {
        let earned = UInt64(max(0, bytes)).multipliedReportingOverflow(by: rate.nanosPerMiB)
        let add = InspectionBudget.sum(earned.overflow ? UInt64.max : earned.partialValue >> 20, rate.nanosPerCheck)
        state.withLock { $0.allowed = InspectionBudget.sum($0.allowed, add) }
    }

    /// Runs `body` and charges the CPU time it took.
    public func measure<T>(_ body: () throws -> T) rethrows -> T {
        let start = clock()
        let nested = state.withLock { s -> Bool in
            guard s.runningSince == 0 else { return true }
            s.runningSince = max(1, start)
            return false
        }
        defer {
            if !nested {
                let end = clock()
                state.withLock { s in
                    s.spent = InspectionBudget.sum(s.spent, end >= start ? end - start : 0)
                    s.runningSince = 0
                    if s.spent > s.allowed { s.exhausted = true }
                }
            }
        }
        return try body()
    }

    /// Whether the budget is spent, counting the span being measured now (long matchers ask between steps).
    public var exhausted: Bool {
        let now = clock()
        return state.withLock { s in
            if s.exhausted { return true }
            let running = s.runningSince > 0 && now >= s.runningSince ? now - s.runningSince : 0
            if InspectionBudget.sum(s.spent, running) > s.allowed { s.exhausted = true }
            return s.exhausted
        }
    }

    private static func sum(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (total, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : total
    }

    /// CPU nanoseconds charged so far.
    public var spentNanos: UInt64 { state.withLock { $0.spent } }
}
