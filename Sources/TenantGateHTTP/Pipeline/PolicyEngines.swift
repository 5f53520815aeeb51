import TenantGateCore
import TenantGateSystem

/// A worker's policy engines: Unicode folding over utf8proc, and tenant patterns compiled once per worker.
final class PolicyEngines: Sendable {
    /// Compiled tenant patterns by source (a pattern that fails to compile is remembered as nil).
    private let compiled = Locked<[String: RegexMatcher?]>([:])

    /// The engine for `set`, charging `budget` (a request's; none outside requests).
    func engine(_ set: PolicySet, budget: InspectionBudget = .unbounded()) -> PolicyEngine {
        PolicyEngine(set: set, folding: Utf8procFolding(), patterns: { [self] in pattern($0) }, budget: budget)
    }

    private func pattern(_ source: String) -> (any PatternMatching)? {
        if let known = compiled.withLock({ $0[source] }) { return known }
        let made = (try? Regex(source)).map(RegexMatcher.init)
        compiled.withLock {
            if $0.count > 4096 { $0.removeAll() }
            $0[source] = made
        }
        return made
    }
}
