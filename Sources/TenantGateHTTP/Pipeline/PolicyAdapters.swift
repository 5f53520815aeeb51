import TenantGateCore
import TenantGateSystem

/// utf8proc's folding for the detectors.
struct Utf8procFolding: ScalarFolding {
    func fold(_ scalar: Unicode.Scalar, into out: inout [Unicode.Scalar]) { UnicodeFold.fold(scalar, into: &out) }
}

/// A compiled tenant pattern for the detectors.
struct RegexMatcher: PatternMatching {
    let regex: Regex
    func matches(in text: [UInt8], maxSpan: Int, budget: InspectionBudget) throws -> [Range<Int>] {
        try regex.matches(in: text, maxSpan: maxSpan, stop: { budget.exhausted })
    }
}
