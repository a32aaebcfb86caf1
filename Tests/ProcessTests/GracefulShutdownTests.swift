// SIGTERM stops a node cleanly (exit 0) and it comes back with everything it acknowledged.
import ClusterModel
import FlotillaClient
import Foundation
import Node
import Testing

@Suite(.serialized, .timeLimit(.minutes(2)))
struct GracefulShutdownTests {
    @Test func sigtermExitsZeroAndARestartKeepsEveryAcknowledgedWrite() async throws {
        let cluster = try ProcessCluster(size: 3)
        try cluster.startAll()
        let leader = try await cluster.awaitLeader()
        for number in 1...20 {
            try await cluster.client(leader).setSetting("key-\(number)", to: "value-\(number)")
        }
        // Stop every node gracefully, the leader last, then start them all again.
        for node in [1, 2, 3].sorted(by: { ($0 == leader ? 1 : 0) < ($1 == leader ? 1 : 0) }) {
            #expect(cluster.terminate(node) == 0, "n\(node) did not exit 0 on SIGTERM\n\(cluster.logTails())")
        }
        try cluster.startAll()
        let newLeader = try await cluster.awaitLeader()
        let settings = try await cluster.client(newLeader % 3 + 1).settings()
        #expect(settings == Dictionary(uniqueKeysWithValues: (1...20).map { ("key-\($0)", "value-\($0)") }))
        await cluster.close()
    }

    @Test func aNodeRefusesADataDirectoryOfAnotherCluster() async throws {
        let cluster = try ProcessCluster(size: 1)
        try cluster.startAll()
        _ = try await cluster.awaitLeader()
        #expect(cluster.terminate(1) == 0)
        // Same data directory, another cluster id: the node must refuse to start, saying why.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ProcessCluster.executable)
        process.arguments = [
            "node", "--config", cluster.directory + "/cluster.json", "--node-id", "n1", "--cluster-id", "other",
        ]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let output = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus != 0)
        #expect(output.contains("belongs to cluster test node n1"), "\(output)")
        await cluster.close()
    }
}

@Suite(.serialized, .timeLimit(.minutes(2)))
struct SnapshotCatchUpTests {
    /// A node down while the others wrote far past a snapshot catches up from the snapshot
    /// (the entries it missed are no longer in anyone's log).
    @Test func aNodeThatFellBehindASnapshotCatchesUpFromIt() async throws {
        let cluster = try ProcessCluster(size: 3, snapshotEntries: 20)
        try cluster.startAll()
        let leader = try await cluster.awaitLeader()
        let behind = leader % 3 + 1
        cluster.kill9(behind)
        // With one of three down, a busy machine may see an election among the other two: a write
        // answered "no_leader" had no effect and is resent (this test is about the catch-up).
        let writer = APIClient(
            endpoint: Endpoint(host: "127.0.0.1", port: cluster.clientPorts[leader - 1]), timeout: .seconds(5),
            noLeaderPatience: .seconds(10))
        for number in 1...120 { try await writer.setSetting("k\(number % 40)", to: "v\(number)") }
        await writer.close()
        try cluster.start(behind)
        try await cluster.await("n\(behind) catches up") {
            (try? await cluster.client(behind).settings(stale: true))?["k0"] == "v120"
        }
        let local = try await cluster.client(behind).settings(stale: true)
        let leaders = try await cluster.client(leader).settings()
        #expect(local == leaders)
        #expect(local.count == 40)
        await cluster.close()
    }
}
