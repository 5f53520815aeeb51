// What the request path and the store exchange about admission and settlement: the accounting ports'
// vocabulary (`AccountingStore` implements them in SQL).

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

    public init(tenant: String, budget: String, percent: Int, requestID: String) {
        self.tenant = tenant
        self.budget = budget
        self.percent = percent
        self.requestID = requestID
    }
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
        leaseFactor: Int64 = LeaseGrant.defaultFactor
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
    public let lease: LeaseGrant?

    public init(id: Int64, status: LimitStatus, lease: LeaseGrant?) {
        self.id = id
        self.status = status
        self.lease = lease
    }
}

/// A lease of capacity a worker takes for a tenant and spends in memory (see `LeaseBook`).
public struct LeaseGrant: Sendable, Equatable {
    /// Admissions it holds in the requests-per-minute window (`Int.max` when there is no such limit).
    public let requests: Int
    public let tokens: Int64
    public let nano: Int64
    /// The lease admits until then; its window entries are dated then (they cover every admission).
    public let admitUntilMs: Int64
    /// The day its hold is counted in.
    public let day: String

    /// A lease is taken only while every limited dimension has room for `threshold` × the request's
    /// worst case; it then holds the job's `leaseFactor` × that (`defaultFactor` unless the worker raises
    /// it for a tenant that uses up its leases), but never more than 1/`threshold` of the room. Nearer a
    /// limit, admission is exact (one reservation per request).
    public static let defaultFactor: Int64 = 16
    public static let threshold: Int64 = 8

    public init(requests: Int, tokens: Int64, nano: Int64, admitUntilMs: Int64, day: String) {
        self.requests = requests
        self.tokens = tokens
        self.nano = nano
        self.admitUntilMs = admitUntilMs
        self.day = day
    }
}

/// One hard budget's state now (used and held both counted).
public struct BudgetLeft: Sendable, Equatable {
    /// `tenant` or `global`.
    public let scope: String
    /// `daily_tokens`, `monthly_tokens`, `daily_usd` or `monthly_usd`.
    public let budget: String
    public let cap: Int64
    public let used: Int64
    /// Epoch seconds when it resets.
    public let resetsAt: Int64

    /// What is left (never negative).
    public var left: Int64 { max(0, cap - used) }
    /// Whether it counts tokens (else nano-USD).
    public var countsTokens: Bool { budget.hasSuffix("tokens") }

    public init(scope: String, budget: String, cap: Int64, used: Int64, resetsAt: Int64) {
        self.scope = scope
        self.budget = budget
        self.cap = cap
        self.used = used
        self.resetsAt = resetsAt
    }
}

extension ExecutionRecord {
    /// A request answered, or that used tokens, counts against the per-minute limits and is charged.
    public var consumesCapacity: Bool {
        usage.promptTokens + usage.completionTokens > 0 || (200..<300).contains(status)
    }
}
