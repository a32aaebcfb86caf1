// `flotilla-bench drain`: how long draining a node of its VMs by live migration takes, on real nodes.
import ArgumentParser
import ClusterModel
import FlotillaAPI
import FlotillaClient
import Foundation
import Guests

/// Runs a local 3-node cluster of `flotilla node` processes on loopback, puts `--vms` guests on one
/// follower and drains it: the time from `POST /v1/nodes/{id}/drain` to the node being paused with
/// every VM running elsewhere (live-migrated within the default limits, 2 per node), and the VMs'
/// downtimes. Then it resumes the node, puts the VMs back on it by live migration and drains it
/// again, `--runs` times. Any failed request or migration fails the run: no table, non-zero exit.
struct DrainBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain", abstract: "Drain a node of its VMs by live migration (a markdown table).")

    @Option(help: "The flotilla binary.") var flotilla: String
    @Option(help: "VMs on the drained node.") var vms = 8
    @Option(help: "Each VM's memory (all of it holds data), e.g. 256M.") var size = "256M"
    @Option(help: "Pages each guest dirties per second.") var dirtyRate: UInt64 = 500
    @Option(help: "Drains.") var runs = 3
    @Option(help: "Where the cluster's data and logs go (removed afterwards unless the run fails).")
    var directory: String?

    func validate() throws {
        guard FileManager.default.isExecutableFile(atPath: flotilla) else {
            throw ValidationError("--flotilla \(flotilla) is not an executable")
        }
        guard (1...64).contains(vms), (1...100).contains(runs) else {
            throw ValidationError("--vms must be 1–64 and --runs 1–100")
        }
        guard ByteCount(parsing: size) != nil else { throw ValidationError("--size is a size such as 256M") }
    }

    func run() async throws {
        let bytes = ByteCount(parsing: size)!.bytes
        let root = directory ?? NSTemporaryDirectory() + "flotilla-bench-drain-\(UUID().uuidString.prefix(8))"
        try await BenchCluster.withCluster(flotilla: flotilla, root: root, bench: "drain") { cluster, leader in
            let api = cluster.client(leader)
            let drained = (1...3).first { $0 != leader }!
            let names = (1...vms).map { "Guest\($0)" }
            for name in names {
                _ = try await api.createVM(
                    VMCreation(
                        name: name, startup: bytes, minimum: bytes, maximum: bytes, volume: "csv1",
                        workload: WorkloadView(demand: bytes, dirtyPagesPerSecond: dirtyRate)))
                _ = try await api.startVM(name, on: "n\(drained)")
            }
            var times: [Double] = []
            var downtimes: [Double] = []
            var seen: Set<String> = []
            for run in 1...runs {
                try await awaitHolding(names, on: drained, pages: GuestMemory.pages(in: bytes), cluster)
                for migration in try await api.migrations() { seen.insert(migration.id) }
                let started = ContinuousClock.now
                _ = try await api.changeNode("n\(drained)", "drain")
                try await cluster.await("run \(run): n\(drained) drained and paused", within: .seconds(600)) {
                    (try? await api.nodes())?.first { $0.id == "n\(drained)" }?.state == "paused"
                }
                times.append(
                    Double((ContinuousClock.now - started).components.attoseconds) / 1e18
                        + Double((ContinuousClock.now - started).components.seconds))
                let ended = try await api.migrations().filter { !seen.contains($0.id) }
                guard ended.count == vms, ended.allSatisfy({ $0.phase == "completed" }) else {
                    throw BenchError(
                        description: "run \(run): the drain's migrations: "
                            + ended.map { "\($0.id) \($0.phase) \($0.reason ?? "")" }.joined(separator: "; "))
                }
                try await cluster.await("run \(run): every VM's final stats") {
                    guard let now = try? await api.migrations() else { return false }
                    return now.filter { !seen.contains($0.id) }.allSatisfy { $0.stats?.downtimeMicroseconds != nil }
                }
                for migration in try await api.migrations() where !seen.contains(migration.id) {
                    downtimes.append(Double(migration.stats!.downtimeMicroseconds!) / 1000)
                    seen.insert(migration.id)
                }
                // Back: resume it and migrate every VM home, for the next drain.
                _ = try await api.changeNode("n\(drained)", "resume")
                guard run < runs else { break }
                for name in names {
                    let migration = try await api.migrateVM(name, to: "n\(drained)")
                    seen.insert(migration.id)
                }
            }
            let sorted = downtimes.sorted()
            print(
                "| VMs | memory each | dirty pages/s | drains | drain time p50 | drain time max | VM downtime p50 | VM downtime p99 |"
            )
            print("|---|---|---|---|---|---|---|---|")
            print(
                "| \(vms) | \(ByteCount(bytes)) | \(dirtyRate) | \(runs) | "
                    + String(
                        format: "%.2f s | %.2f s | %.1f ms | %.1f ms |", Self.percentile(times.sorted(), 0.5),
                        times.max() ?? 0, Self.percentile(sorted, 0.5), Self.percentile(sorted, 0.99)))
        }
    }

    private func awaitHolding(_ names: [String], on node: Int, pages: Int, _ cluster: BenchCluster) async throws {
        try await cluster.await("the VMs running on n\(node) with all their pages", within: .seconds(300)) {
            guard let view = try? await cluster.client(node).agent() else { return false }
            let holding = view.vms.filter { $0.running && $0.pagesTouched == pages }.map(\.name)
            return Set(holding) == Set(names)
        }
    }

    /// The nearest-rank percentile of sorted values.
    private static func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((fraction * Double(sorted.count)).rounded(.up))
        return sorted[max(0, min(sorted.count - 1, rank - 1))]
    }
}
