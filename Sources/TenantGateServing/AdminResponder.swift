import TenantGateCore
import TenantGateSystem

/// Serves the admin page (`/admin/…`): implemented by the TenantGateAdmin module, wired in by the executable.
public protocol AdminResponder: Sendable {
    /// Answers one request completely on `sink` (with the worker's configuration snapshot); returns what
    /// it sent, for the request log. Throws only when it could not start (no connection free: a storage
    /// failure), before anything was sent.
    func respond(to request: Request, sink: any ResponseSink, config: GatewayConfig) throws -> AdminAnswer
}

/// The status an admin request was answered with and, when it failed on the server's side, an error code
/// and a detail for the request log (the page itself says only that it failed).
public struct AdminAnswer: Sendable, Equatable {
    public var status: Int
    public var errorCode: String?
    public var errorDetail: String?

    public init(status: Int, errorCode: String? = nil, errorDetail: String? = nil) {
        self.status = status
        self.errorCode = errorCode
        self.errorDetail = errorDetail
    }
}
