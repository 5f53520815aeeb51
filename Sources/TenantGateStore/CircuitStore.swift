import TenantGateCore
import TenantGateSystem

/// Circuit breakers per tenant × backend, shared by all workers through SQLite. Tenant A's failures
/// never touch tenant B's rows.
public struct CircuitStore {
    private let reader: any SQLConnection
    private let writer: SharedWriter

    /// `reader` is a connection the calling thread holds; `writer` the worker's shared write connection.
    public init(reader: any SQLConnection, writer: SharedWriter) {
        self.reader = reader
        self.writer = writer
    }

    /// Decides whether a call may go out; claims the half-open probe atomically when the cooldown is over.
    public func admit(tenant: String, backend: String, nowMs: Int64) throws -> CircuitDecision {
        guard
            let row = try reader.statement(
                "SELECT open_until_ms, probing FROM circuit_state WHERE tenant = ? AND backend = ?"
            ).all([.text(tenant), .text(backend)]).first, let openUntil = row[0].int, openUntil > 0
        else { return .closed }
        if nowMs < openUntil { return .open(retryAfter: Int((openUntil - nowMs + 999) / 1000)) }
        // The probe holds the circuit open for up to 30 s; if its worker dies, the next request probes again.
        let claimed: Bool = try writer.withTransaction { writer in
            try writer.statement(
                """
                UPDATE circuit_state SET probing = 1, open_until_ms = ?3
                WHERE tenant = ?1 AND backend = ?2 AND open_until_ms > 0 AND open_until_ms <= ?4
                """
            ).run([.text(tenant), .text(backend), .int(nowMs + 30_000), .int(nowMs)])
            return writer.changes == 1
        }
        return claimed ? .probe : .open(retryAfter: 1)
    }

    /// Records a failed call; returns true if this failure opened (or re-opened) the circuit.
    public func recordFailure(tenant: String, backend: String, settings: CircuitSettings, wasProbe: Bool, nowMs: Int64)
        throws -> Bool
    {
        try writer.withTransaction { writer in
            if wasProbe {
                try open(writer, tenant, backend, until: nowMs + settings.cooldownMs)
                return true
            }
            try writer.statement("INSERT INTO circuit_failures(tenant, backend, at_ms) VALUES (?, ?, ?)")
                .run([.text(tenant), .text(backend), .int(nowMs)])
            try writer.statement("DELETE FROM circuit_failures WHERE tenant = ? AND backend = ? AND at_ms <= ?")
                .run([.text(tenant), .text(backend), .int(nowMs - settings.windowMs)])
            let count =
                try writer.statement("SELECT COUNT(*) FROM circuit_failures WHERE tenant = ? AND backend = ?")
                .all([.text(tenant), .text(backend)]).first?.first?.int ?? 0
            guard count >= settings.errors else { return false }
            try open(writer, tenant, backend, until: nowMs + settings.cooldownMs)
            try writer.statement("DELETE FROM circuit_failures WHERE tenant = ? AND backend = ?")
                .run([.text(tenant), .text(backend)])
            return true
        }
    }

    private func open(_ writer: any SQLConnection, _ tenant: String, _ backend: String, until: Int64) throws {
        AuditChain.appendBestEffort(
            writer, keys: self.writer.auditKeys,
            [
                AuditChain.Pending(
                    tenant: tenant, kind: "circuit_open", actor: "circuit",
                    body: .object([("backend", .string(backend)), ("until_ms", .int(Int(until)))]),
                    atMs: Posix.wallMicros() / 1000)
            ])
        try writer.statement(
            """
            INSERT INTO circuit_state(tenant, backend, open_until_ms, probing) VALUES (?1, ?2, ?3, 0)
            ON CONFLICT(tenant, backend) DO UPDATE SET open_until_ms = ?3, probing = 0
            """
        ).run([.text(tenant), .text(backend), .int(until)])
    }

    /// A successful probe closes the circuit.
    public func recordProbeSuccess(tenant: String, backend: String) throws {
        try writer.withTransaction { writer in
            try writer.statement("DELETE FROM circuit_state WHERE tenant = ? AND backend = ?")
                .run([.text(tenant), .text(backend)])
            AuditChain.appendBestEffort(
                writer, keys: self.writer.auditKeys,
                [
                    AuditChain.Pending(
                        tenant: tenant, kind: "circuit_close", actor: "circuit",
                        body: .object([("backend", .string(backend))]), atMs: Posix.wallMicros() / 1000)
                ])
            try writer.statement("DELETE FROM circuit_failures WHERE tenant = ? AND backend = ?")
                .run([.text(tenant), .text(backend)])
        }
    }

    /// Every known circuit: (tenant, backend, open now).
    public static func states(_ reader: any SQLConnection, nowMs: Int64) throws -> [(String, String, Bool)] {
        try reader.query("SELECT tenant, backend, open_until_ms FROM circuit_state ORDER BY 1, 2").map {
            ($0[0].text ?? "", $0[1].text ?? "", ($0[2].int ?? 0) > nowMs)
        }
    }
}
