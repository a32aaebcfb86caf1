// `flotilla-bench raft-sim [entries] [batch]`: the Raft core's throughput ceiling inside the simulator.
import FlotillaTestKit

#if canImport(Glibc)
    import Glibc
#endif

/// Runs `runSimulationBenchmark` and prints one line per batch size.
///
/// Arguments: the number of committed entries to measure (default 200 000) and a batch size
/// (default: both 1 and 64). Preload the malloc counter (scripts/bench-raft-sim.sh builds it) to
/// also count allocations.
@main
struct RaftSimulationBenchmark {
    static func main() {
        let arguments = CommandLine.arguments.dropFirst().filter { $0 != "raft-sim" }
        let numbers = arguments.map { Int($0) }
        guard numbers.allSatisfy({ ($0 ?? 0) > 0 }), numbers.count <= 2 else {
            print(
                "usage: flotilla-bench raft-sim [entries] [batch]; both must be positive integers, "
                    + "got \(Array(arguments))")
            exit(2)
        }
        let entries = numbers.first.flatMap { $0 } ?? 200_000
        let batches = numbers.count == 2 ? [numbers[1]!] : [1, 64]
        for batchSize in batches {
            do {
                print(try runSimulationBenchmark(entries: entries, batchSize: batchSize))
            } catch {
                print("raft-sim benchmark failed: \(error)")
                exit(1)
            }
        }
    }
}
