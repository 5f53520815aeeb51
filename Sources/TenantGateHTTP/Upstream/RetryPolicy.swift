import TenantGateCore
import TenantGateSystem

/// Time as the retry loop sees it (the system's in production, a fake one in tests).
protocol RetryClock {
    func nowMs() -> Int64
    func sleep(ms: Int)
    /// A uniformly random integer in `range` (the jitter).
    func random(in range: ClosedRange<Int>) -> Int
}

/// The monotonic clock, a real sleep and the system's random numbers.
struct SystemClock: RetryClock {
    func nowMs() -> Int64 { Posix.monotonicMs() }
    func sleep(ms: Int) { Posix.sleepMs(ms) }
    func random(in range: ClosedRange<Int>) -> Int { Int.random(in: range) }
}

/// How one backend's calls are retried: jittered exponential backoff, the upstream's Retry-After
/// honoured, bounded in count and in total time, and only while nothing has reached the client.
struct RetryPolicy {
    let maxRetries: Int
    let backoffMs: Int
    let budgetMs: Int

    init(maxRetries: Int, backoffMs: Int, budgetMs: Int) {
        self.maxRetries = maxRetries
        self.backoffMs = backoffMs
        self.budgetMs = budgetMs
    }

    init(_ backend: BackendConfig) {
        self.init(maxRetries: backend.maxRetries, backoffMs: backend.retryBackoffMs, budgetMs: backend.retryBudgetMs)
    }

    /// The wait before retry number `tries + 1`: half the doubled backoff plus up to as much again at
    /// random, at least the upstream's Retry-After.
    func delay(afterTries tries: Int, retryAfterMs: Int?, clock: any RetryClock) -> Int {
        let base = max(0, backoffMs).saturatingMultiply(1 << min(tries, 10))
        let delay = (base / 2).saturatingAdd(clock.random(in: 0...max(1, base / 2)))
        return max(delay, retryAfterMs ?? 0)
    }

    /// Runs `attempt`, retrying a `RetryableUpstream` while `canRetry()` and the policy allow;
    /// `onRetry` is told of each retry. The last failure is rethrown.
    func run(
        clock: any RetryClock = SystemClock(), canRetry: () -> Bool, onRetry: () -> Void, _ attempt: () throws -> Void
    ) throws {
        let started = clock.nowMs()
        var tries = 0
        while true {
            do {
                try attempt()
                return
            } catch let failure as RetryableUpstream {
                guard tries < maxRetries, canRetry() else { throw failure }
                let delay = delay(afterTries: tries, retryAfterMs: failure.retryAfterMs, clock: clock)
                let elapsed = Int(clamping: clock.nowMs() - started)
                guard elapsed.saturatingAdd(delay) <= budgetMs else { throw failure }
                clock.sleep(ms: delay)
                tries += 1
                onRetry()
            }
        }
    }
}
