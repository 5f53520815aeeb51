import TenantGateCore
import TenantGateSystem

/// Serves the admin page (`/admin/…`): implemented by the TenantGateAdmin module, wired in by the executable.
public protocol AdminResponder: Sendable {
    /// Answers one request completely on `sink` (using this thread's `db` connection and the worker's
    /// configuration snapshot); returns the status it sent.
    func respond(to request: Request, sink: any ResponseSink, db: any SQLConnection, config: GatewayConfig) -> Int
}
