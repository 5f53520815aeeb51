import TenantGateCore
import TenantGateServing

/// What every stage may use besides the call itself: where the answer goes and the worker's services.
struct StageServices {
    let sink: ResponseSink
    let resources: ThreadResources
    let log: AppLog
    let options: GatewayOptions
    /// The filters every answer stream passes through, in order, before the client's API writer.
    var streamFilters: [any StreamFilter] = []
}

/// One named step of a model call. A stage reads the parts of the call earlier stages wrote and writes
/// its own; it throws a `GatewayError` to answer the client with an error.
protocol Stage: Sendable {
    /// The stage's name, as the pipeline lists show it.
    var name: String { get }
    /// Whether it still runs once an earlier stage has the answer (`call.reply`): only the reply does.
    var runsWhenAnswered: Bool { get }
    func run(_ call: inout ModelCall, _ services: StageServices) throws
}

extension Stage {
    var runsWhenAnswered: Bool { false }
}

/// The stages of each model endpoint, in order. Settlement and the log line follow every call, whatever
/// happened, in `Gateway.handle`. A new stage (policy, cache, retrieval) is one type inserted here.
struct Pipeline: Sendable {
    let stages: [any Stage]

    static let chat = Pipeline(stages: [
        ParseStage(), ModelStage(), GatesStage(), AdmitStage(), GuardStage(), PromptStage(), RetrievalStage(),
        ReserveStage(), CacheStage(), UpstreamStage(), EgressStage(), ReplyStage(),
    ])
    /// `/v1/messages` is the chat pipeline: parse reads Anthropic's shape, reply writes it.
    static let messages = chat
    /// So is `/v1/responses`: parse reads the Responses shape (and the stored conversation it continues),
    /// reply writes response objects and events and keeps the response when asked to.
    static let responses = chat
    static let embeddings = Pipeline(stages: [
        ParseStage(), GatesStage(), ModelStage(), AdmitStage(), GuardStage(), ReserveStage(), UpstreamStage(),
        ReplyStage(),
    ])
    /// Free like upstream: a backend that cannot count is answered by the estimate, before any reservation.
    static let countTokens = Pipeline(stages: [
        ParseStage(), GatesStage(), ModelStage(), AdmitStage(), GuardStage(), EstimateStage(), ReserveStage(),
        UpstreamStage(), ReplyStage(),
    ])

    static func of(_ endpoint: Endpoint) -> Pipeline {
        switch endpoint {
        case .chat: return chat
        case .messages: return messages
        case .embeddings: return embeddings
        case .countTokens: return countTokens
        case .responses: return responses
        }
    }

    /// Runs the stages in order; once the call has its answer, only the stages that run then.
    func run(_ call: inout ModelCall, _ services: StageServices) throws {
        for stage in stages where (call.reply == nil && !call.relayed) || stage.runsWhenAnswered {
            try stage.run(&call, services)
        }
    }
}
