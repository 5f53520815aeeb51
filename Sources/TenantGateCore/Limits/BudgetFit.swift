/// Fitting a request to what its budgets have left (`budget.when_short: fit`): the completion cap is
/// lowered so that the worst case (the prompt's bound plus the cap, on the dearest model of the chain)
/// still fits. The guarantee stays whole: the lowered worst case is reserved exactly like any other.
public enum BudgetFit {
    /// The smallest cap worth sending: below it the request is refused instead (an answer cut at a few
    /// tokens helps nobody). A client that asked for less keeps its own cap.
    public static let minimumCap = 16

    /// What remains under the tenant's hard budgets (nil: no such limit).
    public struct Room: Sendable, Equatable {
        public var tokens: Int64?
        public var nano: Int64?

        /// Creates a room.
        public init(tokens: Int64? = nil, nano: Int64? = nil) {
            self.tokens = tokens
            self.nano = nano
        }
    }

    /// The worst case of `chat` over `models` with its completion cap at most `cap`.
    public static func need(_ chat: ChatRequest, models: [ModelConfig], cap: Int? = nil) -> Reservation {
        let needs = models.map { model -> Reservation in
            let completion = min(cap ?? Int.max, chat.completionCap(for: model)).saturatingMultiply(chat.choices)
            let prompt = chat.promptBound(imageTokens: model.imageTokens)
            return Reservation(
                promptTokens: prompt, completionTokens: completion,
                costNano: Money.cost(Usage(promptTokens: prompt, completionTokens: completion), model))
        }
        return Reservation(
            promptTokens: needs.map(\.promptTokens).max() ?? 0,
            completionTokens: needs.map(\.completionTokens).max() ?? 0,
            costNano: needs.map(\.costNano).max() ?? 0)
    }

    /// The largest completion cap that fits `room`, or nil when not even the minimum does (or the request
    /// fits whole already: nothing to lower). Binary search: the worst case grows with the cap.
    public static func cap(_ chat: ChatRequest, models: [ModelConfig], room: Room) -> Int? {
        func fits(_ cap: Int) -> Bool {
            let worst = need(chat, models: models, cap: cap)
            if let tokens = room.tokens, Int64(worst.tokens) > tokens { return false }
            if let nano = room.nano, worst.costNano > nano { return false }
            return true
        }
        let full = models.map { chat.completionCap(for: $0) }.max() ?? 0
        let floor = min(minimumCap, full)
        guard floor >= 1, !fits(full), fits(floor) else { return nil }
        var (lo, hi) = (floor, full)  // fits(lo), !fits(hi)
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2
            if fits(mid) { lo = mid } else { hi = mid }
        }
        return lo
    }
}
