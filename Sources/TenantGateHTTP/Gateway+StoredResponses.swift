import TenantGateCore
import TenantGateServing
import TenantGateSystem

extension Gateway {
    /// `GET|DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`: the tenant's stored
    /// responses (flag `responses_api`). Another tenant's id, or one never issued, is `404` like an unknown one.
    func storedResponse(
        _ request: Request, principal: Principal, sink: ResponseSink, resources: ThreadResources
    ) throws -> Int {
        // Flags roll out by the same subject as the model calls (the JWT subject, else the key).
        let tenant = principal.tenant
        guard tenant.feature("responses_api", subject: principal.subject ?? principal.key.id) else {
            throw GatewayError.featureDisabled("responses_api")
        }
        let parts = request.path.split(separator: "/", omittingEmptySubsequences: false).dropFirst(3).map(String.init)
        guard let id = parts.first, parts.count <= 2 else { throw GatewayError.notFound }
        let owner = tenant.id.rawValue
        let missing = GatewayError.missing("Response with id '\(StoredResponse.isID(id) ? id : "?")'")
        let headers = [("X-Tenant-ID", owner)]
        switch (request.method, parts.count > 1 ? parts[1] : nil) {
        case ("GET", nil):
            guard let response = try resources.store.responses.response(tenant: owner, id: id)
            else { throw missing }
            sink.json(200, response, headers: headers)
        case ("DELETE", nil):
            guard try resources.store.responses.delete(tenant: owner, id: id) else {
                throw missing
            }
            sink.json(
                200, .object([("id", .string(id)), ("object", .string("response.deleted")), ("deleted", .bool(true))]),
                headers: headers)
        case ("GET", "input_items"):
            guard let items = try resources.store.responses.inputItems(tenant: owner, id: id)
            else { throw missing }
            // Newest first by default (OpenAI's `order=desc`); `order=asc` gives them as sent.
            let ordered = request.queryValue("order") == "asc" ? items : items.reversed()
            let limit = min(max(request.queryValue("limit").flatMap { Int($0) } ?? 20, 1), 100)
            let page = Array(ordered.prefix(limit))
            sink.json(
                200,
                .object([
                    ("object", .string("list")), ("data", .array(page)),
                    ("first_id", page.first?["id"] ?? .null), ("last_id", page.last?["id"] ?? .null),
                    ("has_more", .bool(ordered.count > page.count)),
                ]), headers: headers)
        case (_, nil), (_, "input_items"): throw GatewayError.methodNotAllowed
        default: throw GatewayError.notFound
        }
        return 200
    }
}

extension StoredResponse {
    /// A fresh, unguessable response id (`resp_` + 48 hex digits from the CSPRNG).
    static func newID() -> String {
        "resp_"
            + ((try? Crypto.randomBytes(24)).map(Crypto.hex)
                ?? Crypto.hex(Crypto.sha256(Array(String(Posix.wallMicros()).utf8))))
    }
}
