/// Money as integer nano-USD (10⁻⁹ USD): exact for any price given to 1/1000 USD per million tokens,
/// and integer sums never drift.
public enum Money {
    /// Nano-USD per token for a price in USD per million tokens (1 USD/Mtok = 1000 nano-USD/token).
    /// Prices are validated to 0…10⁹ USD/Mtok; anything else (NaN, negative, huge) is clamped, never trapped on.
    public static func nanoPerToken(perMTok: Double) -> Int64 { clamped((perMTok * 1000).rounded()) }

    /// Nano-USD for a USD amount (budgets), clamped to 0…`Int64.max`.
    public static func nano(usd: Double) -> Int64 { clamped((usd * 1_000_000_000).rounded()) }

    private static func clamped(_ value: Double) -> Int64 {
        guard value.isFinite, value > 0 else { return 0 }
        return value >= 9.2e18 ? .max : Int64(value)
    }

    /// USD with 9 decimals, no exponent (for JSON and logs).
    public static func usdString(nano: Int64) -> String {
        let sign = nano < 0 ? "-" : ""
        let v = nano.magnitude
        let frac = String(v % 1_000_000_000)
        return "\(sign)\(v / 1_000_000_000).\(String(repeating: "0", count: 9 - frac.count))\(frac)"
    }

    /// Money as people read it, the same everywhere (admin pages, CLI tables, refusals): `$0.0500`, four
    /// decimals; below a cent as many more as it takes to show its first two significant digits
    /// (`$0.000077`); whole dollars keep four decimals (`$12.3400`). Truncated, never rounded up.
    public static func display(nano: Int64) -> String {
        let sign = nano < 0 ? "-" : ""
        let v = nano.magnitude
        let whole = v / 1_000_000_000
        let frac = String(v % 1_000_000_000)
        var digits = String(repeating: "0", count: 9 - frac.count) + frac
        var keep = 4
        if whole == 0 && v > 0 && v < 10_000_000 {
            // Below a cent: up to the second significant digit.
            let zeros = digits.prefix { $0 == "0" }.count
            keep = min(9, zeros + 2)
        }
        digits = String(digits.prefix(keep))
        return "\(sign)$\(whole).\(digits)"
    }

    /// The cost of `usage` on `model`, in nano-USD.
    /// Never negative and clamped to `Bounds.maxRequestCostNano` rather than trapping, whatever the counts:
    /// negative ones count as 0, cached and cache-written tokens count at most the prompt's.
    public static func cost(_ usage: Usage, _ model: ModelConfig) -> Int64 {
        let prompt = Int64(max(0, usage.promptTokens))
        let cached = min(Int64(max(0, usage.cachedTokens)), prompt)
        let written = min(Int64(max(0, usage.cacheWriteTokens)), prompt - cached)
        let uncached = prompt - cached - written
        let parts: [(Int64, Double)] = [
            (uncached, model.inputPerMTok), (cached, model.cachedInputPerMTok), (written, model.cacheWritePerMTok),
            (Int64(max(0, usage.completionTokens)), model.outputPerMTok),
        ]
        let total = parts.reduce(Int64(0)) { $0.saturatingAdd($1.0.saturatingMultiply(nanoPerToken(perMTok: $1.1))) }
        return min(total, Bounds.maxRequestCostNano)
    }
}

/// The worst case a request may consume, reserved before the upstream call.
public struct Reservation: Sendable, Equatable {
    /// Upper bound of prompt tokens.
    public let promptTokens: Int
    /// Upper bound of completion tokens.
    public let completionTokens: Int
    /// Upper bound of the cost, nano-USD.
    public let costNano: Int64

    /// Prompt plus completion tokens (saturating).
    public var tokens: Int { promptTokens.saturatingAdd(completionTokens) }

    /// The completion cap used when neither the request nor the catalog sets one.
    public static let defaultCompletionCap = 4096

    /// The reservation for `chat` on `model`: prompt tokens bounded by `ChatRequest.promptBound` (text,
    /// tool definitions and calls byte for byte, images at the model's `image_tokens`), completion by the
    /// cap sent upstream (`completionCap(for:)`) times `n`.
    public init(chat: ChatRequest, model: ModelConfig) {
        promptTokens = chat.promptBound(imageTokens: model.imageTokens)
        completionTokens = chat.completionCap(for: model).saturatingMultiply(chat.choices)
        costNano = Money.cost(Usage(promptTokens: promptTokens, completionTokens: completionTokens), model)
    }

    /// A reservation of explicit amounts.
    public init(promptTokens: Int, completionTokens: Int, costNano: Int64) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.costNano = costNano
    }
}
