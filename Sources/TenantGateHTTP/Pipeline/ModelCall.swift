import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// The model endpoints, each served by its own list of stages (`Pipeline`).
enum Endpoint: String, Sendable {
    case chat, messages, countTokens = "count_tokens", embeddings, responses

    /// The API its answers and errors are written in.
    var api: ClientAPI {
        switch self {
        case .messages, .countTokens: return .anthropic
        case .responses: return .responses
        case .chat, .embeddings: return .openAI
        }
    }
}

/// A Responses API call: the request, its response id (fixed before anything is sent) and whether to keep
/// the response.
struct ResponsesState: Sendable {
    let request: ResponsesRequest
    let id: String
    let createdAt: Int
    /// The stored conversation a `previous_response_id` continues (Chat Completions messages).
    var previous: [JSONValue] = []
}

/// The request as the parse stage validated it.
enum CallInput: Sendable {
    case none
    /// A chat call (`messages` is the Anthropic client's request when it spoke `/v1/messages`).
    case chat(ChatRequest, messages: MessagesRequest?)
    case embeddings(EmbeddingsRequest)
    case countTokens(MessagesRequest)
}

/// The model (and its fallbacks) a call goes to.
struct Target: Sendable {
    /// The catalog name asked for (or the tenant's default).
    let name: String
    let model: ModelConfig
    let backend: BackendConfig
    /// The models tried in order, the asked-for one first; each with its backend.
    let chain: [(name: String, model: ModelConfig, backend: BackendConfig)]
}

/// What the reserve stage holds for the call until it is settled.
struct Hold: Sendable {
    /// An exact reservation, settled (or released) when the call ends.
    var reservationID: Int64?
    /// Or the call's share of the worker's lease for the tenant.
    var leaseClaim: LeaseBook.Claim?
    /// Rate-limit and budget-warning headers, sent with success and error answers alike.
    var headers: [(String, String)] = []
    /// The limit or budget that refused the call.
    var refusedLimit: String?
    /// The budget that refused is used up (not even the smallest answer fits): its 100 % notice is due.
    var budgetExhausted = false
}

/// What serving the call did, for the answer's headers, the execution log and the log line.
struct Served: Sendable {
    /// The catalog model that served (or, before that, the one asked for, when it is in the catalog:
    /// arbitrary client strings would explode metric cardinality).
    var model: String?
    var backend: String?
    var fallbackUsed = false
    /// Upstream attempts retried, over the whole fallback chain.
    var retries = 0
    var usage: Usage?
    var costNano: Int64?
    var upstreamMs: Int?
    var ttfbMs: Int?
}

/// What the cache did for a call of a tenant whose cache is on.
struct CacheState: Sendable {
    let settings: CacheSettings
    /// The entry's key, when the request is eligible, and who shares it (`CacheKeys.partition`).
    var key: [UInt8]?
    var partition: String?
    /// `hit` or `miss` (header, log, execution row).
    var outcome = "miss"
    /// A hit whose entry's last use should be recorded (LRU order).
    var touch = false
    /// What a hit saved.
    var savedTokens: Int64 = 0
    var savedNano: Int64 = 0
    /// A fresh answer to keep (stored with the settlement unless a policy changed it).
    var write: CacheWrite?
    /// Semantic cache: the cosine of a semantic hit; the question's scope, vector and signature (stored
    /// with a fresh answer); what embedding the question cost.
    var similarity: Float?
    var semantic: (scope: [UInt8], vector: [Float], signature: String)?
    var embeddingTokens = 0
    var embeddingNano: Int64 = 0
}

/// A whole answer waiting for the reply stage.
struct PendingReply: Sendable {
    var status = 200
    var body: [UInt8]
}

/// One model call as it moves through its pipeline: what came in (fixed), then one part per stage, each
/// written by the stage that owns it and read by the ones after.
struct ModelCall: Sendable {
    let endpoint: Endpoint
    let request: Request
    let principal: Principal
    let config: GatewayConfig
    let trace: TraceContext
    /// `chatcmpl-` and the request id's letters and digits: the same for every attempt of a request.
    let completionID: String
    /// The CPU its content inspection may take (ingress, mid-stream and egress together).
    let inspection: InspectionBudget

    /// Parse: the validated request, who it is for, and whether it streams.
    var input = CallInput.none
    /// Flags roll out by it: the verified JWT subject, else the key id (never the client's `user`).
    var subject = ""
    var endUser: String?
    var streamed = false
    /// Model: where the call goes.
    var target: Target?
    /// Prompt: the tenant template that served, and the system prompt it makes for a native call.
    var prompt: ServedPrompt?
    var nativeSystem: String?
    /// Reserve: the capacity held.
    var hold = Hold()
    /// Guard: a policy stopped the request after inspecting it (before it reserved anything): the inspection
    /// is charged as one request of the per-minute window.
    var policyBlocked = false
    /// Whether the call belongs in the execution log (it reached, or was refused before, a model call).
    var accountable: Bool
    /// Upstream: what served and what it reported.
    var served = Served()
    /// Guard, egress and stream filter: what the tenant's policies did.
    var policyTriggers: [PolicyTrigger] = []
    /// Cache: on for the tenant, the key when the request may be answered from it, what it did.
    var cache: CacheState?
    /// Parse: the Responses API request, for the responses endpoint.
    var responses: ResponsesState?
    /// Retrieve: the chunks added to the system prompt.
    var retrieval: RetrievalState?
    /// A whole answer not sent yet (streams are relayed as they come).
    var reply: PendingReply?
    /// A stream already went out (from the upstream or the cache).
    var relayed = false
    /// The status the client got (499 when it left), and the error code, if any.
    var status = 0
    var errorCode: String?

    init(
        endpoint: Endpoint, request: Request, principal: Principal, config: GatewayConfig, trace: TraceContext,
        inspection: InspectionBudget
    ) {
        self.endpoint = endpoint
        self.inspection = inspection
        self.request = request
        self.principal = principal
        self.config = config
        self.trace = trace
        accountable = endpoint != .countTokens
        completionID = ModelCall.completionID(request)
    }

    var tenant: TenantConfig { principal.tenant }
    var api: ClientAPI { endpoint.api }

    /// Headers of every answer the call gets: tenant, limits (also on errors).
    var baseHeaders: [(String, String)] { [("X-Tenant-ID", tenant.id.rawValue)] + hold.headers }

    /// Headers of a successful answer: the base ones, the prompt, the model that served and the cache.
    var answerHeaders: [(String, String)] {
        var headers = baseHeaders
        if let cache {
            headers.append(("X-TenantGate-Cache", cache.outcome))
            if let similarity = cache.similarity {
                headers.append(("X-TenantGate-Cache-Similarity", String(Double((similarity * 1000).rounded()) / 1000)))
            }
        }
        if let prompt { headers.append(("X-TenantGate-Prompt", "\(prompt.name)@\(prompt.version)")) }
        if let retrieval { headers.append(("X-TenantGate-Sources", retrieval.header)) }
        if target != nil, let model = served.model { headers.append(("X-TenantGate-Model", model)) }
        return headers
    }

    private static func completionID(_ request: Request) -> String {
        let source = request.requestID.isEmpty ? String(Posix.wallMicros()) : request.requestID
        let alnum = source.utf8.lazy.filter {
            (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0)
        }
        return "chatcmpl-" + String(decoding: Array(alnum.prefix(32)), as: UTF8.self)
    }
}
