// Runs the simulator over a fixed range of seeds (`make test`), one seed (replay) or many (soak).
import FlotillaTestKit
import Foundation
import Testing

/// The environment knobs: FLOTILLA_SIM_SEED (+ FLOTILLA_SIM_NODES) replays one seed with its full
/// trace; FLOTILLA_SIM_SOAK=<count> runs that many seeds; FLOTILLA_SIM_SEEDS overrides how many
/// seeds per cluster size the fixed range runs.
private enum SimulationEnvironment {
    static func integer(_ name: String) -> UInt64? {
        ProcessInfo.processInfo.environment[name].flatMap { UInt64($0) }
    }

    static var replaySeed: UInt64? { integer("FLOTILLA_SIM_SEED") }
    static var replayNodeCount: Int? { integer("FLOTILLA_SIM_NODES").map { Int($0) } }
    static var soakCount: UInt64? { integer("FLOTILLA_SIM_SOAK") }
    static var fixedRangeSize: UInt64 { integer("FLOTILLA_SIM_SEEDS") ?? 24 }
    static var isReplaying: Bool { replaySeed != nil }
}

/// Runs `seeds` and records every failure (with its replay command) as a test issue.
private func simulate(seeds: some Sequence<UInt64>, nodeCount: Int?, maxFailures: Int = 3) -> SimulationStatistics {
    var total = SimulationStatistics()
    var failures = 0
    for seed in seeds {
        var simulation = Simulation(configuration: .standard(seed: seed, nodeCount: nodeCount))
        do {
            total.add(try simulation.run())
        } catch {
            print(error.description)
            record(error)
            failures += 1
            if failures >= maxFailures { break }
        }
    }
    return total
}

/// Records a failed seed as a test issue; the full report with its trace is printed above it.
private func record(_ failure: SimulationFailure) {
    let detail = failure.detail.split(separator: "\n").first.map(String.init) ?? ""
    Issue.record(
        Comment(
            rawValue:
                "\(failure.invariant) violated (seed \(failure.seed)): \(detail)\nreplay: \(failure.replayCommand)"))
}

/// The fixed seed range `make test` runs: even seeds on 3 nodes, odd seeds on 5, both sizes
/// in parallel.
@Test(.enabled(if: !SimulationEnvironment.isReplaying), arguments: [3, 5])
func fixedSeedRange(nodeCount: Int) {
    let count = SimulationEnvironment.fixedRangeSize
    let seeds = (0..<count).map { 2 * $0 + (nodeCount == 3 ? 0 : 1) }
    let total = simulate(seeds: seeds, nodeCount: nodeCount)
    print("\(nodeCount)-node clusters: \(total.summary)")
    if count >= 24 {
        // The range must reach the unsynced commit-only hard states and crashes that lose them.
        #expect(total.unsyncedCommitWrites > 0 && total.crashesLosingCommit > 0, "\(total)")
        // And leaders' syncs off the loop, with crashes that lose what they were still syncing.
        #expect(total.syncsOffLoop > 0 && total.crashesLosingLeaderWrites > 0, "\(total)")
        // And reads answered from a leader's lease.
        #expect(total.leaseReads > 0, "\(total)")
    }
}

/// Replays one seed and prints every event: FLOTILLA_SIM_SEED=<seed> swift test --filter SimulationTests
@Test(.enabled(if: SimulationEnvironment.isReplaying))
func replayOneSeed() throws {
    let seed = try #require(SimulationEnvironment.replaySeed)
    var configuration = SimulationConfiguration.standard(seed: seed, nodeCount: SimulationEnvironment.replayNodeCount)
    configuration.echoesTrace = true
    var simulation = Simulation(configuration: configuration)
    do {
        let statistics = try simulation.run()
        print("seed \(seed) (\(configuration.nodeCount) nodes) passed: \(statistics.summary)")
    } catch {
        print(error.description)
        record(error)
    }
}

/// A long soak: FLOTILLA_SIM_SOAK=<count> swift test --filter SimulationTests.soak
@Test(.enabled(if: SimulationEnvironment.soakCount != nil))
func soak() throws {
    let count = try #require(SimulationEnvironment.soakCount)
    let start = (SimulationEnvironment.integer("FLOTILLA_SIM_SOAK_START") ?? 1_000_000)
    let total = simulate(seeds: start..<(start + count), nodeCount: nil, maxFailures: 10)
    print("soak from seed \(start): \(total.summary)")
}
