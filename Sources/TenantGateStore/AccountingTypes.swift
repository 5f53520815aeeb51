import TenantGateCore
import TenantGateSystem

/// One item of a settlement batch.
public enum Settlement: Sendable {
    /// A request: its own reservation (if any) is released and its usage charged.
    case request(reservation: Int64?, record: ExecutionRecord)
    /// A request admitted under a lease: its usage is charged and taken out of the lease's hold.
    case leased(lease: Int64, record: ExecutionRecord)
    /// A lease stops admitting: release `tokens`/`nano` of its hold (all of it when `final`), and set its
    /// window entries to `requests` admissions and `windowTokens` tokens.
    case retire(lease: Int64, tokens: Int64, nano: Int64, requests: Int64, windowTokens: Int64, final: Bool)
    /// A reservation that admitted nothing (a lease renewal that got an exact reservation): given back whole.
    case cancel(reservation: Int64)
}

/// A budget threshold (50, 80 or 100 % of a budget) that settled use reached: announced once per period.
public struct BudgetNotice: Sendable, Equatable {
    public let tenant: String
    /// `daily_usd`, `monthly_tokens`, … (`global_daily_usd` for the gateway's global budget).
    public let budget: String
    public let percent: Int
    /// The request whose settlement reached it (or was settled with it).
    public let requestID: String
}

/// One reservation request, for `AccountingStore.reserve(_:)`.
public struct ReserveJob: Sendable {
    public let tenant: String
    public let limits: Limits
    public let need: Reservation
    public let nowMs: Int64
    public let expiresMs: Int64
    /// Ask for a lease admitting for this long (0: this request only)…
    public let leaseMs: Int64
    /// …of up to this many times the request's worst case.
    public let leaseFactor: Int64

    /// Creates a job.
    public init(
        tenant: String, limits: Limits, need: Reservation, nowMs: Int64, expiresMs: Int64, leaseMs: Int64 = 0,
        leaseFactor: Int64 = AccountingStore.leaseFactor
    ) {
        self.tenant = tenant
        self.limits = limits
        self.need = need
        self.nowMs = nowMs
        self.expiresMs = expiresMs
        self.leaseMs = leaseMs
        self.leaseFactor = max(1, leaseFactor)
    }
}

/// What a reservation job got: its row, the status for the response headers, and the lease if one was
/// granted (the row then holds the lease).
public struct Admission: Sendable {
    public let id: Int64
    public let status: LimitStatus
    public let lease: AccountingStore.LeaseGrant?
}
