// Real `flotilla node` processes on loopback for tests: start, SIGKILL, restart, read their logs.
import ClusterModel
import Foundation
import Node
import Synchronization

/// A cluster of node processes on free loopback ports, with data and logs in a temporary directory.
final class ProcessCluster: Sendable {
    let directory: String
    let size: Int
    let clientPorts: [Int]
    let peerPorts: [Int]
    /// The running node processes by node number.
    private let processes = Mutex<[Int: Process]>([:])
    /// One API client per node, made once (a client keeps its connection).
    let clients: [Int: APIClient]

    /// The `flotilla` binary built beside the test bundle.
    static var executable: String {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return bundle.appendingPathComponent("flotilla").path
    }

    init(size: Int) throws {
        self.size = size
        directory = NSTemporaryDirectory() + "flotilla-process-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let ports = try Self.freePorts(2 * size)
        let clientPorts = Array(ports[0..<size])
        self.clientPorts = clientPorts
        peerPorts = Array(ports[size...])
        clients = Dictionary(
            uniqueKeysWithValues: (1...size).map { node in
                (
                    node,
                    APIClient(endpoint: Endpoint(host: "127.0.0.1", port: clientPorts[node - 1]), timeout: .seconds(3))
                )
            })
        let members = (1...size).map { node in
            "{\"id\": \"n\(node)\", \"peer\": \"127.0.0.1:\(peerPorts[node - 1])\", \"client\": \"127.0.0.1:\(clientPorts[node - 1])\"}"
        }
        let config = """
            {"cluster-id": "test", "data-dir": "\(directory)/{node}", "tick-ms": 20, "election-ticks": 10,
             "members": [\(members.joined(separator: ", "))]}
            """
        try config.write(toFile: directory + "/cluster.json", atomically: true, encoding: .utf8)
    }

    deinit {
        for process in processes.withLock({ $0.values }) where process.isRunning {
            kill(process.processIdentifier, SIGKILL)
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    func start(_ node: Int) throws {
        let log = directory + "/n\(node).log"
        if !FileManager.default.fileExists(atPath: log) {
            _ = FileManager.default.createFile(atPath: log, contents: nil)
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        handle.seekToEndOfFile()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = ["node", "--config", directory + "/cluster.json", "--node-id", "n\(node)"]
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

    /// SIGTERM and wait; returns the exit status.
    func terminate(_ node: Int) -> Int32 {
        guard let process = processes.withLock({ $0.removeValue(forKey: node) }) else { return -1 }
        process.terminate()
        process.waitUntilExit()
        return process.terminationStatus
    }

    func client(_ node: Int) -> APIClient { clients[node]! }

    func isRunning(_ node: Int) -> Bool { processes.withLock { $0[node] != nil } }

    /// Polls the live nodes until they agree on a leader (another process's election can only be observed).
    func awaitLeader(excluding excluded: Set<Int> = [], within limit: Duration = .seconds(20)) async throws -> Int {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            var seen: Set<String?> = []
            for node in 1...size where !excluded.contains(node) && isRunning(node) {
                seen.insert(try? await client(node).status(stale: true).leader)
            }
            if seen.count == 1, let leader = seen.first!, let number = Int(leader.dropFirst()) { return number }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ProcessClusterError(description: "no agreed leader within \(limit)\n" + logTails())
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
    }

    private static func freePorts(_ count: Int) throws -> [Int] {
        var sockets: [Int32] = []
        defer { for socket in sockets { Glibc.close(socket) } }
        var ports: [Int] = []
        for _ in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = 0
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
                }
            }
            guard bound else { throw ProcessClusterError(description: "no free loopback port") }
            sockets.append(fd)
            ports.append(Int(UInt16(bigEndian: address.sin_port)))
        }
        return ports
    }
}

struct ProcessClusterError: Error, CustomStringConvertible {
    var description: String
}
