/// One finished request, as the execution log keeps it.
public struct ExecutionRecord: Sendable {
    public var requestID: String
    public var atMs: Int64
    public var tenant: String
    public var keyID: String?
    public var endUser: String?
    public var model: String?
    public var backend: String?
    public var status: Int
    public var errorCode: String?
    public var latencyMs: Int
    public var upstreamMs: Int?
    public var ttfbMs: Int?
    public var usage: Usage
    public var costNano: Int64
    public var streamed: Bool
    public var fallbackUsed: Bool
    public var retries: Int
    public var prompt: String?
    /// W3C trace id (32 hex digits).
    public var traceID: String?
    /// For a rate refusal, which limit (`requests` or `tokens`); for a budget refusal, which budget.
    public var refusedLimit: String?
    /// What guardrail policies did to the request and its answer.
    public var policyTriggers: [PolicyTrigger] = []
    /// The cache: `hit`, `semantic-hit` or `miss` where caching is on for the tenant.
    public var cache: String?
    /// What a hit saved (the tokens and cost its answer took when it was made).
    public var savedTokens: Int64 = 0
    public var savedNano: Int64 = 0
    /// The entry a hit used (its use is recorded with the settlement).
    public var cacheHitKey: [UInt8]?
    /// An answer to keep, stored with the settlement.
    public var cacheWrite: CacheWrite?
    /// `audit.capture_requests`: the request goes into the tenant's audit chain too.
    public var auditCapture = false
    /// What retrieval added to a chat call: `{"collection", "chunks", "ms"}` as compact JSON.
    public var retrieval: String?
    /// The endpoint: chat, messages, embeddings, count_tokens, responses (nil for other rows).
    public var endpoint: String?
    /// A request stopped after its content was inspected and before it reserved anything (a policy block):
    /// the inspection is charged as one request of the tenant's per-minute window.
    public var chargesRequest = false
    /// The budget named by `refusedLimit` refused because it is used up (its 100 % notice is due).
    public var budgetExhausted = false
    /// The tenant's limits, when it has budgets: its settlement announces the thresholds reached.
    public var budgetLimits: Limits?

    /// Creates a record.
    public init(requestID: String, atMs: Int64, tenant: String, status: Int) {
        self.requestID = requestID
        self.atMs = atMs
        self.tenant = tenant
        self.status = status
        latencyMs = 0
        usage = Usage(promptTokens: 0, completionTokens: 0)
        costNano = 0
        streamed = false
        fallbackUsed = false
        retries = 0
    }
}
