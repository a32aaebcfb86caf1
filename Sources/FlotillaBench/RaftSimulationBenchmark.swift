// `flotilla-bench raft-sim [entries] [batch]`: the Raft core's throughput ceiling inside the simulator.
import ArgumentParser
import FlotillaTestKit

/// Runs `runSimulationBenchmark` and prints one line per batch size.
///
/// Preload the malloc counter (scripts/bench-raft-sim.sh builds it) to also count allocations.
struct RaftSimulationBenchmark: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raft-sim",
        abstract: "Committed entries per second of a 3-node cluster in the simulator (free network and disk).")

    @Argument(help: "How many committed entries to measure.")
    var entries = 200_000

    @Argument(help: "Proposals per batch; both 1 and 64 when omitted.")
    var batch: Int?

    func validate() throws {
        guard entries > 0 else { throw ValidationError("entries must be positive, got \(entries)") }
        if let batch, batch <= 0 { throw ValidationError("batch must be positive, got \(batch)") }
    }

    func run() throws {
        for batchSize in batch.map({ [$0] }) ?? [1, 64] {
            print(try runSimulationBenchmark(entries: entries, batchSize: batchSize))
        }
    }
}
