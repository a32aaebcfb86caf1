// Real `flotilla node` processes on loopback for tests: start, SIGKILL, restart, read their logs.
import ClusterModel
import FlotillaAPI
import FlotillaClient
import FlotillaTestKit
import Foundation
import Node
import Synchronization

/// A cluster of node processes, with data and logs in a temporary directory.
///
/// Either on free loopback ports, or — with `hosts` — each node in its own network namespace
/// with its own address on a private bridge (scripts/testhosts.sh), where it can be cut off.
final class ProcessCluster: Sendable {
    let directory: String
    let size: Int
    /// Each node's address: 127.0.0.1, or its own host's address.
    let addresses: [String]
    let clientPorts: [Int]
    let peerPorts: [Int]
    /// The network-namespace prefix when nodes run on their own hosts.
    let hostPrefix: String?
    /// The running node processes by node number.
    private let processes = Mutex<[Int: Process]>([:])
    /// One API client per node, made once (a client keeps its connection).
    let clients: [Int: APIClient]

    /// The `flotilla` binary built beside the test bundle.
    static var executable: String {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return bundle.appendingPathComponent("flotilla").path
    }

    /// Whether this machine can run nodes on their own hosts (root and iproute2).
    static var canIsolateHosts: Bool {
        getuid() == 0
            && (FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")
                || FileManager.default.isExecutableFile(atPath: "/sbin/ip"))
    }

    static let testHostsScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("scripts/testhosts.sh").path

    /// The nodes that found the cluster (n1…); the rest join it later through the API.
    let founders: Int
    /// The directory all nodes use as their shared root (where volumes and disk files live).
    let sharedRoot: String
    /// Set when a failed run's logs and disks must stay for a look afterwards.
    private let keepsDirectory = Mutex(false)
    /// Added to every node process's environment (test hooks such as `FLOTILLA_TEST_SWITCHOVER_DELAY_MS`).
    let environment: [String: String]

    /// Timing left nil keeps the node's default (docs/configuration.md).
    init(
        size: Int, founders: Int? = nil, hosts: Bool = false, snapshotEntries: Int = 10_000, electionTicks: Int = 10,
        heartbeatMilliseconds: Int? = nil, leaseMilliseconds: Int? = nil, journalIntervalMilliseconds: Int? = nil,
        environment: [String: String] = [:]
    ) throws {
        self.size = size
        self.environment = environment
        self.founders = founders ?? size
        directory = NSTemporaryDirectory() + "flotilla-process-\(UUID().uuidString.prefix(8))"
        sharedRoot = directory + "/shared"
        try FileManager.default.createDirectory(atPath: sharedRoot, withIntermediateDirectories: true)
        let clientPorts: [Int]
        let addresses: [String]
        if hosts {
            // A per-cluster namespace prefix, so runs in parallel never share hosts.
            let letters = UUID().uuidString.lowercased().filter(\.isLetter)
            let prefix = "fl" + String(letters.prefix(5)).padding(toLength: 5, withPad: "q", startingAt: 0)
            hostPrefix = prefix
            try Self.testHosts("up", prefix, String(size))
            addresses = try (1...size).map { try Self.testHosts("addr", prefix, String($0)) }
            clientPorts = Array(repeating: 7101, count: size)
            peerPorts = Array(repeating: 7201, count: size)
        } else {
            hostPrefix = nil
            addresses = Array(repeating: "127.0.0.1", count: size)
            let ports = try freeLoopbackPorts(2 * size)
            clientPorts = Array(ports[0..<size])
            peerPorts = Array(ports[size...])
        }
        self.addresses = addresses
        self.clientPorts = clientPorts
        clients = Dictionary(
            uniqueKeysWithValues: (1...size).map { node in
                let endpoint = Endpoint(host: addresses[node - 1], port: clientPorts[node - 1])
                return (node, APIClient(endpoint: endpoint, timeout: .seconds(3)))
            })
        let peerPorts = peerPorts
        let members = (1...(founders ?? size)).map { node in
            let address = addresses[node - 1]
            return "{\"id\": \"n\(node)\", \"peer\": \"\(address):\(peerPorts[node - 1])\", "
                + "\"client\": \"\(address):\(clientPorts[node - 1])\"}"
        }
        var timing = ""
        if let heartbeatMilliseconds { timing += "\"heartbeat-ms\": \(heartbeatMilliseconds), " }
        if let leaseMilliseconds { timing += "\"lease-ms\": \(leaseMilliseconds), " }
        if let journalIntervalMilliseconds { timing += "\"journal-interval-ms\": \(journalIntervalMilliseconds), " }
        let config = """
            {"cluster-id": "test", "data-dir": "\(directory)/{node}", "shared-root": "\(sharedRoot)", "tick-ms": 20, "election-ticks": \(electionTicks), "snapshot-entries": \(snapshotEntries),
             \(timing)"members": [\(members.joined(separator: ", "))]}
            """
        try config.write(toFile: directory + "/cluster.json", atomically: true, encoding: .utf8)
    }

    deinit {
        for process in processes.withLock({ $0.values }) where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
        }
        if let hostPrefix { _ = try? Self.testHosts("down", hostPrefix) }
        if !keepsDirectory.withLock({ $0 }) { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// Keeps the directory (logs, data, disk files) when the cluster goes away.
    func keepDirectory() { keepsDirectory.withLock { $0 = true } }

    /// Starts node `node`; `extraArguments` go after the usual ones (e.g. `--force-new-cluster`).
    func start(_ node: Int, extraArguments: [String] = []) throws {
        let log = directory + "/n\(node).log"
        if !FileManager.default.fileExists(atPath: log) {
            _ = FileManager.default.createFile(atPath: log, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        let process = Process()
        var arguments = ["node", "--config", directory + "/cluster.json", "--node-id", "n\(node)"]
        if node > founders {
            arguments += [
                "--join", "true", "--peer-address", "\(addresses[node - 1]):\(peerPorts[node - 1])",
                "--client-address", "\(addresses[node - 1]):\(clientPorts[node - 1])",
            ]
        }
        arguments += extraArguments
        if let hostPrefix {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["ip", "netns", "exec", "\(hostPrefix)-\(node)", Self.executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: Self.executable)
            process.arguments = arguments
        }
        // SWIFTNIO_STRICT: a task scheduled on a shut-down event loop stops the node (NIO only prints
        // an error otherwise), so a test that checks a clean exit status catches it.
        process.environment = ProcessInfo.processInfo.environment.merging(
            ["SWIFTNIO_STRICT": "1"].merging(
                environment
            ) { $1 }
        ) { $1 }
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        processes.withLock { $0[node] = process }
    }

    func startAll() throws {
        for node in 1...size { try start(node) }
    }

    /// SIGKILL: the process gets no chance to flush or say goodbye.
    func kill9(_ node: Int) {
        guard let process = processes.withLock({ $0.removeValue(forKey: node) }) else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Freezes a node with SIGSTOP: its sockets stay open, as when a host stops answering without
    /// closing its connections (a killed process would close them, which the followers notice).
    func freeze(_ node: Int) {
        guard let process = processes.withLock({ $0[node] }) else { return }
        kill(process.processIdentifier, SIGSTOP)
    }

    /// Waits for a node to exit on its own; returns its exit status.
    func waitForExit(_ node: Int) -> Int32 {
        guard let process = processes.withLock({ $0.removeValue(forKey: node) }) else { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// SIGTERM and wait; returns the exit status.
    func terminate(_ node: Int) -> Int32 {
        guard let process = processes.withLock({ $0.removeValue(forKey: node) }) else { return -1 }
        process.terminate()
        process.waitUntilExit()
        return process.terminationStatus
    }

    func client(_ node: Int) -> APIClient { clients[node]! }

    func isRunning(_ node: Int) -> Bool { processes.withLock { $0[node] != nil } }

    /// Whether a node started here has exited on its own (its status is still to be collected).
    func hasExited(_ node: Int) -> Bool { processes.withLock { $0[node] }.map { !$0.isRunning } ?? false }

    /// Polls the live nodes until they agree on a leader (another process's election can only be observed).
    func awaitLeader(excluding excluded: Set<Int> = [], within limit: Duration = .seconds(20)) async throws -> Int {
        let deadline = ContinuousClock.now + limit
        // What each node answered last (its leader, or why it did not answer): the failure says it.
        var answers: [Int: String] = [:]
        while ContinuousClock.now < deadline {
            var seen: Set<String?> = []
            for node in 1...size where !excluded.contains(node) && isRunning(node) {
                do {
                    let leader = try await client(node).status(stale: true).leader
                    answers[node] = "leader \(leader ?? "none")"
                    seen.insert(leader)
                } catch {
                    answers[node] = "no answer: \(error)"
                    seen.insert(nil)
                }
            }
            if seen.count == 1, let leader = seen.first!, let number = Int(leader.dropFirst()) { return number }
            try await Task.sleep(for: .milliseconds(20))
        }
        let last = answers.sorted { $0.key < $1.key }.map { "n\($0.key): \($0.value)" }.joined(separator: "; ")
        throw ProcessClusterError(
            description: "no agreed leader within \(limit) (last answers: \(last))\n" + logTails())
    }

    /// Polls until `condition` holds (another process's state can only be observed), or fails naming `what`.
    func await(_ what: String, within limit: Duration = .seconds(20), _ condition: () async -> Bool) async throws {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if await condition() { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ProcessClusterError(description: "\(what): not within \(limit)\n" + logTails())
    }

    /// Node `node`'s log so far (empty before it wrote one).
    func log(of node: Int) -> String {
        (try? String(contentsOfFile: directory + "/n\(node).log", encoding: .utf8)) ?? ""
    }

    /// Cuts node `node` off from the other nodes in both directions (the test still reaches it).
    func isolate(_ node: Int) throws {
        guard let hostPrefix else { throw ProcessClusterError(description: "isolate needs a cluster on its own hosts") }
        for other in 1...size where other != node {
            try Self.testHosts("drop", hostPrefix, String(node), String(other))
            try Self.testHosts("drop", hostPrefix, String(other), String(node))
        }
    }

    func heal(_ node: Int) throws {
        guard let hostPrefix else { return }
        for other in 1...size where other != node {
            try Self.testHosts("undrop", hostPrefix, String(node), String(other))
            try Self.testHosts("undrop", hostPrefix, String(other), String(node))
        }
    }

    /// Cuts the link between two nodes in both directions; each still reaches the others.
    func cut(_ node: Int, from other: Int) throws {
        guard let hostPrefix else { throw ProcessClusterError(description: "cut needs a cluster on its own hosts") }
        try Self.testHosts("drop", hostPrefix, String(node), String(other))
        try Self.testHosts("drop", hostPrefix, String(other), String(node))
    }

    func mend(_ node: Int, from other: Int) throws {
        guard let hostPrefix else { return }
        try Self.testHosts("undrop", hostPrefix, String(node), String(other))
        try Self.testHosts("undrop", hostPrefix, String(other), String(node))
    }

    /// Cuts the nodes in `group` off from the rest in both directions; they still reach each other.
    func isolate(group: Set<Int>) throws {
        guard let hostPrefix else { throw ProcessClusterError(description: "isolate needs a cluster on its own hosts") }
        for inside in group.sorted() {
            for outside in 1...size where !group.contains(outside) {
                try Self.testHosts("drop", hostPrefix, String(inside), String(outside))
                try Self.testHosts("drop", hostPrefix, String(outside), String(inside))
            }
        }
    }

    func heal(group: Set<Int>) throws {
        guard let hostPrefix else { return }
        for inside in group.sorted() {
            for outside in 1...size where !group.contains(outside) {
                try Self.testHosts("undrop", hostPrefix, String(inside), String(outside))
                try Self.testHosts("undrop", hostPrefix, String(outside), String(inside))
            }
        }
    }

    /// One-way partition: no other node can open a connection to `node`, and those open already
    /// carry nothing more; `node` still reaches every other node (and the test reaches it).
    func refuseConnections(to node: Int) throws {
        guard let hostPrefix else { throw ProcessClusterError(description: "a one-way partition needs own hosts") }
        for other in 1...size where other != node {
            try Self.testHosts("refuse", hostPrefix, String(node), String(other))
        }
    }

    func acceptConnections(to node: Int) throws {
        guard let hostPrefix else { return }
        for other in 1...size where other != node {
            try Self.testHosts("unrefuse", hostPrefix, String(node), String(other))
        }
    }

    @discardableResult
    private static func testHosts(_ arguments: String...) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [Self.testHostsScript] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ProcessClusterError(description: "testhosts.sh \(arguments.joined(separator: " ")) failed: \(text)")
        }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func logTails(lines: Int = 15) -> String {
        (1...size).map { node in
            let text = (try? String(contentsOfFile: directory + "/n\(node).log", encoding: .utf8)) ?? ""
            return "--- n\(node).log\n" + text.split(separator: "\n").suffix(lines).joined(separator: "\n")
        }.joined(separator: "\n")
    }

    func close() async {
        for client in clients.values { await client.close() }
        for node in processes.withLock({ Array($0.keys) }) { _ = terminate(node) }
        if let hostPrefix { _ = try? Self.testHosts("down", hostPrefix) }
    }
}

struct ProcessClusterError: Error, CustomStringConvertible {
    var description: String
}
