// `flotilla-bench failover`: time from SIGKILL of a node to all its VMs running on the survivors.
import ArgumentParser
import ClusterModel
import FlotillaAPI
import FlotillaClient
import FlotillaTestKit
import Foundation
import Node

/// Runs a local cluster of `flotilla node` processes on loopback, puts VMs on one node, SIGKILLs
/// it, and measures until the survivors' agents (`GET /v1/agent`) run every one of those VMs at
/// a newer epoch. Then restarts the node, waits until it is up again, and repeats.
///
/// Prints one markdown table row per victim kind (a follower, the leader): median and p99 over
/// the kills, next to the configured lease.
struct FailoverBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failover",
        abstract: "Time from SIGKILL of a node to all its VMs running on survivors (markdown table rows).")

    @Option(help: "The flotilla binary to run the nodes with.")
    var flotilla: String

    @Option(help: "How many times to kill a node of each kind (a follower, the leader).")
    var kills = 20

    @Option(help: "Nodes in the cluster.")
    var nodes = 3

    @Option(help: "VMs placed on the victim before each kill.")
    var vms = 4

    @Option(name: .customLong("tick-ms")) var tickMilliseconds = 50
    @Option(name: .customLong("election-ticks")) var electionTicks = 10
    @Option(name: .customLong("heartbeat-ms")) var heartbeatMilliseconds = 200
    @Option(name: .customLong("lease-ms")) var leaseMilliseconds = 2000

    @Option(help: "Where the cluster's data, logs and disk files go (removed afterwards unless a kill fails).")
    var directory: String?

    func validate() throws {
        guard kills > 0, vms > 0 else { throw ValidationError("--kills and --vms must be positive") }
        guard nodes >= 3 else { throw ValidationError("--nodes must be at least 3 (a majority must survive a kill)") }
        guard FileManager.default.isExecutableFile(atPath: flotilla) else {
            throw ValidationError(
                "--flotilla \(flotilla) is not an executable; build it with swift build --product flotilla")
        }
    }

    func run() async throws {
        let cluster = try BenchCluster(
            flotilla: flotilla, size: nodes,
            directory: directory ?? NSTemporaryDirectory() + "flotilla-bench-failover-\(UUID().uuidString.prefix(8))",
            settings: [
                "tick-ms": tickMilliseconds, "election-ticks": electionTicks, "heartbeat-ms": heartbeatMilliseconds,
                "lease-ms": leaseMilliseconds, "journal-interval-ms": 100,
            ])
        var succeeded = false
        defer {
            cluster.stopAll()
            if succeeded {
                try? FileManager.default.removeItem(atPath: cluster.directory)
            } else {
                FileHandle.standardError.write(Data("failover bench: logs kept in \(cluster.directory)\n".utf8))
            }
        }
        try cluster.startAll()
        var leader = try await cluster.awaitLeader()
        try await cluster.await("all \(nodes) nodes registered") {
            (try? await cluster.client(leader).nodes())?.count == nodes
        }
        _ = try await cluster.client(leader).setSetting("failover.max-per-vm", to: "1000")
        _ = try await cluster.client(leader).createVolume("csv1", coordinator: "n\(leader)")
        let names = (1...vms).map { "Bench\($0)" }
        for name in names {
            _ = try await cluster.client(leader).createVM(
                VMCreation(name: name, startup: 256 << 20, restartPriority: "high", volume: "csv1"))
        }

        var rows: [String] = []
        for victimIsLeader in [false, true] {
            var times: [Duration] = []
            for kill in 0..<kills {
                leader = try await cluster.awaitLeader()
                // Followers in turn, so no one node's disk or log dominates.
                let victim = victimIsLeader ? leader : (leader + kill % (nodes - 1)) % nodes + 1
                let survivor = victimIsLeader ? (leader % nodes) + 1 : leader
                try await cluster.place(names, on: victim, through: survivor)
                let before = try await cluster.client(survivor).vms()
                times.append(try await cluster.killAndTimeFailover(victim, vms: before))
                try cluster.start(victim)
                try await cluster.await("n\(victim) up again", within: .seconds(60)) {
                    (try? await cluster.client(survivor).nodes())?.first { $0.id == "n\(victim)" }?.state == "up"
                }
            }
            let sorted = times.sorted()
            let median = sorted[sorted.count / 2]
            // p99 of 20 samples is the largest; nearest rank otherwise.
            let p99 = sorted[min(sorted.count - 1, Int((Double(sorted.count) * 0.99).rounded(.up)) - 1)]
            rows.append(
                "| \(victimIsLeader ? "the leader's node" : "a follower's node") | \(leaseMilliseconds) ms "
                    + "| \(heartbeatMilliseconds) ms | \(electionTicks) × \(tickMilliseconds) ms | \(kills) "
                    + "| \(seconds(median)) | \(seconds(p99)) | \(seconds(sorted.first!))–\(seconds(sorted.last!)) "
                    + "| \(sorted.last! <= .milliseconds(leaseMilliseconds + 1000) ? "yes" : "no") |")
        }
        for row in rows { print(row) }
        succeeded = true
    }

    private func seconds(_ duration: Duration) -> String {
        let milliseconds = Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
        return String(format: "%.2f s", milliseconds / 1000)
    }
}
