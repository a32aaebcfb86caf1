// flotilla-bench: small servers and drivers that the benchmark scripts run (one subcommand per file).
import ArgumentParser

@main
struct FlotillaBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flotilla-bench",
        abstract: "Benchmark drivers for Flotilla's components.",
        subcommands: [
            HTTP2ServerBenchmark.self, RaftSimulationBenchmark.self, FailoverBenchmark.self, BalancerBenchmark.self,
            MemoryStepBenchmark.self, MigrationBenchmark.self, TCPCopyBenchmark.self, DrainBenchmark.self,
            QEMUMigrationBenchmark.self, RealMigrationBenchmark.self,
        ]
    )
}
