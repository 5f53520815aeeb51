import TenantGateCore
import TenantGateSystem

/// Keeps a Responses API response (`store: true`, OpenAI's default) under its tenant: written before the
/// client sees the final event or the whole answer, so a `previous_response_id` sent right after finds it.
struct ResponsesKeeper: Sendable {
    let state: ResponsesState
    /// The request's input items and messages as stored: after the tenant's ingress redactions, when they
    /// changed the request (what a policy removed is never kept at rest, nor replayed by a later turn).
    let inputItems: [JSONValue]
    let messages: [JSONValue]
    let tenant: String
    let maxStored: Int
    let storageQuota: Int64
    let responses: any ResponseRepository
    let log: AppLog

    /// Most responses a tenant keeps (`responses.max_stored`), and for how long (`responses.retention_days`).
    static let defaultMaxStored = 10_000
    static let defaultRetentionDays = 30

    init?(_ call: ModelCall, services: StageServices) {
        guard let state = call.responses, state.request.store else { return nil }
        // An answer from the cache is stored again only when the client asked for it in so many words:
        // repeated free hits must not fill the tenant's store.
        if let outcome = call.cache?.outcome, outcome != "miss", state.request.original["store"]?.boolValue != true {
            return nil
        }
        self.state = state
        let redacted = call.policyTriggers.contains {
            $0.phase == .ingress && $0.mode == .enforce && $0.action == .redact
        }
        if redacted {
            let engine = services.resources.shared.policies.engine(call.tenant.policies, budget: call.inspection)
            var verdict = PolicyVerdict(text: [])
            inputItems =
                Guardrails.rewrite(.array(state.request.inputItems), key: "input", engine: engine, verdict: &verdict)
                .arrayValue ?? []
            messages =
                Guardrails.rewrite(.array(state.request.messages), key: "messages", engine: engine, verdict: &verdict)
                .arrayValue ?? []
            // A rule that could not run this time (the budget spent): nothing unredacted is kept.
            if verdict.triggers.contains(where: \.failed) { return nil }
        } else {
            inputItems = state.request.inputItems
            messages = state.request.messages
        }
        tenant = call.tenant.id.rawValue
        maxStored = call.tenant.effective["responses"]?["max_stored"]?.intValue ?? ResponsesKeeper.defaultMaxStored
        storageQuota = call.tenant.storageQuotaBytes
        responses = services.resources.store.responses
        log = services.log
    }

    func keep(_ response: JSONValue) {
        guard let status = response["status"]?.stringValue, status == "completed" || status == "incomplete" else {
            return
        }
        let output = response["output"]?.arrayValue ?? []
        let stored = StoredResponse(
            id: state.id, createdMs: Int64(state.createdAt) * 1000, previous: state.request.previousResponseID,
            response: response, inputItems: inputItems,
            turn: ResponsesAPI.conversation(input: messages, output: output))
        do {
            try responses.save(stored, tenant: tenant, maxStored: maxStored, storageQuota: storageQuota)
        } catch let error as GatewayError where error.code == "storage_quota_exceeded" {
            // At its storage quota a tenant's responses are answered but not kept (a later GET is 404).
            log.event(
                "storage_quota_exceeded",
                [
                    "tenant": .string(tenant), "what": .string("response"),
                    "error": .string(error.message),
                ], level: "warn")
        } catch {
            log.event(
                "response_store_failed", ["tenant": .string(tenant), "error": .string("\(error)")], level: "error")
        }
    }
}

extension ReplyWriter {
    /// The writer for a call's answer from `model`: in the client's API, and for a Responses API call that
    /// keeps its response, storing the final response before it goes out.
    static func of(
        _ call: ModelCall, model: String, includeUsage: Bool, inputEstimate: Int, services: StageServices
    ) -> ReplyWriter {
        let keeper = ResponsesKeeper(call, services: services)
        return ReplyWriter(
            api: call.api, includeUsage: includeUsage, completionID: call.completionID, model: model,
            inputEstimate: inputEstimate, responses: call.responses, onFinal: { keeper?.keep($0) })
    }
}
