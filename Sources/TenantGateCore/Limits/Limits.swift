/// Hard limits refuse; soft limits serve with a warning.
public enum Enforcement: String, Sendable {
    case hard, soft
}

/// One tenant's effective limits (defaults merged in), and the global budget.
public struct Limits: Sendable, Equatable {
    public var requestsPerMinute: Int?
    public var tokensPerMinute: Int?
    public var dailyTokens: Int?
    public var monthlyTokens: Int?
    public var dailyNano: Int64?
    public var monthlyNano: Int64?
    public var enforcement: Enforcement
    public var globalDailyNano: Int64?
    public var globalMonthlyNano: Int64?
    public var globalEnforcement: Enforcement
    /// What a request whose worst case does not fit a hard budget's remainder gets (`budget.when_short`):
    /// `fit` lowers its completion cap to what remains (when at least `BudgetFit.minimumCap` fits),
    /// `refuse` refuses it.
    public var fitsShortRequests: Bool

    /// Reads `rate_limit` and `budget` of the effective tenant settings and `global_budget`.
    public init(tenant: JSONValue, global: JSONValue?) {
        let rate = tenant["rate_limit"]
        let budget = tenant["budget"]
        requestsPerMinute = rate?["requests_per_minute"]?.intValue
        tokensPerMinute = rate?["tokens_per_minute"]?.intValue
        dailyTokens = budget?["daily_tokens"]?.intValue
        monthlyTokens = budget?["monthly_tokens"]?.intValue
        dailyNano = budget?["daily_usd"]?.doubleValue.map(Money.nano(usd:))
        monthlyNano = budget?["monthly_usd"]?.doubleValue.map(Money.nano(usd:))
        enforcement = Enforcement(rawValue: budget?["enforcement"]?.stringValue ?? "hard") ?? .hard
        fitsShortRequests = budget?["when_short"]?.stringValue != "refuse"
        globalDailyNano = global?["daily_usd"]?.doubleValue.map(Money.nano(usd:))
        globalMonthlyNano = global?["monthly_usd"]?.doubleValue.map(Money.nano(usd:))
        globalEnforcement = Enforcement(rawValue: global?["enforcement"]?.stringValue ?? "hard") ?? .hard
    }

    /// Whether any limit or budget applies at all.
    public var isEmpty: Bool {
        requestsPerMinute == nil && tokensPerMinute == nil && dailyTokens == nil && monthlyTokens == nil
            && dailyNano == nil && monthlyNano == nil && globalDailyNano == nil && globalMonthlyNano == nil
    }
}

/// UTC calendar periods for budgets.
public struct Periods: Sendable, Equatable {
    /// `2026-11-22`.
    public let day: String
    /// `2026-11`.
    public let month: String
    /// Epoch seconds when the day ends.
    public let dayResetsAt: Int64
    /// Epoch seconds when the month ends.
    public let monthResetsAt: Int64

    /// The periods that contain `epochMs`.
    public init(epochMs: Int64) {
        let days = Int(epochMs / 86_400_000)
        let (y, m, _) = CivilDate.from(days: days)
        day = CivilDate.isoDate(epochSeconds: Int64(days) * 86_400)
        month = CivilDate.isoMonth(epochSeconds: Int64(days) * 86_400)
        dayResetsAt = Int64(days + 1) * 86_400
        let (ny, nm) = m == 12 ? (y + 1, 1) : (y, m + 1)
        monthResetsAt = Int64(CivilDate.days(year: ny, month: nm, day: 1)) * 86_400
    }
}

/// Why a request was refused before reaching the upstream.
public enum LimitRefusal: Error, Equatable, Sendable {
    /// A per-minute limit (`requests` or `tokens`); retry after the given seconds.
    case rate(limit: String, retryAfter: Int)
    /// A budget of the tenant or the global one (`daily_usd`, `monthly_tokens`, …).
    case budget(scope: String, budget: String, resetsAt: Int64)
}

/// What the limiter reports for the response headers and for soft warnings.
public struct LimitStatus: Sendable {
    public var requestLimit: Int?
    public var requestsRemaining: Int?
    public var tokenLimit: Int?
    public var tokensRemaining: Int?
    /// Epoch seconds when the request window frees its oldest entry.
    public var resetAt: Int64?
    /// Soft budgets that this request goes over.
    public var warnings: [String] = []

    /// Creates an empty status.
    public init() {}
}

extension CivilDate {
    /// Days since 1970-01-01 of a calendar date.
    public static func days(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}
