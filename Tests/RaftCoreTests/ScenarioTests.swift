// Runs every scenario script in Tests/RaftCoreScenarios/ and compares its transcript with the expected output.
import Foundation
import Testing

/// Set FLOTILLA_REWRITE_SCENARIOS=1 to rewrite the expected output; commit only diffs you understand.
private let rewrite = ProcessInfo.processInfo.environment["FLOTILLA_REWRITE_SCENARIOS"] == "1"

/// The scripts live beside this target rather than inside it: SwiftPM warns about non-Swift files in
/// a target directory unless Package.swift excludes them.
private let scenarioDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("RaftCoreScenarios")

private let scenarioNames: [String] =
    ((try? FileManager.default.contentsOfDirectory(atPath: scenarioDirectory.path)) ?? [])
    .filter { $0.hasSuffix(".txt") }.sorted()

@Test func scenarioDirectoryHoldsScripts() {
    #expect(scenarioNames.count >= 13, "expected the scenario scripts in \(scenarioDirectory.path)")
}

@Test(arguments: scenarioNames)
func scenario(name: String) throws {
    let url = scenarioDirectory.appendingPathComponent(name)
    let text = try String(contentsOf: url, encoding: .utf8)
    let script = try ScenarioScript(parsing: text, name: name)
    var harness = ScenarioHarness()
    var outputs: [[String]] = []
    var mismatches: [String] = []
    for part in script.parts {
        guard case .command(let line, let command, let expected) = part else { continue }
        let output: [String]
        do { output = try harness.run(command) } catch { output = ["error: \(error)"] }
        outputs.append(output)
        if output != expected {
            mismatches.append("\(name):\(line): `\(command)`\n" + firstDifference(expected: expected, actual: output))
        }
    }
    if rewrite {
        try script.rendered(outputs: outputs).write(to: url, atomically: true, encoding: .utf8)
        return
    }
    #expect(mismatches.isEmpty, "\(mismatches.joined(separator: "\n\n"))")
}

/// The first line where the transcripts part, with a little context, so a failure reads at a glance.
private func firstDifference(expected: [String], actual: [String]) -> String {
    let common = zip(expected, actual).prefix { $0 == $1 }.count
    let from = max(0, common - 2)
    let expectedPart = expected[from..<min(expected.count, common + 6)].joined(separator: "\n")
    let actualPart = actual[from..<min(actual.count, common + 6)].joined(separator: "\n")
    return "first difference at output line \(common + 1) (expected \(expected.count) lines, got \(actual.count))\n"
        + "--- expected\n\(expectedPart)\n--- actual\n\(actualPart)\n"
        + "(FLOTILLA_REWRITE_SCENARIOS=1 rewrites the file; commit only a diff you understand)"
}
