import Testing

@testable import TenantGateCore

private func priced(_ name: String, input: Double, output: Double, cap: Int? = nil) -> ModelConfig {
    ModelConfig(
        name: name, backend: "b", upstreamModel: name, inputPerMTok: input, outputPerMTok: output,
        cachedInputPerMTok: input, cacheWritePerMTok: input, maxTokens: cap)
}

private func fitChat(_ extra: String = "") throws -> ChatRequest {
    try ChatRequest.parse(Array(#"{"messages":[{"role":"user","content":"hello"}]\#(extra)}"#.utf8))
}

/// `budget.when_short: fit`: the largest completion cap whose worst case fits what the budgets have left.
@Suite struct BudgetFitTests {
    @Test func theCapIsTheLargestThatFitsTheMoneyLeft() throws {
        let model = priced("p", input: 3, output: 15)
        let request = try fitChat()
        let room = BudgetFit.Room(nano: 50_000_000)  // $0.05
        let cap = try #require(BudgetFit.cap(request, models: [model], room: room))
        #expect(BudgetFit.need(request, models: [model], cap: cap).costNano <= 50_000_000)
        #expect(BudgetFit.need(request, models: [model], cap: cap + 1).costNano > 50_000_000)
        // The lowered request reserves exactly the fitted worst case.
        #expect(
            Reservation(chat: request.capped(at: cap), model: model)
                == BudgetFit.need(request, models: [model], cap: cap))
    }

    @Test func theDearestModelOfTheChainAndNChoicesCount() throws {
        let cheap = priced("c", input: 1, output: 1)
        let dear = priced("d", input: 1, output: 10)
        let request = try fitChat(#","n":2"#)
        let room = BudgetFit.Room(nano: 10_000_000)  // $0.01
        let cap = try #require(BudgetFit.cap(request, models: [cheap, dear], room: room))
        // 2 choices × cap × $10/Mtok plus the prompt on the dear model.
        #expect(cap < 500 && cap > 450)
        #expect(BudgetFit.need(request, models: [cheap, dear], cap: cap).costNano <= 10_000_000)
        let tokens = BudgetFit.Room(tokens: 1_000)
        let tokenCap = try #require(BudgetFit.cap(request, models: [cheap], room: tokens))
        #expect(BudgetFit.need(request, models: [cheap], cap: tokenCap).tokens <= 1_000)
        #expect(BudgetFit.need(request, models: [cheap], cap: tokenCap + 1).tokens > 1_000)
    }

    @Test func nothingToFitOrTooLittleLeftIsNil() throws {
        let model = priced("p", input: 3, output: 15)
        // Fits whole already.
        #expect(BudgetFit.cap(try fitChat(), models: [model], room: BudgetFit.Room(nano: 1_000_000_000)) == nil)
        // Not even the minimum cap's worth left.
        #expect(BudgetFit.cap(try fitChat(), models: [model], room: BudgetFit.Room(nano: 100_000)) == nil)
        #expect(BudgetFit.cap(try fitChat(), models: [model], room: BudgetFit.Room(tokens: 0)) == nil)
        // A client that asked for fewer than the minimum keeps its own cap as the floor.
        let small = try fitChat(#","max_tokens":8"#)
        let need = BudgetFit.need(small, models: [model])
        #expect(BudgetFit.cap(small, models: [model], room: BudgetFit.Room(tokens: Int64(need.tokens) - 1)) == nil)
    }

    @Test(arguments: [
        (Int64(50_000_000), "$0.0500"), (77_000, "$0.000077"), (9_999_999, "$0.0099"), (10_000_000, "$0.0100"),
        (12_340_000_000, "$12.3400"), (0, "$0.0000"), (1, "$0.000000001"), (-50_000_000, "-$0.0500"),
        (123_456, "$0.00012"),
    ])
    func moneyReadsTheSameEverywhere(nano: Int64, text: String) {
        #expect(Money.display(nano: nano) == text)
    }
}
