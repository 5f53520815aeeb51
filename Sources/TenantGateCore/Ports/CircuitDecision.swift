/// What the breaker says about calling a backend for a tenant now.
public enum CircuitDecision: Equatable, Sendable {
    case closed
    /// The cooldown is over: this request is the one half-open probe.
    case probe
    /// Open: retry after the given seconds.
    case open(retryAfter: Int)
}
