import Testing

@testable import TenantGateCore
@testable import TenantGateStore

/// The configuration parser on hostile files of 64 KiB and 1 MiB: linear (about 16× the time), not
/// quadratic (about 256×); under 50 ms on 1 MiB passes whatever the ratio.
@Suite struct YAMLComplexityTests {
    static func seconds(_ body: () -> Void) -> Double {
        let elapsed = ContinuousClock().measure(body)
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    static let shapes: [(String, @Sendable (Int) -> String)] = [
        ("many keys", { n in "tenants:\n" + String(repeating: "  t: {name: x}\n", count: n / 16) }),
        ("long flow list", { n in "x: [" + String(repeating: "a, ", count: n / 3) + "b]\n" }),
        ("deep flow nesting", { n in String(repeating: "[", count: min(n, 5_000)) }),
        ("long scalar", { n in "x: " + String(repeating: "a", count: n) + "\n" }),
        ("aliases", { n in "a: &a [x, y]\nb:\n" + String(repeating: "  - *a\n", count: n / 7) }),
        ("comments", { n in String(repeating: "# c\n", count: n / 4) }),
    ]

    @Test(arguments: 0..<shapes.count)
    func parsingIsLinear(index: Int) {
        let (name, make) = YAMLComplexityTests.shapes[index]
        let small = make(64 << 10)
        let large = make(1 << 20)
        let t64 = (0..<3).map { _ in YAMLComplexityTests.seconds { _ = try? YAMLConfig.parse(small) } }.min() ?? 0
        let t1M = YAMLComplexityTests.seconds { _ = try? YAMLConfig.parse(large) }
        #expect(t1M < 0.05 || t1M / max(t64, 1e-6) < 48, "\(name): \(t64 * 1000) ms, then \(t1M * 1000) ms")
        #expect(t1M < 20, "\(name): \(t1M) s on 1 MiB")
    }
}
