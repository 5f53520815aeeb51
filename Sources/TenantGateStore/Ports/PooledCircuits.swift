import TenantGateCore
import TenantGateSystem

/// `CircuitBreakers` over a worker's pooled read connections and its write connection (one connection
/// borrowed per call).
public struct PooledCircuits: CircuitBreakers {
    let readers: ConnectionPool
    let writer: SharedWriter

    public init(readers: ConnectionPool, writer: SharedWriter) {
        self.readers = readers
        self.writer = writer
    }

    private func with<T>(_ body: (CircuitStore) throws -> T) throws -> T {
        try readers.with { try body(CircuitStore(reader: $0, writer: writer)) }
    }

    public func admit(tenant: String, backend: String, nowMs: Int64) throws -> CircuitDecision {
        try with { try $0.admit(tenant: tenant, backend: backend, nowMs: nowMs) }
    }

    public func recordProbeSuccess(tenant: String, backend: String) throws {
        try with { try $0.recordProbeSuccess(tenant: tenant, backend: backend) }
    }

    public func recordFailure(
        tenant: String, backend: String, settings: CircuitSettings, wasProbe: Bool, nowMs: Int64
    ) throws -> Bool {
        try with {
            try $0.recordFailure(tenant: tenant, backend: backend, settings: settings, wasProbe: wasProbe, nowMs: nowMs)
        }
    }

    public func states(nowMs: Int64) throws -> [(String, String, Bool)] {
        try readers.with { try CircuitStore.states($0, nowMs: nowMs) }
    }
}
