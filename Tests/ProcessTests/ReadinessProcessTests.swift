// Real processes: `GET /readyz` and `flotilla ready` say ready only with a leader known and caught up.
import ClusterModel
import FlotillaAPI
import FlotillaClient
import Foundation
import HTTP2
import Testing

@Suite(.serialized, .timeLimit(.minutes(2)))
struct ReadinessProcessTests {
    @Test func aNodeIsReadyWithALeaderAndNotWithoutOne() async throws {
        let cluster = try ProcessCluster(size: 4, founders: 3)
        // Alone, a founder campaigns and finds no majority: alive (healthz) but not ready.
        try cluster.start(1)
        try await cluster.await("n1 says it knows no leader") {
            await notReadyDetail(cluster.client(1))?.contains("n1 knows no leader") == true
        }
        _ = try await cluster.client(1).call(.get, "/healthz")
        let alone = try runReady(port: cluster.clientPorts[0])
        #expect(alone.status == 1 && alone.output.contains("not_ready: n1 knows no leader"), "\(alone)")

        try cluster.start(2)
        try cluster.start(3)
        let leader = try await cluster.awaitLeader(excluding: [4])
        for number in 1...20 { try await cluster.client(leader).setSetting("k\(number)", to: "v\(number)") }
        for node in 1...3 {
            try await cluster.await("n\(node) is ready") {
                (try? await cluster.client(node).readiness())?.leader == "n\(leader)"
            }
            let view = try await cluster.client(node).readiness()
            #expect(view.ready && view.reason == nil && view.appliedIndex >= view.leaderCommitIndex, "\(view)")
            #expect(view.leaderCommitIndex >= 21, "the no-op and 20 settings are committed: \(view)")
        }
        let ready = try runReady(port: cluster.clientPorts[leader - 1])
        #expect(ready.status == 0 && ready.output.contains("ready: n\(leader) leads term"), "\(ready)")

        // A node waiting to be added knows no leader; once added it catches up and is ready.
        try cluster.start(4)
        try await cluster.await("n4 serves and is not ready") {
            await notReadyDetail(cluster.client(4))?.contains("n4 knows no leader") == true
        }
        try await cluster.client(leader).addMember(
            "n4", peer: "127.0.0.1:\(cluster.peerPorts[3])", client: "127.0.0.1:\(cluster.clientPorts[3])")
        try await cluster.await("the learner n4 is ready") {
            (try? await cluster.client(4).readiness())?.leader == "n\(leader)"
        }

        // The leader and another voter die: the last voter keeps its data but no leader, so it is not ready.
        let survivor = [1, 2, 3].first { $0 != leader }!
        let other = [1, 2, 3].first { $0 != leader && $0 != survivor }!
        cluster.kill9(leader)
        cluster.kill9(other)
        try await cluster.await("n\(survivor) stops being ready") {
            await notReadyDetail(cluster.client(survivor))?.contains("knows no leader") == true
        }
        _ = try await cluster.client(survivor).call(.get, "/healthz")
        await cluster.close()
    }
}

/// The detail of a 503 `not_ready` answer; nil when the node is ready or does not answer.
private func notReadyDetail(_ client: APIClient) async -> String? {
    do {
        _ = try await client.readiness()
        return nil
    } catch let error as APIError where error.status == 503 {
        return error.message.hasPrefix(ReadinessView.notReady + ": ") ? error.message : nil
    } catch {
        return nil
    }
}

/// Runs `flotilla ready --api 127.0.0.1:PORT`, as the container's health check does.
private func runReady(port: Int) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: ProcessCluster.executable)
    process.arguments = ["ready", "--api", "127.0.0.1:\(port)"]
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
