// A seed is the whole run: the same seed replays event for event, and a failure says how to replay it.
import FlotillaTestKit
import Testing

private func shortRun(seed: UInt64, nodeCount: Int) -> SimulationConfiguration {
    var configuration = SimulationConfiguration.standard(seed: seed, nodeCount: nodeCount)
    configuration.chaosDuration = 4_000
    configuration.quietDuration = 4_000
    return configuration
}

@Test(arguments: [(UInt64(11), 3), (12, 5)])
func theSameSeedReplaysTheSameRun(seed: UInt64, nodeCount: Int) throws {
    var first = Simulation(configuration: shortRun(seed: seed, nodeCount: nodeCount))
    var second = Simulation(configuration: shortRun(seed: seed, nodeCount: nodeCount))
    let firstStatistics = try first.run()
    #expect(try second.run() == firstStatistics)
    #expect(firstStatistics.steps > 1_000)
    #expect(firstStatistics.completedOperations > 0)
    #expect(firstStatistics.committedEntries > 0)

    var other = Simulation(configuration: shortRun(seed: seed + 100, nodeCount: nodeCount))
    #expect(try other.run() != firstStatistics)
}

@Test func aFailureNamesTheSeedTheInvariantAndTheReplayCommand() {
    let failure = SimulationFailure(
        seed: 42, nodeCount: 5, time: 1_234, step: 99, invariant: "election safety",
        detail: "n1 and n2 were both leader in term 3", trace: ["[t=1233] n2 is leader of term 3"])
    let text = failure.description
    #expect(text.contains("seed 42 (5 nodes) failed at t=1234, step 99"))
    #expect(text.contains("election safety violated: n1 and n2 were both leader in term 3"))
    #expect(text.contains("  [t=1233] n2 is leader of term 3"))
    #expect(failure.replayCommand == "FLOTILLA_SIM_SEED=42 FLOTILLA_SIM_NODES=5 swift test --filter SimulationTests")
}

@Test func aFaultFreeRunCommitsEveryClientOperation() throws {
    var configuration = SimulationConfiguration(seed: 7, nodeCount: 3, faults: .none)
    configuration.chaosDuration = 3_000
    configuration.quietDuration = 3_000
    var simulation = Simulation(configuration: configuration)
    let statistics = try simulation.run()
    #expect(statistics.crashes == 0 && statistics.partitions == 0 && statistics.messagesDropped == 0)
    #expect(statistics.pendingOperations == 0)
    #expect(statistics.leadersElected == 1)
}
