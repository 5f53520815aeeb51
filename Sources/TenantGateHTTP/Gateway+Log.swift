import TenantGateCore
import TenantGateServing
import TenantGateSystem

extension Gateway {
    func logRequest(_ request: Request, _ exchange: Exchange, latencyMs: Int) {
        let level = exchange.status >= 500 ? "error" : exchange.status >= 400 ? "warn" : "info"
        guard log.enabled(level) else { return }
        let served = exchange.call?.served
        let usage = served?.usage
        var fields: [(String, JSONValue)] = [
            ("request_id", .string(request.requestID)),
            ("tenant", exchange.tenant.map { .string($0) } ?? .null),
            ("model", served?.model.map { .string($0) } ?? .null),
            ("status", .int(exchange.status)),
            ("latency_ms", .int(latencyMs)),
            ("upstream_ms", served?.upstreamMs.map { .int($0) } ?? .null),
            ("tokens_in", usage.map { .int($0.promptTokens) } ?? .null),
            ("tokens_out", usage.map { .int($0.completionTokens) } ?? .null),
            ("cost_usd", served?.costNano.map { .number(Money.usdString(nano: $0)) } ?? .null),
            ("cache", exchange.call?.cache.map { .string($0.outcome) } ?? .null),
            ("method", .string(request.method)),
            ("path", .string(request.path)),
        ]
        if let key = exchange.keyID { fields.append(("key_id", .string(key))) }
        if let prompt = exchange.call?.prompt { fields.append(("prompt", .string("\(prompt.name)@\(prompt.version)"))) }
        if let triggers = exchange.call?.policyTriggers, !triggers.isEmpty {
            fields.append(("policy", .string(triggers.map(\.summary).joined(separator: ","))))
            // Its content inspection ran out of CPU budget: the rules after it failed by their on_error.
            if triggers.contains(where: \.failed), let budget = exchange.call?.inspection, budget.exhausted {
                fields.append(("inspection", .string("budget_exhausted")))
                fields.append(("inspection_ms", .int(Int(budget.spentNanos / 1_000_000))))
            }
        }
        fields.append(("trace_id", .string(exchange.trace.traceID)))
        if let code = exchange.errorCode { fields.append(("error", .string(code))) }
        if let detail = exchange.errorDetail { fields.append(("error_detail", .string(detail))) }
        log.write("request", level: level, fields)
    }
}
