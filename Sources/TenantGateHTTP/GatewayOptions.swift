import TenantGateCore
import TenantGateServing
import TenantGateSystem

/// Settings that shape every request.
public struct GatewayOptions: Sendable {
    /// Largest accepted request body.
    public var maxBodyBytes: Int
    /// Largest upstream response body kept in memory (non-streaming).
    public var maxUpstreamBytes = 32 << 20
    /// Whether a successful answer waits for its settlement (`WorkerOptions.durableSettlements`).
    public var durableSettlements: Bool
    /// CPU the content inspection of one request may take (`TENANTGATE_INSPECTION_BASE_MS`,
    /// `TENANTGATE_INSPECTION_MS_PER_MIB`, `TENANTGATE_INSPECTION_US_PER_CHECK`; default 20 ms + 100 ms per
    /// MiB + 50 µs per text checked).
    public var inspection = InspectionRate.standard

    /// Creates options.
    public init(maxBodyBytes: Int, durableSettlements: Bool = true) {
        self.maxBodyBytes = maxBodyBytes
        self.durableSettlements = durableSettlements
    }

    /// Options with the inspection rate read from the environment (unset or not a number: the default).
    public static func fromEnvironment(maxBodyBytes: Int, durableSettlements: Bool) -> GatewayOptions {
        var options = GatewayOptions(maxBodyBytes: maxBodyBytes, durableSettlements: durableSettlements)
        func number(_ name: String) -> Int? { Posix.env(name).flatMap { Int($0) } }
        options.inspection = InspectionRate(
            baseMs: number("TENANTGATE_INSPECTION_BASE_MS") ?? 20,
            msPerMiB: number("TENANTGATE_INSPECTION_MS_PER_MIB") ?? 100,
            microsPerCheck: number("TENANTGATE_INSPECTION_US_PER_CHECK") ?? 50)
        return options
    }
}
