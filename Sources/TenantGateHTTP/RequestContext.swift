import TenantGateCore
import TenantGateServing

/// One request's who and with-what, for the parts that act on its behalf outside the pipeline's stages
/// (the gateway's own embeddings, the documents endpoint): the same six fields, passed as one.
struct RequestContext {
    let request: Request
    let principal: Principal
    let config: GatewayConfig
    let trace: TraceContext
    let resources: ThreadResources
    let log: AppLog

    var requestID: String { request.requestID }
    var tenant: TenantConfig { principal.tenant }

    init(
        request: Request, principal: Principal, config: GatewayConfig, trace: TraceContext,
        resources: ThreadResources, log: AppLog
    ) {
        self.request = request
        self.principal = principal
        self.config = config
        self.trace = trace
        self.resources = resources
        self.log = log
    }

    /// The context of a model call's request.
    init(_ call: ModelCall, _ services: StageServices) {
        self.init(
            request: call.request, principal: call.principal, config: call.config, trace: call.trace,
            resources: services.resources, log: services.log)
    }
}
