// A cluster of real `flotilla node` processes on loopback, shared by the benchmarks that need one.
import ClusterModel
import FlotillaAPI
import FlotillaClient
import FlotillaTestKit
import Foundation

/// A cluster of `flotilla node` processes on loopback for a benchmark.
final class BenchCluster: @unchecked Sendable {
    // Unchecked: `processes` is touched only by the benchmark's one sequential task.
    let directory: String
    let size: Int
    private let flotilla: String
    private var processes: [Int: Process] = [:]
    private let clients: [Int: APIClient]

    init(
        flotilla: String, size: Int, directory: String, settings: [String: Int], requestTimeout: Duration = .seconds(2)
    ) throws {
        self.flotilla = flotilla
        self.size = size
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory + "/shared", withIntermediateDirectories: true)
        let ports = try freeLoopbackPorts(2 * size)
        clients = Dictionary(
            uniqueKeysWithValues: (1...size).map {
                ($0, APIClient(endpoint: Endpoint(host: "127.0.0.1", port: ports[$0 - 1]), timeout: requestTimeout))
            })
        let members = (1...size).map {
            "{\"id\": \"n\($0)\", \"peer\": \"127.0.0.1:\(ports[size + $0 - 1])\", \"client\": \"127.0.0.1:\(ports[$0 - 1])\"}"
        }
        let timing = settings.sorted { $0.key < $1.key }.map { "\"\($0.key)\": \($0.value), " }.joined()
        let config = """
            {"cluster-id": "bench", "data-dir": "\(directory)/{node}", "shared-root": "\(directory)/shared", \(timing)
             "members": [\(members.joined(separator: ", "))]}
            """
        try config.write(toFile: directory + "/cluster.json", atomically: true, encoding: .utf8)
    }

    func client(_ node: Int) -> APIClient { clients[node]! }

    /// Runs `body` with a started 3-node cluster of `flotilla` in `root` with volume csv1 (and its
    /// leader); then stops the nodes and removes `root`, unless `body` threw: then the logs are kept
    /// and `bench` says where.
    static func withCluster(
        flotilla: String, root: String, bench: String, _ body: (BenchCluster, _ leader: Int) async throws -> Void
    ) async throws {
        let cluster = try BenchCluster(
            flotilla: flotilla, size: 3, directory: root, settings: [:], requestTimeout: .seconds(10))
        do {
            try await body(cluster, try await cluster.startWithVolume())
        } catch {
            cluster.stopAll()
            FileHandle.standardError.write(Data("\(bench) bench: logs kept in \(root)\n".utf8))
            throw error
        }
        cluster.stopAll()
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Starts every node, waits for a leader and for every node to register, and creates volume
    /// csv1 coordinated by the leader; returns the leader.
    func startWithVolume() async throws -> Int {
        try startAll()
        let leader = try await awaitLeader()
        try await self.await("all \(size) nodes registered") { (try? await client(leader).nodes())?.count == size }
        _ = try await client(leader).createVolume("csv1", coordinator: "n\(leader)")
        return leader
    }

    func start(_ node: Int) throws {
        let log = directory + "/n\(node).log"
        if !FileManager.default.fileExists(atPath: log) {
            _ = FileManager.default.createFile(atPath: log, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: flotilla)
        process.arguments = ["node", "--config", directory + "/cluster.json", "--node-id", "n\(node)"]
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        processes[node] = process
    }

    func startAll() throws { for node in 1...size { try start(node) } }

    func stopAll() {
        for process in processes.values {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        processes = [:]
    }

    func awaitLeader() async throws -> Int {
        var leader = 0
        try await self.await("an agreed leader") {
            var seen: Set<String?> = []
            for node in processes.keys { seen.insert(try? await client(node).status(stale: true).leader) }
            guard seen.count == 1, let only = seen.first!, let number = Int(only.dropFirst()) else { return false }
            leader = number
            return true
        }
        return leader
    }

    func await(_ what: String, within limit: Duration = .seconds(30), _ condition: () async -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if await condition() { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw BenchError(description: "\(what): not within \(limit); logs in \(directory)")
    }

    /// Puts every VM on `node`, running there (stopping it first where it runs elsewhere).
    func place(_ names: [String], on node: Int, through survivor: Int) async throws {
        let api = client(survivor)
        for vm in try await api.vms() where vm.owner != "n\(node)" || vm.state != "running" {
            if vm.state != "stopped" { _ = try await api.stopVM(vm.name) }
            _ = try await api.startVM(vm.name, on: "n\(node)")
        }
        try await self.await("the VMs running on n\(node)") {
            guard let view = try? await client(node).agent() else { return false }
            return Set(view.vms.filter(\.running).map(\.name)) == Set(names)
        }
    }

    /// SIGKILLs `node`, then polls the survivors' agents until they run every VM in `vms` at a
    /// newer epoch; returns the time since the kill.
    func killAndTimeFailover(_ node: Int, vms: [VMView]) async throws -> Duration {
        let epochs = Dictionary(uniqueKeysWithValues: vms.map { ($0.id, $0.epoch) })
        let survivors = (1...size).filter { $0 != node }
        guard let process = processes.removeValue(forKey: node) else {
            throw BenchError(description: "n\(node) is not running")
        }
        let killed = ContinuousClock.now
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try await self.await("n\(node)'s VMs running on the survivors", within: .seconds(60)) {
            var running: Set<String> = []
            for survivor in survivors {
                guard let view = try? await client(survivor).agent() else { continue }
                for vm in view.vms where vm.running && vm.epoch > epochs[vm.id] ?? .max { running.insert(vm.id) }
            }
            return running == Set(epochs.keys)
        }
        return ContinuousClock.now - killed
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
}
