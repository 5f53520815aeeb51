import Foundation
import Testing

@testable import TenantGateCore
import TenantGateFuzzTargets

/// Every fuzz target's corpus (`Tests/FuzzCorpus/<target>/`: seeds, and every crasher a fuzzing run found)
/// replayed through the same function `scripts/fuzz` runs: a regression traps here.
@Suite struct FuzzCorpusTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("FuzzCorpus")

    @Test(arguments: FuzzTargets.all.keys.sorted())
    func corpusReplays(_ target: String) throws {
        let directory = FuzzCorpusTests.root.appendingPathComponent(target)
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(!files.isEmpty, "no corpus for \(target)")
        let run = try #require(FuzzTargets.all[target])
        for file in files {
            let data = try Data(contentsOf: directory.appendingPathComponent(file))
            run(Array(data))
        }
    }
}
