/// Where the request path takes its configuration from: the current snapshot (refreshed in the background
/// by the runtime's poller), and where it notes the keys it saw used (written back in batches).
public protocol ConfigSource: Sendable {
    /// The snapshot to serve this request with, and the JWT check that goes with it.
    var snapshot: (config: GatewayConfig, jwt: JWTCheck?) { get }
    /// Notes that a key was used.
    func markUsed(_ keyID: String)
}

extension ConfigSource {
    /// The snapshot to serve this request with.
    public var config: GatewayConfig { snapshot.config }
}
