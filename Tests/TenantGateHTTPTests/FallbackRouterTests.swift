import Foundation
import Testing

@testable import TenantGateCore
@testable import TenantGateHTTP
import TenantGateServing
@testable import TenantGateStore
@testable import TenantGateSystem

@Suite struct FallbackRouterTests {
    let config: GatewayConfig
    let tenant: TenantConfig
    let chain: [FallbackRouter.Candidate]
    let circuits: PooledCircuits
    let clock = FakeClock()

    init() throws {
        let config = try gatewayConfig(routedConfig)
        let tenant = try #require(config.tenants["acme"])
        self.config = config
        self.tenant = tenant
        chain = tenant.chain(for: "a").compactMap { name in
            config.models[name].flatMap { m in config.backends[m.backend].map { (name, m, $0) } }
        }
        let (path, _) = try temporaryDatabase()
        circuits = PooledCircuits(
            readers: try ConnectionPool(path: path, count: 1, cacheKiB: 64), writer: try SharedWriter(path: path))
    }

    var router: FallbackRouter {
        FallbackRouter(circuits: circuits, log: AppLog(path: "/dev/null", level: "error"), clock: clock)
    }

    /// Two failures of each remote backend open both circuits (errors: 2); the mock serves meanwhile.
    func openBothRemoteCircuits() throws {
        for _ in 0..<2 {
            try router.serve(chain, tenant: tenant, started: { false }, onRetry: {}) { candidate, _ in
                if candidate.backend.name != "demo" {
                    throw RetryableUpstream(error: .upstreamTimeout, retryAfterMs: nil)
                }
            }
        }
    }

    @Test func theChainIsTheAllowListedFallbacksInOrder() {
        #expect(chain.map(\.name) == ["a", "b", "m"])
    }

    @Test func aRetryableFailureIsRetriedThenFallsBackToTheNextModel() throws {
        var tried: [String] = []
        var retries = 0
        try router.serve(chain, tenant: tenant, started: { false }, onRetry: { retries += 1 }) { candidate, index in
            tried.append("\(index):\(candidate.name)")
            if candidate.name == "a" { throw RetryableUpstream(error: .upstreamTimeout, retryAfterMs: nil) }
        }
        // `one` retries twice, `two` serves at once.
        #expect(tried == ["0:a", "0:a", "0:a", "1:b"])
        #expect(retries == 2)
    }

    @Test func aFinalErrorIsNotRetriedNorFallenBackFrom() {
        var tried = 0
        #expect(throws: GatewayError.self) {
            try router.serve(chain, tenant: tenant, started: { false }, onRetry: {}) { _, _ in
                tried += 1
                throw GatewayError.invalidRequest("the upstream refused it")
            }
        }
        #expect(tried == 1)
    }

    @Test func onceTheClientHasBytesAFailureIsFinal() {
        var tried = 0
        #expect(throws: GatewayError.self) {
            try router.serve(chain, tenant: tenant, started: { tried > 0 }, onRetry: {}) { _, _ in
                tried += 1
                throw RetryableUpstream(error: .upstreamTimeout, retryAfterMs: nil)
            }
        }
        #expect(tried == 1)
    }

    @Test func anOpenCircuitSkipsItsBackendUntilTheProbe() throws {
        try openBothRemoteCircuits()
        var tried: [String] = []
        try router.serve(chain, tenant: tenant, started: { false }, onRetry: {}) { candidate, _ in
            tried.append(candidate.name)
        }
        #expect(tried == ["m"])
        // Without the mock in the chain, an open circuit is the answer.
        #expect(throws: GatewayError.self) {
            try router.serve(Array(chain.prefix(2)), tenant: tenant, started: { false }, onRetry: {}) { _, _ in }
        }
        // After the cooldown one probe goes through; its success closes the circuit.
        let later = Posix.wallMicros() / 1000 + 31_000
        #expect(try circuits.admit(tenant: "acme", backend: "one", nowMs: later) == .probe)
        try circuits.recordProbeSuccess(tenant: "acme", backend: "one")
        #expect(try circuits.admit(tenant: "acme", backend: "one", nowMs: later) == .closed)
    }

    @Test func circuitsAreTheTenantsOwn() throws {
        let renamed = routedConfig.replacingOccurrences(of: "\"acme\"", with: "\"beta\"")
        let beta = try #require(try gatewayConfig(renamed).tenants["beta"])
        try openBothRemoteCircuits()
        var tried: [String] = []
        try router.serve(chain, tenant: beta, started: { false }, onRetry: {}) { candidate, _ in
            tried.append(candidate.name)
        }
        #expect(tried == ["a"])
    }
}
