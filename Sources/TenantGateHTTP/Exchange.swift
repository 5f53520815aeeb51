import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// What a request did, for its answer and its log line; a model call carries its own `ModelCall`.
struct Exchange {
    var status = 0
    var tenant: String?
    var keyID: String?
    var errorCode: String?
    /// For the log: what failed on the server's side (a storage failure's reason, an unexpected error).
    var errorDetail: String?
    /// The request's trace.
    var trace = TraceContext(header: nil, newTraceID: "")
    /// The model call, for the model endpoints.
    var call: ModelCall?
}
