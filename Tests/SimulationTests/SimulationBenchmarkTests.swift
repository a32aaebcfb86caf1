// The Raft-in-the-simulator benchmark, run only when asked: FLOTILLA_SIM_BENCH=1 (see scripts/bench-raft-sim.sh).
import FlotillaTestKit
import Foundation
import Testing

private let benchmarkRequested = ProcessInfo.processInfo.environment["FLOTILLA_SIM_BENCH"] == "1"

@Test(.enabled(if: benchmarkRequested))
func raftCoreThroughputInTheSimulator() throws {
    let entries = ProcessInfo.processInfo.environment["FLOTILLA_SIM_BENCH_ENTRIES"].flatMap { Int($0) } ?? 200_000
    for batchSize in [1, 64] {
        let result = try runSimulationBenchmark(entries: entries, batchSize: batchSize)
        #expect(result.committedEntries == entries)
        print("raft-sim-bench: \(result)")
    }
}
