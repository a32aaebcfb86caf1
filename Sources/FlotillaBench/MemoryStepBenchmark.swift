// `flotilla-bench memory-step`: how many balancing passes a real node takes from a demand step to the new assignment.
import ArgumentParser
import ClusterModel
import FlotillaAPI
import FlotillaClient
import FlotillaTestKit
import Foundation
import Logging
import Node

/// Runs one node (in this process: its Raft log on disk, its API on a socket), one VM on it, and
/// steps the VM's demand up and down through the API. Each step is timed from the write's answer
/// to the moment the node's agent (`GET /v1/agent`, polled every millisecond) shows the VM at its
/// new target, and counted in balancing passes (`memory.balance-interval-ms`, 100 ms).
///
/// Up steps are hot-added: the goal is at most 2 passes. Down steps are ballooned at the
/// balancer's rate (512 MiB/s), so they take about size ÷ 51 MiB passes by design, and count as
/// settled inside the hysteresis band above the target, where the balloon stops.
/// Prints a markdown table, or fails (no table) if any request failed or a step never settled.
struct MemoryStepBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memory-step",
        abstract: "Passes from a demand step to the new assignment on a real node (a markdown table).")

    @Option(help: "Steps each way.") var steps = 10

    func validate() throws {
        guard (1...1000).contains(steps) else { throw ValidationError("--steps must be 1–1000, got \(steps)") }
    }

    func run() async throws {
        let root = try TemporaryDirectory()
        let ports = try freeLoopbackPorts(2)
        let configuration = try NodeConfiguration.resolve(
            file: nil, environment: [:],
            flags: [
                "node-id": "n1", "peer-address": "127.0.0.1:\(ports[0])", "client-address": "127.0.0.1:\(ports[1])",
                "data-dir": root.path + "/n1", "memory": "4G",
            ])
        let node = Task {
            try await NodeDaemon(
                configuration: configuration, logger: Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
            ).run()
        }
        defer { node.cancel() }
        let api = APIClient(
            endpoint: Endpoint(host: "127.0.0.1", port: ports[1]), timeout: .seconds(5), noLeaderPatience: .seconds(10))
        let mib: UInt64 = 1 << 20
        try await waitFor("the node registers") { (try? await api.nodes().count) == 1 }
        try await api.createVolume("csv1", coordinator: "n1")
        try await api.createVM(
            VMCreation(
                name: "Step", startup: 512 * mib, minimum: 256 * mib, maximum: 2048 * mib, volume: "csv1",
                workload: WorkloadView(demand: 400 * mib)))
        _ = try await api.startVM("Step")
        // Targets: 400 MiB × 1.2 = 480 MiB; 1,000 MiB × 1.2 = 1,200 MiB.
        let low = (demand: 400 * mib, target: 480 * mib)
        let high = (demand: 1000 * mib, target: 1200 * mib)
        try await waitFor("the VM settles at its first target") { try await assigned(api) == low.target }

        let pass = Duration.milliseconds(100)
        var up: [Double] = []
        var down: [Double] = []
        for _ in 0..<steps {
            for (level, into) in [(high, 0), (low, 1)] {
                try await api.setVMWorkload("Step", WorkloadView(demand: level.demand))
                let started = ContinuousClock.now
                // Settled: at the target, or (ballooning down) inside the balancer's hysteresis band
                // above it, where it stops: 5 % of the target, at least 16 MiB.
                let band = max(16 * mib, level.target / 20)
                try await waitFor("the VM reaches \(ByteCount(level.target))") {
                    guard let assigned = try await assigned(api) else { return false }
                    return assigned >= level.target && assigned <= level.target + (into == 0 ? 0 : band)
                }
                let passes = (ContinuousClock.now - started) / pass
                if into == 0 { up.append(passes) } else { down.append(passes) }
            }
        }
        await api.close()
        node.cancel()
        _ = try? await node.value
        print("| step | steps | median passes | p99 passes | most passes |")
        print("|---|---|---|---|---|")
        for (name, values) in [("up 480M → 1200M (hot-add)", up), ("down 1200M → 480M (balloon)", down)] {
            let sorted = values.sorted()
            let p99 = sorted[min(sorted.count - 1, (sorted.count * 99 + 99) / 100 - 1)]
            print(
                "| \(name) | \(sorted.count) | \(Self.format(sorted[sorted.count / 2])) | \(Self.format(p99)) | "
                    + "\(Self.format(sorted.last!)) |")
        }
    }

    private func assigned(_ api: APIClient) async throws -> UInt64? {
        try await api.agent().vms.first?.assigned
    }

    /// Polls `condition` every millisecond for up to 30 s; a condition that never holds fails the run.
    private func waitFor(_ what: String, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while try await !condition() {
            guard ContinuousClock.now < deadline else { throw ValidationError("\(what): not within 30 s") }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    private static func format(_ passes: Double) -> String {
        String(Double(Int(passes * 100)) / 100)
    }
}
