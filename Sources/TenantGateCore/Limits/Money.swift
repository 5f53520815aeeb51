/// Money as integer nano-USD (10⁻⁹ USD): exact for any price given to 1/1000 USD per million tokens,
/// and integer sums never drift.
public enum Money {
    /// Nano-USD per token for a price in USD per million tokens (1 USD/Mtok = 1000 nano-USD/token).
    public static func nanoPerToken(perMTok: Double) -> Int64 { Int64((perMTok * 1000).rounded()) }

    /// Nano-USD for a USD amount (budgets).
    public static func nano(usd: Double) -> Int64 { Int64((usd * 1_000_000_000).rounded()) }

    /// USD with 9 decimals, no exponent (for JSON and logs).
    public static func usdString(nano: Int64) -> String {
        let sign = nano < 0 ? "-" : ""
        let v = nano.magnitude
        let frac = String(v % 1_000_000_000)
        return "\(sign)\(v / 1_000_000_000).\(String(repeating: "0", count: 9 - frac.count))\(frac)"
    }

    /// The cost of `usage` on `model`, in nano-USD.
    public static func cost(_ usage: Usage, _ model: ModelConfig) -> Int64 {
        let cached = Int64(min(usage.cachedTokens, usage.promptTokens))
        let written = Int64(min(usage.cacheWriteTokens, usage.promptTokens - usage.cachedTokens))
        let uncached = Int64(usage.promptTokens) - cached - written
        return uncached * nanoPerToken(perMTok: model.inputPerMTok) + cached
            * nanoPerToken(perMTok: model.cachedInputPerMTok) + written
            * nanoPerToken(perMTok: model.cacheWritePerMTok) + Int64(usage.completionTokens)
            * nanoPerToken(perMTok: model.outputPerMTok)
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

    /// Prompt plus completion tokens.
    public var tokens: Int { promptTokens + completionTokens }

    /// The completion cap used when neither the request nor the catalog sets one.
    public static let defaultCompletionCap = 4096

    /// The reservation for `chat` on `model`: prompt tokens bounded by the prompt's UTF-8 bytes plus
    /// 8 per message (a byte-level BPE token is at least one byte), completion by `max_tokens`, else
    /// the catalog's `max_tokens`, else 4096.
    public init(chat: ChatRequest, model: ModelConfig) {
        let bytes = chat.promptText.reduce(0) { $0 + $1.utf8.count }
        promptTokens = bytes + 8 * chat.messages.count
        completionTokens = chat.maxTokens ?? model.maxTokens ?? Reservation.defaultCompletionCap
        costNano = Money.cost(Usage(promptTokens: promptTokens, completionTokens: completionTokens), model)
    }

    /// A reservation of explicit amounts.
    public init(promptTokens: Int, completionTokens: Int, costNano: Int64) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.costNano = costNano
    }
}
